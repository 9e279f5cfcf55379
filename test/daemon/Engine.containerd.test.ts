/**
 * The daemon's engine against the shared containerd: Docker's container
 * lifecycle on the monitors, the RPCs a run/wait/rm cycle costs, restart
 * policies, AutoRemove, and bad input refused before anything is created.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, type Duration, Effect, Exit, Fiber, Layer, Schedule, Stream } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Containerd, rpcCounts } from "../../src/services/Containerd.ts"
import { Engine } from "../../src/daemon/Engine.ts"
import { EventLog } from "../../src/daemon/EventLog.ts"
import type { CreateBody } from "../../src/daemon/Model.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { runtimeLayer } from "../support/RuntimeLayer.ts"
import { uniqueNamespace } from "../support/SharedContainerd.ts"

/** The engine and event log over the shared daemon, in a namespace of the test's own. */
const engine = (namespace: string, options?: { readonly execRetention?: Duration.Input }) =>
  Layer.unwrap(Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-logs-"))),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    ),
    (logRoot) =>
      Engine.layer({ namespace, logRoot, ...options }).pipe(Layer.provideMerge(EventLog.layer), Layer.provideMerge(runtimeLayer(namespace)))
  ))

const eventually = <E>(check: Effect.Effect<boolean, E>, within: Duration.Input = "10 seconds") =>
  check.pipe(Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (ok) => ok }), Effect.timeout(within))

const body = (fields: Partial<CreateBody>): CreateBody => ({ Image: FIXTURE_IMAGE, ...fields })

const rpcDelta = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const before = yield* rpcCounts
    const value = yield* effect
    const after = yield* rpcCounts
    let total = 0
    const methods: Record<string, number> = {}
    for (const [method, n] of after) {
      const d = n - (before.get(method) ?? 0)
      if (d > 0) {
        total += d
        methods[method.slice(method.lastIndexOf(".") + 1)] = d
      }
    }
    return { value, total, methods }
  })

