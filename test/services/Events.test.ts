import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Metric, Queue, Schedule, Stream } from "effect"
import { TestClock } from "effect/testing"
import type { EventMessage } from "../../src/domain/Event.ts"
import { EventDecodeFailures, makeEvents } from "../../src/services/Events.ts"
import { envelopes, makeInMemoryUpstream } from "../support/InMemoryEvents.ts"

/** Lets the fibers between the upstream and the consumers run. */
const settle = Effect.forEach(Array.from({ length: 50 }), () => Effect.yieldNow, { discard: true })

/** Collects what a subscription receives into a queue the test can drain. */
const collect = (stream: Stream.Stream<EventMessage>) =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<EventMessage>()
    yield* Effect.forkScoped(Stream.runForEach(stream, (message) => Queue.offer(queue, message)))
    return {
      drain: Effect.andThen(settle, Queue.clear(queue))
    }
  })

const tags = (messages: ReadonlyArray<EventMessage>) =>
  messages.map((m) => m._tag === "Resynced" ? `Resynced:${m.reason}:${m.missed}` : `${m._tag}:${m.namespace}`)

describe("Events (in-memory upstream)", () => {
  it.effect("fans decoded events out to every subscriber, filtered by case and namespace", () =>
    Effect.gen(function*() {
      const upstream = yield* makeInMemoryUpstream
      const events = yield* makeEvents(upstream)
      const all = yield* collect(yield* events.subscribe())
      const exitsOfA = yield* collect(yield* events.subscribe({ tags: ["TaskExit"], namespace: "a" }))
      yield* upstream.emit(envelopes.taskStart("c1", 10, "a"))
      yield* upstream.emit(envelopes.taskExit("c1", "", 10, 0, "a"))
      yield* upstream.emit(envelopes.taskExit("c2", "", 11, 0, "b"))
      assert.deepStrictEqual(tags(yield* all.drain), ["TaskStart:a", "TaskExit:a", "TaskExit:b"])
      assert.deepStrictEqual(tags(yield* exitsOfA.drain), ["TaskExit:a"])
    }))

  it.effect("counts and skips malformed payloads, delivers unknown ones as Unknown, and keeps going", () =>
    Effect.gen(function*() {
      const upstream = yield* makeInMemoryUpstream
      const events = yield* makeEvents(upstream)
      const all = yield* collect(yield* events.subscribe())
      const failuresBefore = (yield* Metric.value(EventDecodeFailures)).count
      yield* upstream.emit({
        timestamp: new Date(),
        namespace: "a",
        topic: "/tasks/exit",
        event: { typeUrl: "containerd.events.TaskExit", value: Buffer.from([0x0a, 0xff]) }
      })
      yield* upstream.emit({
        timestamp: new Date(),
        namespace: "a",
        topic: "/custom",
        event: { typeUrl: "example.com/Custom", value: Buffer.from("x") }
      })
      yield* upstream.emit(envelopes.taskExit("c1", "", 10, 0, "a"))
      assert.deepStrictEqual(tags(yield* all.drain), ["Unknown:a", "TaskExit:a"])
      assert.strictEqual((yield* Metric.value(EventDecodeFailures)).count - failuresBefore, 1)
    }))

  it.effect("resubscribes on the schedule exactly, emits Resynced once live, and resets the delays", () =>
    Effect.gen(function*() {
      const upstream = yield* makeInMemoryUpstream
      const events = yield* makeEvents(upstream)
      const all = yield* collect(yield* events.subscribe())
      assert.deepStrictEqual(upstream.attempts, [0])

      yield* upstream.setAvailable(false)
      yield* upstream.cut
      // 100 ms doubling, capped at 5 s: 100, 200, 400, 800, 1600, 3200, then 5000 each time.
      for (let i = 0; i < 8; i++) {
        yield* settle
        yield* TestClock.adjust(5000)
      }
      yield* settle
      assert.deepStrictEqual(upstream.attempts, [0, 100, 300, 700, 1500, 3100, 6300, 11300, 16300, 21300, 26300, 31300, 36300])

      yield* upstream.setAvailable(true)
      yield* TestClock.adjust(5000)
      yield* settle
      assert.deepStrictEqual(upstream.attempts.at(-1), 41300)
      assert.isTrue(yield* upstream.connected)
      assert.deepStrictEqual(tags(yield* all.drain), ["Resynced:Reconnected:0"])

      // Once live again, the next failure starts from the first delay.
      yield* upstream.cut
      yield* settle
      yield* TestClock.adjust(100)
      yield* settle
      assert.deepStrictEqual(upstream.attempts.at(-1), 45100)
      yield* upstream.emit(envelopes.taskExit("c1", "", 10, 0, "a"))
      assert.deepStrictEqual(tags(yield* all.drain), ["Resynced:Reconnected:0", "TaskExit:a"])
    }))

  it.effect("a probe that cannot be published after a reconnect is retried: Resynced still comes", () =>
    Effect.gen(function*() {
      const upstream = yield* makeInMemoryUpstream
      const events = yield* makeEvents(upstream)
      const all = yield* collect(yield* events.subscribe())
      yield* upstream.failPublish(3)
      const before = upstream.publishes.length
      yield* upstream.cut
      yield* settle
      yield* TestClock.adjust(100)
      yield* settle
      assert.isTrue(yield* upstream.connected)
      assert.deepStrictEqual(tags(yield* all.drain), [], "not live before the probe comes back")
      // Retried 100 ms doubling: at the reconnect, then 100 and 200 ms later; the fourth goes through.
      for (let i = 0; i < 4; i++) {
        yield* TestClock.adjust(100 * 2 ** i)
        yield* settle
      }
      assert.deepStrictEqual(upstream.publishes.slice(before), [100, 200, 400, 800])
      assert.deepStrictEqual(tags(yield* all.drain), ["Resynced:Reconnected:0"])
    }))

  it.effect("at the first connection, a probe that cannot be published is retried and the stream builds", () =>
    Effect.gen(function*() {
      const upstream = yield* makeInMemoryUpstream
      yield* upstream.failPublish(2)
      const building = yield* Effect.forkChild(makeEvents(upstream))
      yield* settle
      yield* TestClock.adjust(100)
      yield* settle
      yield* TestClock.adjust(200)
      yield* settle
      assert.deepStrictEqual(upstream.publishes, [0, 100, 300])
      const events = yield* Fiber.join(building)
      const all = yield* collect(yield* events.subscribe())
      yield* upstream.emit(envelopes.taskExit("c1", "", 10, 0, "a"))
      assert.deepStrictEqual(tags(yield* all.drain), ["TaskExit:a"])
    }))

  it.effect("a probe that never gets published fails the first connection after 30 s, saying why", () =>
    Effect.gen(function*() {
      const upstream = yield* makeInMemoryUpstream
      yield* upstream.failPublish(1_000)
      const building = yield* Effect.forkChild(makeEvents(upstream))
      for (let i = 0; i < 35; i++) {
        yield* settle
        yield* TestClock.adjust("1 second")
      }
      const error = yield* Effect.flip(Fiber.join(building))
      assert.strictEqual(error.reason._tag, "DeadlineExceeded")
      assert.match(error.message, /within 30s: the probe event could not be published \(.*unavailable/)
    }))

  it.effect("stops resubscribing when a finite reconnect schedule runs out", () =>
    Effect.gen(function*() {
      const upstream = yield* makeInMemoryUpstream
      yield* makeEvents(upstream, { reconnect: Schedule.max([Schedule.spaced("1 second"), Schedule.recurs(2)]) })
      yield* upstream.setAvailable(false)
      yield* upstream.cut
      for (let i = 0; i < 5; i++) {
        yield* settle
        yield* TestClock.adjust(1000)
      }
      assert.deepStrictEqual(upstream.attempts, [0, 1000, 2000])
    }))

  it.effect("a consumer that falls behind loses its oldest events and is told how many; others are unaffected", () =>
    Effect.gen(function*() {
      const upstream = yield* makeInMemoryUpstream
      const events = yield* makeEvents(upstream, { capacity: 4 })
      const fast = yield* collect(yield* events.subscribe())
      const slow = yield* events.subscribe()
      for (let pid = 1; pid <= 10; pid++) {
        yield* upstream.emit(envelopes.taskStart(`c${pid}`, pid, "a"))
        yield* settle
      }
      assert.strictEqual((yield* fast.drain).length, 10)
      const received = yield* slow.pipe(Stream.take(5), Stream.runCollect)
      assert.deepStrictEqual(
        received.map((m) => m._tag === "Resynced" ? `Resynced:${m.reason}:${m.missed}` : m._tag === "TaskStart" ? m.pid : m._tag),
        ["Resynced:Lagged:6", 7, 8, 9, 10]
      )
    }))

  it.effect("fails to build when containerd is unavailable, instead of waiting forever", () =>
    Effect.gen(function*() {
      const upstream = yield* makeInMemoryUpstream
      yield* upstream.setAvailable(false)
      const error = yield* Effect.flip(makeEvents(upstream))
      assert.strictEqual(error.reason._tag, "Unavailable")
    }))

  it.effect("ends every subscription when its scope closes", () =>
    Effect.gen(function*() {
      const upstream = yield* makeInMemoryUpstream
      const events = yield* makeEvents(upstream)
      const fiber = yield* Effect.scoped(Effect.flatMap(events.subscribe(), (stream) =>
        Effect.forkDetach(Stream.runDrain(stream))))
      yield* settle
      assert.isDefined(fiber.pollUnsafe())
      yield* Fiber.interrupt(fiber)
    }))
})
