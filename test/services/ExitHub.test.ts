import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Exit, Fiber, Schema, Scope } from "effect"
import { TestClock } from "effect/testing"
import { fromGrpcStatus, GrpcCode } from "../../src/domain/ContainerdError.ts"
import { Exited, type ExitStatus } from "../../src/domain/ExitStatus.ts"
import { makeEvents } from "../../src/services/Events.ts"
import { makeExitHub, type ProcessState } from "../../src/services/ExitHub.ts"
import { envelopes, makeInMemoryUpstream } from "../support/InMemoryEvents.ts"
import { exitWaitsPending } from "../support/Gauges.ts"

/** Lets the fibers between the upstream and the hub run. */
const settle = Effect.forEach(Array.from({ length: 50 }), () => Effect.yieldNow, { discard: true })

const setup = Effect.gen(function*() {
  const upstream = yield* makeInMemoryUpstream
  const events = yield* makeEvents(upstream)
  const states = new Map<string, ProcessState>()
  /** Lookups to fail (with Unavailable) before they answer again; and when each lookup was made. */
  const lookups = { failing: 0, at: [] as Array<number> }
  const hub = yield* makeExitHub({
    events,
    lookup: (_namespace, containerId, execId) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        lookups.at.push(now)
        if (lookups.failing > 0) {
          lookups.failing--
          return Effect.fail(unavailable("/containerd.services.tasks.v1.Tasks/Get"))
        }
        return Effect.succeed(states.get(`${containerId}/${execId}`) ?? { _tag: "Missing" as const })
      }),
    currentNamespace: Effect.succeed("default")
  })
  /** Drops the subscription and lets it reconnect, which makes the hub reconcile. */
  const resync = Effect.gen(function*() {
    yield* upstream.cut
    yield* settle
    yield* TestClock.adjust(100)
    yield* settle
  })
  return { upstream, hub, states, lookups, resync }
})

/** Registers and forks the wait, so the test can look at it without blocking. */
const watch = (hub: Effect.Success<typeof setup>["hub"], containerId: string, execId = "", pid?: number) =>
  Effect.flatMap(hub.awaitExit(containerId, execId, { pid }), (exit) => Effect.forkChild(exit))

const result = (fiber: Fiber.Fiber<ExitStatus>): ExitStatus | undefined => {
  const exit = fiber.pollUnsafe()
  return exit !== undefined && Exit.isSuccess(exit) ? exit.value : undefined
}

const unavailable = (method: string) =>
  fromGrpcStatus({ code: GrpcCode.UNAVAILABLE, details: "connection refused" }, { method, address: "unix:///in-memory" })

const exited = (code: number, pid: number) => new Exited({ code, pid, exitedAt: new Date(1_700_000_000_000) })

