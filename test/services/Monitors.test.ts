import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Option, Stream } from "effect"
import { TestClock } from "effect/testing"
import type { ContainerExit, ContainerState } from "../../src/domain/ContainerState.ts"
import type { MonitorsCore } from "../../src/internal/MonitorsCore.ts"
import type { Task } from "../../src/services/Runtime.ts"
import { envelopes } from "../support/InMemoryEvents.ts"
import { inMemoryMonitors, monitorEnvelopes, NAMESPACE } from "../support/InMemoryMonitors.ts"
import { exitWaitsPending, monitorStats } from "../support/Gauges.ts"

const settle = Effect.forEach(Array.from({ length: 50 }), () => Effect.yieldNow, { discard: true })
/** Lets fibers run until `done` holds (or gives up after many rounds). */
const until = (done: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    for (let round = 0; round < 2000 && !(yield* done); round++) yield* Effect.yieldNow
  })
const advance = (seconds: number) =>
  Effect.forEach(Array.from({ length: seconds }), () => Effect.andThen(TestClock.adjust("1 second"), settle), {
    discard: true
  })

describe("Monitors engine (in-memory events)", () => {
  it.effect("handles each exit once, with its status, and marks the container exited at once", () =>
    Effect.gen(function*() {
      const handled: Array<ContainerExit> = []
      const { core, finished, run, upstream } = yield* inMemoryMonitors((exit) => Effect.sync(() => void handled.push(exit)))
      for (let i = 0; i < 10; i++) yield* run(`c${i}`, 100 + i)
      for (let i = 0; i < 10; i++) yield* upstream.emit(envelopes.taskExit(`c${i}`, "", 100 + i, i))
      yield* settle
      assert.deepStrictEqual(handled.map((h) => `${h.containerId}:${h.status.code}`).sort(), Array.from({ length: 10 }, (_, i) => `c${i}:${i}`).sort())
      assert.strictEqual(finished.length, 10, "the task is deleted and the exit recorded for each")
      const states = yield* core.states
      assert.isTrue(states.every((s) => s.status === "exited"))
      assert.deepStrictEqual((yield* monitorStats).monitors, 0)
    }))

  it.effect("retries a failed handling through the backoff queue, later exits waiting behind it", () =>
    Effect.gen(function*() {
      const order: Array<string> = []
      let failures = 1
      const { core, run, upstream } = yield* inMemoryMonitors((exit) =>
        Effect.suspend(() => {
          if (exit.status.code === 1 && failures-- > 0) return Effect.fail("the consumer is not ready")
          order.push(`exit ${exit.status.code}`)
          return Effect.void
        })
      )
      yield* run("c", 10)
      yield* upstream.emit(envelopes.taskExit("c", "", 10, 1))
      yield* settle
      assert.deepStrictEqual((yield* monitorStats).backoffKeys, 1)
      // Restarted, it exits again while the first exit is still in backoff.
      const entry = Option.getOrThrow(yield* core.entry(NAMESPACE, "c"))
      yield* run("c", 11)
      assert.strictEqual(entry.state.status, "running")
      yield* upstream.emit(envelopes.taskExit("c", "", 11, 2))
      yield* settle
      assert.deepStrictEqual(order, [], "the second exit waits behind the first")
      yield* advance(1)
      assert.deepStrictEqual(order, ["exit 1", "exit 2"])
      const stats = yield* monitorStats
      assert.deepStrictEqual([stats.backoffKeys, stats.backoffEvents], [0, 0])
    }))

  it.effect("contains a handler that dies, and one that hangs past the 10 s bound (as shipped)", () =>
    Effect.gen(function*() {
      let calls = 0
      const { run, upstream } = yield* inMemoryMonitors((exit) =>
        Effect.suspend(() => {
          calls++
          return exit.containerId === "dies" ? Effect.die(new Error("bug in the handler")) : Effect.never
        }))
      yield* run("dies", 1)
      yield* run("hangs", 2)
      yield* upstream.emit(envelopes.taskExit("dies", "", 1, 0))
      yield* upstream.emit(envelopes.taskExit("hangs", "", 2, 0))
      yield* settle
      assert.strictEqual((yield* monitorStats).backoffKeys, 1)
      yield* TestClock.adjust("9999 millis")
      yield* settle
      assert.strictEqual((yield* monitorStats).backoffKeys, 1, "still within its bound")
      yield* TestClock.adjust("1 millis")
      yield* settle
      assert.strictEqual((yield* monitorStats).backoffKeys, 2)
      // The system still works.
      yield* run("fine", 3)
      assert.strictEqual((yield* monitorStats).monitors, 1)
      assert.isAtLeast(calls, 2)
    }))

  it.effect("the 10 s bound covers the whole handling: a Tasks.Delete that hangs is cut off and retried", () =>
    Effect.gen(function*() {
      const handled: Array<number> = []
      const { ops, run, upstream } = yield* inMemoryMonitors((exit) => Effect.sync(() => void handled.push(exit.status.code)))
      let hangs = true
      const finish = ops.finishExit
      ops.finishExit = (tracked) => hangs ? Effect.never : finish(tracked)
      yield* run("c", 1)
      yield* upstream.emit(envelopes.taskExit("c", "", 1, 3))
      yield* settle
      yield* TestClock.adjust("9999 millis")
      yield* settle
      assert.strictEqual((yield* monitorStats).backoffKeys, 0, "still within its bound")
      yield* TestClock.adjust("1 millis")
      yield* settle
      assert.strictEqual((yield* monitorStats).backoffKeys, 1)
      hangs = false
      // The ticker looks every second; the first delay is 1 s.
      yield* advance(1)
      assert.deepStrictEqual(handled, [3])
      assert.strictEqual((yield* monitorStats).backoffKeys, 0)
    }))

  it.effect("a retry takes the container's lock: it waits for a removal in flight, and never runs once the container is gone", () =>
    Effect.gen(function*() {
      let calls = 0
      const { core, run, upstream } = yield* inMemoryMonitors(() =>
        Effect.suspend(() => ++calls === 1 ? Effect.fail("the consumer is not ready") : Effect.void)
      )
      const entry = yield* run("c", 1)
      yield* upstream.emit(envelopes.taskExit("c", "", 1, 0))
      yield* settle
      assert.strictEqual((yield* monitorStats).backoffKeys, 1)
      const deleting = yield* Deferred.make<void>()
      const removal = yield* Effect.forkChild(core.exclusive(entry, Deferred.await(deleting)))
      yield* settle
      yield* advance(3)
      assert.strictEqual(calls, 1, "the retry waits while the container is being removed")
      yield* Deferred.succeed(deleting, undefined)
      yield* settle
      yield* advance(5)
      assert.strictEqual(calls, 1, "and does not run once the container is gone")
      assert.deepStrictEqual(yield* monitorStats, { tracked: 0, monitors: 0, backoffKeys: 0, backoffEvents: 0 })
      assert.strictEqual(removal.pollUnsafe()?._tag, "Success")
    }))

  it.effect("a container deleted by someone else while its exit is in backoff gets no handler call after its scope closed", () =>
    Effect.gen(function*() {
      let calls = 0
      const { run, upstream } = yield* inMemoryMonitors(() => Effect.suspend(() => (calls++, Effect.fail("no"))))
      yield* run("c", 1)
      yield* upstream.emit(envelopes.taskExit("c", "", 1, 0))
      yield* settle
      yield* advance(1)
      assert.strictEqual(calls, 2)
      yield* upstream.emit(monitorEnvelopes.containerDelete("c"))
      yield* until(Effect.map(monitorStats, (s) => s.tracked === 0))
      yield* advance(10)
      assert.strictEqual(calls, 2)
      assert.deepStrictEqual(yield* monitorStats, { tracked: 0, monitors: 0, backoffKeys: 0, backoffEvents: 0 })
    }))

  it.effect("a handler may remove its own container: the removal runs at once and the scope closes after it", () =>
    Effect.gen(function*() {
      const removed: Array<string> = []
      let core: MonitorsCore | undefined
      const monitors = yield* inMemoryMonitors((exit) =>
        Effect.gen(function*() {
          const entry = Option.getOrThrow(yield* core!.entry(NAMESPACE, exit.containerId))
          yield* core!.exclusive(entry, Effect.sync(() => void removed.push(exit.containerId)))
          removed.push("handler went on")
        })
      )
      core = monitors.core
      yield* monitors.run("c", 1)
      yield* monitors.upstream.emit(envelopes.taskExit("c", "", 1, 0))
      yield* until(Effect.map(monitorStats, (s) => s.tracked === 0))
      assert.deepStrictEqual(removed, ["c", "handler went on"], "without waiting for the lock its own handling holds")
      assert.deepStrictEqual(yield* monitorStats, { tracked: 0, monitors: 0, backoffKeys: 0, backoffEvents: 0 })
    }))

  it.effect("a handler that fails with an interruption inside it is retried like any failure", () =>
    Effect.gen(function*() {
      let calls = 0
      const { run, upstream } = yield* inMemoryMonitors(() =>
        Effect.suspend(() =>
          ++calls === 1
            // One branch fails, the other is interrupted: the cause holds both.
            ? Effect.asVoid(Effect.all([Effect.fail("failed"), Effect.never], { concurrency: 2 }))
            : Effect.void
        )
      )
      yield* run("c", 1)
      yield* upstream.emit(envelopes.taskExit("c", "", 1, 0))
      yield* settle
      assert.strictEqual((yield* monitorStats).backoffKeys, 1)
      yield* advance(1)
      assert.strictEqual(calls, 2)
      assert.strictEqual((yield* monitorStats).backoffKeys, 0)
    }))

  it.effect("one monitor per container: a handler that restarts it has the next exit handled after it, by the same fiber", () =>
    Effect.gen(function*() {
      const order: Array<string> = []
      const gate = yield* Deferred.make<void>()
      let restart: ((pid: number) => Effect.Effect<unknown, unknown>) | undefined
      const { run, upstream } = yield* inMemoryMonitors((exit) =>
        Effect.gen(function*() {
          order.push(`start ${exit.status.code}`)
          if (exit.status.code === 1) {
            yield* restart!(2)
            yield* Deferred.await(gate)
          }
          order.push(`end ${exit.status.code}`)
        })
      )
      restart = (pid) => run("c", pid)
      yield* run("c", 1)
      yield* upstream.emit(envelopes.taskExit("c", "", 1, 1))
      yield* settle
      assert.strictEqual((yield* monitorStats).monitors, 1)
      yield* upstream.emit(envelopes.taskExit("c", "", 2, 2))
      yield* settle
      assert.deepStrictEqual(order, ["start 1"], "the second exit waits for the first's handling")
      yield* Deferred.succeed(gate, undefined)
      yield* settle
      assert.deepStrictEqual(order, ["start 1", "end 1", "start 2", "end 2"])
      assert.strictEqual((yield* monitorStats).monitors, 0, "nothing left to watch: the fiber ended")
    }))

  it.effect("marks OOM at once, reports it with the exit, and clears it when the task starts again", () =>
    Effect.gen(function*() {
      const handled: Array<ContainerExit> = []
      const { core, run, upstream } = yield* inMemoryMonitors((exit) => Effect.sync(() => void handled.push(exit)))
      const entry = yield* run("c", 5)
      yield* upstream.emit(envelopes.taskOOM("c"))
      yield* settle
      assert.isTrue(entry.state.oomKilled)
      yield* upstream.emit(envelopes.taskExit("c", "", 5, 137))
      yield* settle
      assert.isTrue(handled[0]?.oomKilled)
      yield* run("c", 6)
      assert.isFalse(entry.state.oomKilled)
      assert.strictEqual((yield* core.states)[0]?.status, "running")
    }))

  it.effect("ignores, without keeping anything, 1,000 containers created and deleted by others", () =>
    Effect.gen(function*() {
      const { upstream } = yield* inMemoryMonitors(() => Effect.void)
      for (let i = 0; i < 1000; i++) {
        yield* upstream.emit(monitorEnvelopes.containerCreate(`other${i}`))
        yield* upstream.emit(envelopes.taskExit(`other${i}`, "", i + 1, 0))
        yield* upstream.emit(monitorEnvelopes.containerDelete(`other${i}`))
      }
      yield* settle
      assert.deepStrictEqual(yield* monitorStats, { tracked: 0, monitors: 0, backoffKeys: 0, backoffEvents: 0 })
    }))

  it.effect("closes the scope of every tracked container deleted by someone else: 1,000 back to baseline", () =>
    Effect.gen(function*() {
      const { core, run, upstream } = yield* inMemoryMonitors(() => Effect.void)
      for (let i = 0; i < 1000; i++) yield* run(`c${i}`, i + 1)
      assert.deepStrictEqual(yield* monitorStats, { tracked: 1000, monitors: 1000, backoffKeys: 0, backoffEvents: 0 })
      assert.strictEqual(yield* exitWaitsPending, 1000)
      for (let i = 0; i < 1000; i++) yield* upstream.emit(monitorEnvelopes.containerDelete(`c${i}`))
      yield* until(Effect.map(monitorStats, (s) => s.tracked === 0))
      assert.deepStrictEqual(yield* monitorStats, { tracked: 0, monitors: 0, backoffKeys: 0, backoffEvents: 0 })
      assert.strictEqual(yield* exitWaitsPending, 0, "the exit registrations went with the scopes")
      assert.isTrue((yield* core.states).length === 0)
    }))

  it.effect("streams every state change, in order", () =>
    Effect.gen(function*() {
      const { core, run, upstream } = yield* inMemoryMonitors(() => Effect.void)
      const changes = yield* core.changes
      const seen: Array<ContainerState> = []
      yield* Effect.forkScoped(Stream.runForEach(changes, (s) => Effect.sync(() => void seen.push(s))))
      yield* run("c", 7)
      yield* upstream.emit(envelopes.taskOOM("c"))
      yield* upstream.emit(envelopes.taskExit("c", "", 7, 137))
      yield* upstream.emit(monitorEnvelopes.containerDelete("c"))
      yield* until(Effect.sync(() => seen.at(-1)?.status === "deleted"))
      // The OOM mark may land before or after the exit; the exit is marked either way.
      const statuses = seen.map((s) => s.status).filter((s, i, all) => s !== all[i - 1])
      assert.deepStrictEqual(statuses, ["created", "running", "exited", "deleted"])
      assert.isTrue(seen.filter((s) => s.status === "exited").every((s) => s.oomKilled && s.exitCode === 137))
    }))

  it.effect("closes every container of a deleted namespace", () =>
    Effect.gen(function*() {
      const { run, upstream } = yield* inMemoryMonitors(() => Effect.void)
      yield* run("a", 1)
      yield* run("b", 2)
      yield* upstream.emit(monitorEnvelopes.namespaceDelete("elsewhere"))
      yield* settle
      assert.strictEqual((yield* monitorStats).tracked, 2)
      yield* upstream.emit(monitorEnvelopes.namespaceDelete(NAMESPACE))
      yield* until(Effect.map(monitorStats, (s) => s.tracked === 0))
      assert.deepStrictEqual(yield* monitorStats, { tracked: 0, monitors: 0, backoffKeys: 0, backoffEvents: 0 })
    }))

  it.effect("a task deleted by someone else closes its container's scope only if the container is gone too", () =>
    Effect.gen(function*() {
      const { core, existing, run, upstream } = yield* inMemoryMonitors(() => Effect.void)
      const someTask = {} as Task
      existing.add("kept")
      yield* run("kept", 1, someTask)
      yield* run("gone", 2, someTask)
      yield* upstream.emit(monitorEnvelopes.taskDelete("kept", 1))
      yield* upstream.emit(monitorEnvelopes.taskDelete("gone", 2))
      yield* until(Effect.map(monitorStats, (s) => s.tracked === 1))
      assert.isTrue(Option.isSome(yield* core.entry(NAMESPACE, "kept")))
      assert.isTrue(Option.isNone(yield* core.entry(NAMESPACE, "gone")))
    }))
})