describe("Engine against containerd", () => {
  it.live("run, wait, inspect, rm: Docker's states, the exit code, events in order, 8 RPCs per cycle", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("eng")
      const ctx = yield* Layer.build(engine(namespace))
      const docker = Context.get(ctx, Engine)
      const log = Context.get(ctx, EventLog)
      const events: Array<string> = []
      yield* Effect.forkScoped(Stream.runForEach(log.subscribe({}), (e) => Effect.sync(() => void events.push(e.Action))))
      yield* Effect.sleep("20 millis")

      const cycle = Effect.gen(function*() {
        const { Id } = yield* docker.create(undefined, body({ Cmd: ["sh", "-c", "exit 3"] }))
        const waiting = yield* docker.wait(Id, "next-exit")
        yield* docker.start(Id)
        const { StatusCode } = yield* waiting
        yield* docker.remove(Id)
        return StatusCode
      }).pipe(Effect.scoped)
      const first = yield* rpcDelta(cycle)
      assert.strictEqual(first.value, 3)
      const second = yield* rpcDelta(cycle)
      assert.strictEqual(second.value, 3)
      // Containers.Create, Snapshots.Prepare, Tasks.Create, Tasks.Start, Tasks.Delete,
      // Containers.Update (the exit recorded), Snapshots.Remove, Containers.Delete.
      assert.strictEqual(second.total, 8, JSON.stringify(second.methods))
      yield* eventually(Effect.sync(() => events.filter((a) => a === "destroy").length === 2))
      assert.deepStrictEqual(events.slice(0, 4), ["create", "start", "die", "destroy"])

      const { Id } = yield* docker.create("sleeper", body({ Cmd: ["sleep", "100"], Labels: { app: "t" } }))
      yield* docker.start("sleeper")
      const running = yield* docker.inspect(Id.slice(0, 8))
      assert.strictEqual(running.State.Status, "running")
      assert.isTrue(running.State.Running)
      assert.isAbove(running.State.Pid, 0)
      assert.strictEqual(running.Name, "/sleeper")
      assert.deepStrictEqual(running.Config.Cmd, ["sleep", "100"])
      const listed = yield* docker.list({ filters: { label: ["app=t"] } })
      assert.deepStrictEqual(listed.map((c) => c.Id), [Id])
      const refused = yield* Effect.flip(docker.remove("sleeper"))
      assert.strictEqual(refused.status, 409)
      const started = Date.now()
      yield* docker.stop("sleeper", { timeout: 1 }) // sleep ignores SIGTERM as PID 1: SIGKILL after 1 s
      assert.isAtLeast(Date.now() - started, 900)
      const stopped = yield* docker.inspect("sleeper")
      assert.strictEqual(stopped.State.Status, "exited")
      assert.strictEqual(stopped.State.ExitCode, 137)
      assert.notStrictEqual(stopped.State.FinishedAt, "0001-01-01T00:00:00Z")
      yield* docker.remove("sleeper")
      assert.strictEqual((yield* Effect.flip(docker.inspect(Id))).status, 404)
    }).pipe(Effect.scoped), 60_000)

  it.live("restart policy on-failure:2 restarts twice; restart and stop+start under always; AutoRemove removes after the exit", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("eng")
      const ctx = yield* Layer.build(engine(namespace))
      const docker = Context.get(ctx, Engine)
      const { Id } = yield* docker.create("flaky", body({
        Cmd: ["sh", "-c", "exit 1"],
        HostConfig: { RestartPolicy: { Name: "on-failure", MaximumRetryCount: 2 } }
      }))
      yield* docker.start(Id)
      yield* eventually(Effect.map(docker.inspect(Id), (c) => c.RestartCount === 2 && c.State.Status === "exited"))
      yield* Effect.sleep("500 millis")
      const done = yield* docker.inspect(Id)
      assert.strictEqual(done.RestartCount, 2)
      assert.strictEqual(done.State.ExitCode, 1)

      // A restart is not a policy restart: the count stays, and the container runs once.
      const always = yield* docker.create("always", body({ Cmd: ["sleep", "100"], HostConfig: { RestartPolicy: { Name: "always" } } }))
      yield* docker.start(always.Id)
      yield* docker.restart(always.Id, { timeout: 0 })
      yield* Effect.sleep("500 millis")
      const restarted = yield* docker.inspect(always.Id)
      assert.deepStrictEqual([restarted.State.Status, restarted.RestartCount], ["running", 0])
      // Stopped means cleaned up: a start may follow at once.
      yield* docker.stop(always.Id, { timeout: 0 })
      assert.deepStrictEqual(yield* docker.start(always.Id), { alreadyRunning: false })
      yield* docker.remove(always.Id, { force: true })

      const rm = yield* docker.create(undefined, body({ Cmd: ["true"], HostConfig: { AutoRemove: true } }))
      const removed = yield* Effect.forkScoped(yield* docker.wait(rm.Id, "removed"))
      yield* docker.start(rm.Id)
      assert.strictEqual((yield* Fiber.join(removed)).StatusCode, 0)
      const gone = yield* docker.inspect(rm.Id).pipe(Effect.as(false), Effect.catch((e) => Effect.succeed(e.status === 404)))
      assert.isTrue(gone, "removed once the wait says so")
    }).pipe(Effect.scoped), 60_000)

  it.live("bad input: a clear status and message, nothing created", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("eng")
      const ctx = yield* Layer.build(engine(namespace))
      const docker = Context.get(ctx, Engine)
      const client = Context.get(ctx, Containerd)
      const cases: Array<[string | undefined, CreateBody, number]> = [
        ["bad name!", body({}), 400],
        [undefined, body({ Image: "nosuch/image:v9" }), 404],
        [undefined, body({ HostConfig: { NetworkMode: "container:x" } }), 400],
        [undefined, body({ HostConfig: { Binds: ["data:/data"] } }), 400],
        [undefined, body({ HostConfig: { RestartPolicy: { Name: "sometimes" } } }), 400],
        [undefined, body({ HostConfig: { AutoRemove: true, RestartPolicy: { Name: "always" } } }), 400],
        [undefined, body({ StopSignal: "SIGNOPE" }), 400]
      ]
      for (const [name, request, status] of cases) {
        const error = yield* Effect.flip(docker.create(name, request))
        assert.strictEqual(error.status, status, error.message)
        assert.isAbove(error.message.length, 10)
      }
      yield* docker.create("taken", body({}))
      const dup = yield* Effect.flip(docker.create("taken", body({})))
      assert.strictEqual(dup.status, 409)
      assert.include(dup.message, "already in use")
      const { containers } = yield* client.containers.list({})
      assert.strictEqual(containers.length, 1)
    }).pipe(Effect.scoped), 60_000)

  it.live("an exec that exited is forgotten after the retention (dockerd's exec GC); a running one is kept", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("eng")
      const ctx = yield* Layer.build(engine(namespace, { execRetention: "2 seconds" }))
      const docker = Context.get(ctx, Engine)
      const { Id } = yield* docker.create(undefined, body({ Cmd: ["sleep", "600"] }))
      yield* docker.start(Id)
      const running = yield* docker.execCreate(Id, { Cmd: ["sleep", "600"] })
      yield* docker.execStart(running.Id, { detach: true })
      const done = yield* docker.execCreate(Id, { Cmd: ["sh", "-c", "exit 4"] })
      assert.strictEqual(yield* (yield* docker.execStart(done.Id, { detach: true })).exited, 4)
      assert.strictEqual((yield* docker.execInspect(done.Id)).ExitCode, 4, "inspectable once exited")

      yield* eventually(Effect.map(Effect.exit(docker.execInspect(done.Id)), Exit.isFailure), "10 seconds")
      assert.strictEqual((yield* Effect.flip(docker.execInspect(done.Id))).status, 404)
      assert.isTrue((yield* docker.execInspect(running.Id)).Running, "a running exec is never forgotten")
      yield* docker.remove(Id, { force: true })
    }))
})