describe("ExitHub (in-memory events)", () => {
  it.effect("delivers an exit that arrives before the start RPC returns, once the start is recorded", () =>
    Effect.gen(function*() {
      const { hub, upstream } = yield* setup
      const waiting = yield* watch(hub, "c1")
      yield* upstream.emit(envelopes.taskExit("c1", "", 42, 3))
      yield* settle
      assert.isUndefined(result(waiting), "an exit must not be seen before its start")
      yield* hub.started("c1", "", 42)
      yield* settle
      assert.deepStrictEqual(result(waiting), exited(3, 42))
    }))

  it.effect("the TaskStart / TaskExecStarted event records the start as well", () =>
    Effect.gen(function*() {
      const { hub, upstream } = yield* setup
      const init = yield* watch(hub, "c1")
      const exec = yield* watch(hub, "c1", "e1")
      yield* upstream.emit(envelopes.taskExit("c1", "e1", 51, 7))
      yield* upstream.emit(envelopes.taskExit("c1", "", 50, 1))
      yield* settle
      assert.isUndefined(result(init))
      assert.isUndefined(result(exec))
      yield* upstream.emit(envelopes.execStarted("c1", "e1", 51))
      yield* upstream.emit(envelopes.taskStart("c1", 50))
      yield* settle
      assert.deepStrictEqual(result(exec), exited(7, 51))
      assert.deepStrictEqual(result(init), exited(1, 50))
    }))

  it.effect("an exit during registration of an already running process is delivered at once", () =>
    Effect.gen(function*() {
      const { hub, upstream } = yield* setup
      const waiting = yield* watch(hub, "c1", "", 77)
      yield* upstream.emit(envelopes.taskExit("c1", "", 77, 0))
      yield* settle
      assert.deepStrictEqual(result(waiting), exited(0, 77))
    }))

  it.effect("delivers duplicate exits once, and never to a later incarnation", () =>
    Effect.gen(function*() {
      const { hub, upstream } = yield* setup
      const first = yield* watch(hub, "c1")
      yield* hub.started("c1", "", 42)
      yield* upstream.emit(envelopes.taskExit("c1", "", 42, 1))
      yield* upstream.emit(envelopes.taskExit("c1", "", 42, 1))
      yield* settle
      assert.deepStrictEqual(result(first), exited(1, 42))
      assert.strictEqual(yield* exitWaitsPending, 0)

      const second = yield* watch(hub, "c1")
      yield* upstream.emit(envelopes.taskExit("c1", "", 42, 1))
      yield* settle
      yield* hub.started("c1", "", 43)
      yield* settle
      assert.isUndefined(result(second), "the old incarnation's duplicate is not this process's exit")
      yield* upstream.emit(envelopes.taskExit("c1", "", 43, 2))
      yield* settle
      assert.deepStrictEqual(result(second), exited(2, 43))
    }))

  it.effect("drops exits of other PIDs and of unregistered processes without keeping state", () =>
    Effect.gen(function*() {
      const { hub, upstream } = yield* setup
      const waiting = yield* watch(hub, "c1", "", 42)
      yield* upstream.emit(envelopes.taskExit("c1", "", 99, 9))
      for (let i = 0; i < 1000; i++) yield* upstream.emit(envelopes.taskExit(`other${i}`, "", 1000 + i, 0))
      yield* settle
      assert.isUndefined(result(waiting))
      assert.strictEqual(yield* exitWaitsPending, 1)
      yield* upstream.emit(envelopes.taskExit("c1", "", 42, 0))
      yield* settle
      assert.deepStrictEqual(result(waiting), exited(0, 42))
      assert.strictEqual(yield* exitWaitsPending, 0)
    }))

  it.effect("reports an OOM of the container with its init's exit, not an exec's", () =>
    Effect.gen(function*() {
      const { hub, upstream } = yield* setup
      const init = yield* watch(hub, "c1", "", 10)
      const exec = yield* watch(hub, "c1", "e1", 11)
      yield* upstream.emit(envelopes.taskOOM("c1"))
      yield* upstream.emit(envelopes.taskExit("c1", "e1", 11, 137))
      yield* upstream.emit(envelopes.taskExit("c1", "", 10, 137))
      yield* settle
      assert.deepStrictEqual(result(init), new Exited({ code: 137, pid: 10, exitedAt: new Date(1_700_000_000_000), oomKilled: true }))
      assert.deepStrictEqual(result(exec), exited(137, 11))
    }))

  it.effect("keeps namespaces apart", () =>
    Effect.gen(function*() {
      const { hub, upstream } = yield* setup
      const waiting = yield* watch(hub, "c1", "", 42)
      yield* upstream.emit(envelopes.taskExit("c1", "", 42, 5, "elsewhere"))
      yield* settle
      assert.isUndefined(result(waiting))
      yield* upstream.emit(envelopes.taskExit("c1", "", 42, 6, "default"))
      yield* settle
      assert.deepStrictEqual(result(waiting), exited(6, 42))
    }))

  it.effect.prop(
    "under any interleaving, each exit is delivered once, correctly, and never before its start",
    [Schema.Array(Schema.Int)],
    ([choices]) =>
      Effect.gen(function*() {
        const { hub, upstream } = yield* setup
        type Action = "startRpc" | "startEvent" | "exit" | "duplicate"
        const processes = Array.from({ length: 8 }, (_, i) => ({
          containerId: `c${i % 3}`,
          execId: i % 3 === 0 && i === 0 ? "" : `e${i}`,
          pid: 100 + i,
          code: (i * 37) % 256,
          remaining: ["startRpc", "startEvent", "exit", "duplicate"] as Array<Action>,
          startRecorded: false,
          fiber: undefined as Fiber.Fiber<ExitStatus> | undefined
        }))
        for (const p of processes) p.fiber = yield* watch(hub, p.containerId, p.execId)
        let c = 0
        const next = () => Math.abs(choices[c++ % Math.max(1, choices.length)] ?? 0) + c
        while (processes.some((p) => p.remaining.length > 0)) {
          const live = processes.filter((p) => p.remaining.length > 0)
          const p = live[next() % live.length]!
          const action = p.remaining.splice(next() % p.remaining.length, 1)[0]!
          switch (action) {
            case "startRpc":
              yield* hub.started(p.containerId, p.execId, p.pid)
              p.startRecorded = true
              break
            case "startEvent":
              yield* upstream.emit(
                p.execId === "" ? envelopes.taskStart(p.containerId, p.pid) : envelopes.execStarted(p.containerId, p.execId, p.pid)
              )
              p.startRecorded = true
              break
            case "exit":
            case "duplicate":
              yield* upstream.emit(envelopes.taskExit(p.containerId, p.execId, p.pid, p.code))
          }
          yield* settle
          for (const q of processes) {
            if (result(q.fiber!) !== undefined) assert.isTrue(q.startRecorded, "exit seen before start")
          }
        }
        for (const p of processes) assert.deepStrictEqual(result(p.fiber!), exited(p.code, p.pid))
        assert.strictEqual(yield* exitWaitsPending, 0)
      })
  )

  it.effect("after Resynced, completes stopped processes, marks vanished ones unknown, keeps running ones", () =>
    Effect.gen(function*() {
      const { hub, states, resync } = yield* setup
      const stopped = yield* watch(hub, "stopped", "", 1)
      const running = yield* watch(hub, "running", "", 2)
      const vanished = yield* watch(hub, "vanished", "", 3)
      const notStarted = yield* watch(hub, "notstarted")
      const stoppedEarly = yield* watch(hub, "early")
      states.set("stopped/", { _tag: "Stopped", exit: exited(5, 1) })
      states.set("running/", { _tag: "Running", pid: 2 })
      states.set("early/", { _tag: "Stopped", exit: exited(4, 9) })
      yield* resync
      assert.deepStrictEqual(result(stopped), exited(5, 1))
      assert.isUndefined(result(running))
      const unknown = result(vanished)
      assert.strictEqual(unknown?._tag, "ExitUnknown")
      assert.strictEqual(unknown?.code, 255)
      assert.isUndefined(result(notStarted), "a process not started yet may simply not exist yet")
      assert.isUndefined(result(stoppedEarly), "even found by resync, an exit waits for its start")
      yield* hub.started("early", "", 9)
      yield* settle
      assert.deepStrictEqual(result(stoppedEarly), exited(4, 9))
      assert.strictEqual(yield* exitWaitsPending, 2)
    }))

  it.effect("a Tasks.Get that fails while reconciling is retried until it answers: the exit is not lost", () =>
    Effect.gen(function*() {
      const { hub, lookups, resync, states } = yield* setup
      const waiting = yield* watch(hub, "c1", "", 7)
      states.set("c1/", { _tag: "Stopped", exit: exited(3, 7) })
      lookups.failing = 3
      yield* resync
      assert.isUndefined(result(waiting))
      // 100 ms doubling between attempts.
      for (const step of [100, 200, 400]) {
        yield* TestClock.adjust(step)
        yield* settle
      }
      assert.deepStrictEqual(lookups.at, [100, 200, 400, 800])
      assert.deepStrictEqual(result(waiting), exited(3, 7))
      assert.strictEqual(yield* exitWaitsPending, 0)
    }))

  it.effect("a reconcile retrying for a registration that goes away stops", () =>
    Effect.gen(function*() {
      const { hub, lookups, resync } = yield* setup
      const scope = yield* Scope.make()
      yield* hub.awaitExit("c1", "", { pid: 7 }).pipe(Scope.provide(scope))
      lookups.failing = 1_000
      yield* resync
      yield* TestClock.adjust(100)
      yield* settle
      const made = lookups.at.length
      yield* Scope.close(scope, Exit.void)
      yield* TestClock.adjust("1 minute")
      yield* settle
      assert.isAtMost(lookups.at.length, made + 1)
    }))

  it.effect("an init that dies before its start is called is reported with its real status (TestIssue9103)", () =>
    Effect.gen(function*() {
      const { hub, upstream } = yield* setup
      const waiting = yield* watch(hub, "c1")
      yield* hub.created("c1", "", 42)
      yield* upstream.emit(envelopes.taskExit("c1", "", 42, 137))
      yield* settle
      assert.deepStrictEqual(result(waiting), exited(137, 42))
      // Its exit may also come before Tasks.Create has answered.
      const early = yield* watch(hub, "c2")
      yield* upstream.emit(envelopes.taskExit("c2", "", 43, 137))
      yield* settle
      assert.isUndefined(result(early))
      yield* hub.created("c2", "", 43)
      yield* settle
      assert.deepStrictEqual(result(early), exited(137, 43))
    }))

  it.effect("while a start is in flight, the exit waits for it; a start that fails then delivers it", () =>
    Effect.gen(function*() {
      const { hub, upstream } = yield* setup
      const waiting = yield* watch(hub, "c1")
      yield* hub.created("c1", "", 42)
      const answer = yield* Deferred.make<{ readonly pid: number }, string>()
      const starting = yield* Effect.forkChild(hub.start("c1", "", Deferred.await(answer)))
      yield* settle
      yield* upstream.emit(envelopes.taskExit("c1", "", 42, 0))
      yield* settle
      assert.isUndefined(result(waiting), "not before the start has answered")
      yield* Deferred.succeed(answer, { pid: 42 })
      assert.strictEqual(yield* Fiber.join(starting), 42)
      yield* settle
      assert.deepStrictEqual(result(waiting), exited(0, 42))

      const failed = yield* watch(hub, "c2")
      yield* hub.created("c2", "", 50)
      const refused = yield* Deferred.make<{ readonly pid: number }, string>()
      const start = yield* Effect.forkChild(hub.start("c2", "", Deferred.await(refused)))
      yield* settle
      yield* upstream.emit(envelopes.taskExit("c2", "", 50, 137))
      yield* Deferred.fail(refused, "cannot start a stopped process")
      assert.deepStrictEqual(yield* Fiber.await(start), Exit.fail("cannot start a stopped process"))
      yield* settle
      assert.deepStrictEqual(result(failed), exited(137, 50))
    }))

  it.effect("a start that fails with no exit seen asks containerd, and retries until it answers", () =>
    Effect.gen(function*() {
      const { hub, lookups, states } = yield* setup
      const stopped = yield* watch(hub, "stopped")
      yield* hub.created("stopped", "", 5)
      const stillCreated = yield* watch(hub, "created")
      yield* hub.created("created", "", 6)
      const startedAfterAll = yield* watch(hub, "started")
      states.set("stopped/", { _tag: "Stopped", exit: exited(137, 5) })
      states.set("created/", { _tag: "Created", pid: 6 })
      states.set("started/", { _tag: "Running", pid: 7 })
      lookups.failing = 1
      for (const id of ["stopped", "created", "started"]) {
        yield* Effect.flip(hub.start(id, "", Effect.fail("deadline exceeded")))
      }
      yield* settle
      yield* TestClock.adjust(100)
      yield* settle
      assert.deepStrictEqual(result(stopped), exited(137, 5))
      assert.isUndefined(result(stillCreated), "still created: a later start may work")
      assert.isUndefined(result(startedAfterAll))
      assert.strictEqual(yield* exitWaitsPending, 2)
    }))

  it.effect("closing the registration's scope removes it", () =>
    Effect.gen(function*() {
      const { hub } = yield* setup
      const scope = yield* Scope.make()
      yield* hub.awaitExit("c1").pipe(Scope.provide(scope))
      yield* hub.awaitExit("c1").pipe(Scope.provide(scope))
      assert.strictEqual(yield* exitWaitsPending, 1)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(yield* exitWaitsPending, 0)
    }))

  it.effect("10,000 register/complete cycles leave nothing behind", () =>
    Effect.gen(function*() {
      const { hub, upstream } = yield* setup
      for (let i = 0; i < 10_000; i++) {
        const status = yield* Effect.scoped(Effect.gen(function*() {
          const exit = yield* hub.awaitExit(`c${i}`)
          yield* hub.started(`c${i}`, "", i + 1)
          yield* upstream.emit(envelopes.taskExit(`c${i}`, "", i + 1, i % 256))
          return yield* exit
        }))
        assert.strictEqual(status.code, i % 256)
      }
      assert.strictEqual(yield* exitWaitsPending, 0)
    }))

  it.effect("rejects ids containerd would reject, before registering anything", () =>
    Effect.gen(function*() {
      const { hub } = yield* setup
      for (const [containerId, execId] of [["bad id", ""], ["-lead", ""], ["x".repeat(77), ""], ["ok", "bad/exec"], ["", ""]]) {
        const error = yield* Effect.flip(Effect.scoped(hub.awaitExit(containerId!, execId)))
        assert.strictEqual(error.reason._tag, "InvalidArgument")
        assert.include(error.message, JSON.stringify(execId === "" ? containerId : execId))
      }
      assert.strictEqual(yield* exitWaitsPending, 0)
    }))
})
