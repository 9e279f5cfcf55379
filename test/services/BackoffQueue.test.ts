import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Metric } from "effect"
import { TestClock } from "effect/testing"
import { BackoffEvents, BackoffKeys, makeBackoffQueue } from "../../src/services/BackoffQueue.ts"

const settle = Effect.forEach(Array.from({ length: 20 }), () => Effect.yieldNow, { discard: true })

/** Advances virtual time a second at a time, letting the ticker run at each. */
const advance = (seconds: number) =>
  Effect.forEach(Array.from({ length: seconds }), () => Effect.andThen(TestClock.adjust("1 second"), settle), {
    discard: true
  })

describe("BackoffQueue", () => {
  it.effect("retries a handler that fails twice at exactly 1 s and 3 s, then drops the key", () =>
    Effect.gen(function*() {
      const attempts: Array<number> = []
      const queue = yield* makeBackoffQueue((_key: string, _event: string) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          attempts.push(now)
          // The first failure was the original handling, at t=0; the retry at 1 s is the second.
          return attempts.length === 1 ? Effect.fail("not yet") : Effect.void
        })
      )
      yield* queue.enqueue("c1", "exit")
      yield* advance(5)
      assert.deepStrictEqual(attempts, [1000, 3000])
      assert.isFalse(yield* queue.isInBackoff("c1"))
      assert.deepStrictEqual(yield* queue.size, { keys: 0, events: 0 })
      assert.strictEqual((yield* Metric.value(BackoffKeys)).value, 0)
      assert.strictEqual((yield* Metric.value(BackoffEvents)).value, 0)
    }))

  it.effect("doubles the delay up to the cap and stays there", () =>
    Effect.gen(function*() {
      const attempts: Array<number> = []
      const queue = yield* makeBackoffQueue(
        () => Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.fail(attempts.push(now))),
        { initialDelay: "1 second", maxDelay: "8 seconds" }
      )
      yield* queue.enqueue("k", 1)
      yield* advance(40)
      // Delays 1, 2, 4, 8, 8, 8, 8 seconds.
      assert.deepStrictEqual(attempts, [1000, 3000, 7000, 15000, 23000, 31000, 39000])
      assert.isTrue(yield* queue.isInBackoff("k"))
    }))

  it.effect("keeps each key's order, including events queued while a retry runs", () =>
    Effect.gen(function*() {
      const handled: Array<string> = []
      const gate = yield* Deferred.make<void>()
      const queue = yield* makeBackoffQueue((key: string, event: number) =>
        Effect.gen(function*() {
          if (key === "a" && event === 1) yield* Deferred.await(gate)
          handled.push(`${key}${event}`)
        })
      )
      yield* queue.enqueue("a", 1)
      yield* queue.enqueue("b", 1)
      yield* queue.enqueue("a", 2)
      yield* queue.enqueue("b", 2)
      yield* advance(1)
      // a's retry is blocked on a1; an event for a arriving now queues behind it.
      assert.isTrue(yield* queue.isInBackoff("a"))
      yield* queue.enqueue("a", 3)
      yield* Deferred.succeed(gate, undefined)
      yield* settle
      assert.deepStrictEqual(handled.filter((h) => h.startsWith("a")), ["a1", "a2", "a3"])
      assert.deepStrictEqual(handled.filter((h) => h.startsWith("b")), ["b1", "b2"])
      assert.deepStrictEqual(yield* queue.size, { keys: 0, events: 0 })
    }))

  it.effect("lets other keys flow while one stays in backoff", () =>
    Effect.gen(function*() {
      const handled: Array<string> = []
      const queue = yield* makeBackoffQueue((key: string, event: string) =>
        key === "stuck" ? Effect.fail("still failing") : Effect.sync(() => void handled.push(event))
      )
      yield* queue.enqueue("stuck", "s1")
      yield* queue.enqueue("fine", "f1")
      yield* advance(1)
      yield* queue.enqueue("fine", "f2")
      yield* advance(1)
      assert.deepStrictEqual(handled, ["f1", "f2"])
      assert.isTrue(yield* queue.isInBackoff("stuck"))
      assert.isFalse(yield* queue.isInBackoff("fine"))
      assert.deepStrictEqual(yield* queue.size, { keys: 1, events: 1 })
      yield* queue.remove("stuck")
      assert.deepStrictEqual(yield* queue.size, { keys: 0, events: 0 })
      assert.strictEqual((yield* Metric.value(BackoffKeys)).value, 0)
    }))
})
