import { assert, describe, it } from "@effect/vitest"
import { type Duration, Effect, Fiber, Layer, Option, Schedule } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Live from "../../src/layers/Live.ts"
import { ContainersDefinition } from "../../src/gen/containerd/services/containers/v1/containers.ts"
import { ContentDefinition } from "../../src/gen/containerd/services/content/v1/content.ts"
import { EventsDefinition } from "../../src/gen/containerd/services/events/v1/events.ts"
import { ImagesDefinition } from "../../src/gen/containerd/services/images/v1/images.ts"
import { SnapshotsDefinition } from "../../src/gen/containerd/services/snapshots/v1/snapshots.ts"
import { TasksDefinition } from "../../src/gen/containerd/services/tasks/v1/tasks.ts"
import { Containerd } from "../../src/services/Containerd.ts"
import { type ContainerExit, ExitHandler, Monitors, type MonitorsShape } from "../../src/services/Monitors.ts"
import { Runtime, Stdio } from "../../src/services/Runtime.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { startGrpcProxy } from "../support/GrpcProxy.ts"
import { bundlesOf, signal } from "../support/Processes.ts"
import { importFixture, shared, sharedClient, uniqueNamespace } from "../support/SharedContainerd.ts"
import { exitWaitsPending, monitorStats } from "../support/Gauges.ts"

/**
 * Everything, over the shared daemon (or a proxy in front of it), with `handle`
 * as the consumer's exit handler; every duration as shipped.
 */
const monitorsLayer = (
  namespace: string,
  fifoDir: string,
  handle: (exit: ContainerExit, monitors: MonitorsShape) => Effect.Effect<void, unknown>,
  address?: string
) =>
  Monitors.layer().pipe(
    Layer.provideMerge(Layer.succeed(ExitHandler, ExitHandler.of({ handle }))),
    Layer.provideMerge(Live.services({ runtime: { fifoDir } })),
    Layer.provideMerge(
      address === undefined ? sharedClient(namespace) : Containerd.layer({ address, namespace }).pipe(Layer.orDie)
    )
  )

/** A fault-injecting proxy in front of the shared daemon. */
const proxied = startGrpcProxy(shared().address, [
  ContainersDefinition, ContentDefinition, EventsDefinition, ImagesDefinition, SnapshotsDefinition, TasksDefinition
])

/** A namespace with the fixture, and a FIFO directory removed with the test. */
const setup = Effect.gen(function*() {
  const namespace = uniqueNamespace("mon")
  yield* importFixture(namespace)
  const fifoDir = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-fifo-"))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )
  return { namespace, fifoDir }
})

/** Polls `check` every 20 ms until it holds, for at most `within`. */
const eventually = <E>(check: Effect.Effect<boolean, E>, within: Duration.Input = "10 seconds") =>
  check.pipe(
    Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (ok) => ok }),
    Effect.timeout(within)
  )

describe("Monitors against containerd", () => {
  it.live("50 containers with different exit codes: each handler runs once, with the right status", () =>
    Effect.gen(function*() {
      const { fifoDir, namespace } = yield* setup
      const handled: Array<ContainerExit> = []
      yield* Effect.gen(function*() {
        const monitors = yield* Monitors
        yield* Effect.forEach(Array.from({ length: 50 }, (_, i) => i), (i) =>
          Effect.gen(function*() {
            yield* monitors.create({ id: `c${i}`, image: FIXTURE_IMAGE, command: ["sh", "-c", `exit ${i}`] })
            yield* monitors.start(`c${i}`)
          }), { concurrency: 8, discard: true })
        yield* eventually(Effect.sync(() => handled.length === 50), "60 seconds")
        const states = yield* monitors.states
        assert.isTrue(states.every((s) => s.status === "exited" && s.exitCode === Number(s.id.slice(1))))
        // A removal takes the container's lock after any handling queued before it,
        // and nothing runs for a container once it is gone: the count is final.
        yield* Effect.forEach(Array.from({ length: 50 }, (_, i) => `c${i}`), (id) => monitors.remove(id), { concurrency: 8, discard: true })
        assert.deepStrictEqual(yield* monitorStats, { tracked: 0, monitors: 0, backoffKeys: 0, backoffEvents: 0 })
        assert.strictEqual(handled.length, 50, "no handler ran twice")
        assert.deepStrictEqual(
          handled.map((h) => `${h.containerId}=${h.status.code}`).sort(),
          Array.from({ length: 50 }, (_, i) => `c${i}=${i}`).sort()
        )
      }).pipe(Effect.provide(monitorsLayer(namespace, fifoDir, (exit) => Effect.sync(() => void handled.push(exit)))))
    }), 120_000)

  it.live("a failing handler is retried through the backoff queue (1 s, as shipped); the container's next exit waits behind it", () =>
    Effect.gen(function*() {
      const { fifoDir, namespace } = yield* setup
      const order: Array<number> = []
      let ready = false
      yield* Effect.gen(function*() {
        const monitors = yield* Monitors
        // Exits 1 the first time, 2 the next: the rootfs keeps the mark between runs.
        yield* monitors.create({
          id: "flaky",
          image: FIXTURE_IMAGE,
          command: ["sh", "-c", "test -e /ran && exit 2; touch /ran; exit 1"]
        })
        yield* monitors.start("flaky")
        yield* eventually(Effect.map(monitorStats, (s) => s.backoffKeys === 1))
        // Started again, it exits again while its first exit waits in backoff.
        yield* monitors.start("flaky")
        yield* eventually(Effect.map(monitorStats, (s) => s.backoffEvents === 2))
        assert.deepStrictEqual(order, [], "nothing handled while the consumer fails")
        ready = true
        yield* eventually(Effect.sync(() => order.length === 2))
        assert.deepStrictEqual(order, [1, 2])
        const stats = yield* monitorStats
        assert.deepStrictEqual([stats.backoffKeys, stats.backoffEvents], [0, 0])
        yield* monitors.remove("flaky")
      }).pipe(Effect.provide(monitorsLayer(namespace, fifoDir, (exit) =>
        Effect.suspend(() => {
          if (!ready) return Effect.fail("the consumer is not ready yet")
          order.push(exit.status.code)
          return Effect.void
        }))))
    }), 60_000)

  it.live("50 exits missed while disconnected, then Tasks.Get and Containers.List failing: each handled once, with its code", () =>
    Effect.gen(function*() {
      const { fifoDir, namespace } = yield* setup
      const proxy = yield* proxied
      const handled: Array<ContainerExit> = []
      yield* Effect.gen(function*() {
        const monitors = yield* Monitors
        const ids = Array.from({ length: 50 }, (_, i) => `m${i}`)
        yield* Effect.forEach(ids, (id, i) =>
          Effect.gen(function*() {
            yield* monitors.create({ id, image: FIXTURE_IMAGE, command: ["sh", "-c", `trap 'exit ${i}' TERM; while true; do sleep 0.1; done`] })
            yield* monitors.start(id)
          }), { concurrency: 8, discard: true })
        // The event stream drops, and the resubscription is held while every container exits.
        const resubscribe = yield* proxy.hold("Events/Subscribe", "request")
        yield* proxy.cut("Events/Subscribe")
        yield* resubscribe.arrived
        yield* Effect.forEach(ids, (id) =>
          Effect.flatMap(monitors.get(id), (t) => Option.getOrThrow(t).task!.kill("SIGTERM")), { concurrency: 8, discard: true })
        const client = yield* Containerd
        yield* eventually(
          Effect.map(client.tasks.list({}), ({ tasks }) => tasks.filter((t) => t.status === 3).length === 50),
          "30 seconds"
        )
        assert.strictEqual(handled.length, 0, "nothing was seen while disconnected")
        yield* proxy.failNext("Tasks/Get", 20)
        yield* proxy.failNext("Containers/List", 3)
        yield* resubscribe.release
        yield* eventually(Effect.sync(() => handled.length === 50), "60 seconds")
        assert.isAtLeast(proxy.injected("Tasks/Get"), 1)
        assert.strictEqual(proxy.injected("Containers/List"), 3)
        yield* Effect.forEach(ids, (id) => monitors.remove(id), { concurrency: 8, discard: true })
        assert.deepStrictEqual(yield* monitorStats, { tracked: 0, monitors: 0, backoffKeys: 0, backoffEvents: 0 })
        assert.deepStrictEqual(
          handled.map((h) => `${h.containerId}=${h.status.code}`).sort(),
          ids.map((id, i) => `${id}=${i}`).sort(),
          "every exit once, with its real code"
        )
      }).pipe(Effect.provide(monitorsLayer(namespace, fifoDir, (exit) => Effect.sync(() => void handled.push(exit)), proxy.address)))
    }), 120_000)

  it.live("a container deleted with ctr while its exit is in backoff gets no handler call once its scope closed", () =>
    Effect.gen(function*() {
      const { fifoDir, namespace } = yield* setup
      const calls: Array<string> = []
      yield* Effect.gen(function*() {
        const monitors = yield* Monitors
        // Both fail their first handling; "witness" after "doomed", so its retry comes
        // no earlier than the one "doomed" would have had.
        for (const id of ["doomed", "witness"]) {
          yield* monitors.create({ id, image: FIXTURE_IMAGE, command: ["true"] })
          yield* monitors.start(id)
          yield* eventually(Effect.map(monitorStats, (s) => s.backoffKeys === (id === "doomed" ? 1 : 2)))
        }
        const ctr = (...args: Array<string>) =>
          execFileSync("ctr", ["--address", shared().address, "--namespace", namespace, ...args], { stdio: "pipe" })
        yield* Effect.sync(() => {
          try {
            ctr("task", "rm", "doomed")
          } catch {
            // Its handling may have deleted the task before it failed.
          }
          ctr("container", "rm", "doomed")
        })
        yield* eventually(Effect.map(monitors.get("doomed"), Option.isNone))
        const before = calls.filter((c) => c === "doomed").length
        yield* eventually(Effect.sync(() => calls.filter((c) => c === "witness").length === 2), "10 seconds")
        assert.strictEqual(calls.filter((c) => c === "doomed").length, before, "no call after its scope closed")
        assert.strictEqual((yield* monitorStats).backoffKeys, 0)
        yield* monitors.remove("witness")
      }).pipe(Effect.provide(monitorsLayer(namespace, fifoDir, (exit) =>
        Effect.suspend(() => {
          calls.push(exit.containerId)
          return calls.filter((c) => c === exit.containerId).length === 1 ? Effect.fail("not yet") : Effect.void
        }))))
    }), 60_000)

  it.live("an init killed while its start is in flight: start fails, its task is deleted, and it starts again", () =>
    Effect.gen(function*() {
      const { fifoDir, namespace } = yield* setup
      const proxy = yield* proxied
      yield* Effect.gen(function*() {
        const monitors = yield* Monitors
        const client = yield* Containerd
        yield* monitors.create({ id: "early", image: FIXTURE_IMAGE, command: ["sleep", "600"] })
        const held = yield* proxy.hold("Tasks/Start", "request")
        const starting = yield* Effect.forkChild(Effect.flip(monitors.start("early")))
        yield* held.arrived
        const { process } = yield* client.tasks.get({ containerId: "early" })
        signal(process!.pid, "SIGKILL")
        yield* eventually(Effect.map(client.tasks.get({ containerId: "early" }), ({ process }) => process?.status === 3))
        yield* held.release
        assert.match((yield* Fiber.join(starting)).message, /stopped/)
        yield* eventually(Effect.map(client.tasks.list({}), ({ tasks }) => tasks.length === 0))
        const task = yield* monitors.start("early")
        yield* task.kill("SIGKILL")
        yield* eventually(Effect.map(monitors.get("early"), (t) => Option.getOrThrow(t).state.status === "exited"))
        yield* monitors.remove("early")
      }).pipe(Effect.provide(monitorsLayer(namespace, fifoDir, () => Effect.void, proxy.address)))
    }), 60_000)

  it.live("a container deleted with ctr has its scope closed within 1 s, and nothing of it is left", () =>
    Effect.gen(function*() {
      const { fifoDir, namespace } = yield* setup
      yield* Effect.gen(function*() {
        const monitors = yield* Monitors
        const fds = () => fs.readdirSync("/proc/self/fd").length
        const fifos = () => fs.existsSync(path.join(fifoDir, namespace)) ? fs.readdirSync(path.join(fifoDir, namespace)).length : 0
        const baseline = { stats: yield* monitorStats, pending: yield* exitWaitsPending, fds: fds(), fifos: fifos() }
        yield* monitors.create({ id: "victim", image: FIXTURE_IMAGE, command: ["sleep", "600"] })
        yield* monitors.start("victim", { stdio: Stdio.pipe({ stdin: true }) })
        assert.strictEqual((yield* monitorStats).monitors, 1)
        const ctr = (...args: Array<string>) =>
          execFileSync("ctr", ["--address", shared().address, "--namespace", namespace, ...args], { stdio: "pipe" })
        ctr("task", "kill", "--signal", "KILL", "victim")
        yield* eventually(Effect.map(monitors.get("victim"), (t) => Option.isSome(t) && t.value.state.status === "exited"))
        yield* Effect.sync(() => {
          try {
            ctr("task", "rm", "victim")
          } catch {
            // We may have deleted the task first.
          }
          ctr("container", "rm", "victim")
        })
        const deletedAt = Date.now()
        yield* eventually(Effect.map(monitorStats, (s) => s.tracked === 0), "1 second")
        assert.isBelow(Date.now() - deletedAt, 1000)
        assert.deepStrictEqual(yield* monitorStats, baseline.stats)
        assert.strictEqual(yield* exitWaitsPending, baseline.pending)
        assert.strictEqual(fifos(), baseline.fifos)
        yield* eventually(Effect.sync(() => fds() <= baseline.fds), "1 second")
      }).pipe(Effect.provide(monitorsLayer(namespace, fifoDir, () => Effect.void)))
    }), 60_000)

  it.live("OOM: a container allocating past its limit is oomKilled with 137; started again, the mark is clear until the next kill", () =>
    Effect.gen(function*() {
      const { fifoDir, namespace } = yield* setup
      const handled: Array<ContainerExit> = []
      yield* Effect.gen(function*() {
        const monitors = yield* Monitors
        yield* monitors.create({
          id: "hog",
          image: FIXTURE_IMAGE,
          command: ["sh", "-c", "sleep 0.3; a=$(head -c 64000000 /dev/zero | tr '\\0' x)"],
          resources: { memory: 16 * 1024 * 1024 }
        })
        yield* monitors.start("hog")
        yield* eventually(Effect.sync(() => handled.length === 1))
        assert.deepStrictEqual([handled[0]?.status.code, handled[0]?.oomKilled], [137, true])
        const state = (yield* monitors.get("hog")).pipe(Option.getOrThrow).state
        assert.deepStrictEqual([state.status, state.exitCode, state.oomKilled], ["exited", 137, true])

        yield* monitors.start("hog")
        const restarted = (yield* monitors.get("hog")).pipe(Option.getOrThrow).state
        assert.deepStrictEqual([restarted.status, restarted.oomKilled], ["running", false])
        yield* eventually(Effect.sync(() => handled.length === 2))
        assert.isTrue(handled[1]?.oomKilled)
        yield* monitors.remove("hog")
      }).pipe(Effect.provide(monitorsLayer(namespace, fifoDir, (exit) => Effect.sync(() => void handled.push(exit)))))
    }), 60_000)

  it.live("recovery: exits while we were down are handled exactly once, and every state is right", () =>
    Effect.gen(function*() {
      const { fifoDir, namespace } = yield* setup
      const handled: Array<ContainerExit> = []
      const layer = (address?: string) => monitorsLayer(namespace, fifoDir, (exit) => Effect.sync(() => void handled.push(exit)), address)
      const ctr = (...args: Array<string>) =>
        execFileSync("ctr", ["--address", shared().address, "--namespace", namespace, ...args], { stdio: "pipe" })

      yield* Effect.gen(function*() {
        const monitors = yield* Monitors
        const runtime = yield* Runtime
        for (const [id, command] of [
          ["keeps-running", ["sleep", "600"]],
          // Exits with 3 by itself once told (SIGTERM), so only while we are down, however slow the machine.
          ["exits-while-down", ["sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.1; done"]],
          ["deleted-behind", ["sleep", "600"]],
          ["exited-before", ["sh", "-c", "exit 4"]]
        ] as const) {
          yield* monitors.create({ id, image: FIXTURE_IMAGE, command: [...command] })
          yield* monitors.start(id)
        }
        yield* eventually(Effect.sync(() => handled.length === 1))
        // A task created but never started, by a process of ours that died.
        const never = yield* runtime.containers.create({
          id: "never-started",
          image: FIXTURE_IMAGE,
          command: ["true"],
          labels: { "effect-containerd.io/managed": "true" }
        })
        yield* never.newTask()
      }).pipe(Effect.scoped, Effect.provide(layer()))
      assert.deepStrictEqual(handled.map((h) => `${h.containerId}=${h.status.code}`), ["exited-before=4"])

      // While we are down: one exits by itself, one is killed and its task deleted behind our back.
      ctr("task", "kill", "--signal", "TERM", "exits-while-down")
      ctr("task", "kill", "--signal", "KILL", "deleted-behind")
      const stopped = (id: string) => new RegExp(`^${id}\\s+\\d+\\s+STOPPED`, "m").test(String(ctr("task", "ls")))
      yield* eventually(Effect.sync(() => stopped("exits-while-down") && stopped("deleted-behind")))
      ctr("task", "rm", "deleted-behind")

      // We come back while containerd fails our first calls: recovery retries them.
      const proxy = yield* proxied
      yield* proxy.failNext("Containers/List", 2)
      yield* proxy.failNext("Tasks/Get", 2)

      yield* Effect.gen(function*() {
        const monitors = yield* Monitors
        const client = yield* Containerd
        yield* eventually(Effect.sync(() => handled.length === 3))
        assert.strictEqual(proxy.injected("Containers/List"), 2, "recovery's failed list was retried")
        const got = handled.slice(1).map((h) => `${h.containerId}=${h.status._tag}:${h.status.code}:${h.recovered}`).sort()
        assert.deepStrictEqual(got, ["deleted-behind=ExitUnknown:255:true", "exits-while-down=Exited:3:true"])
        const states = Object.fromEntries((yield* monitors.states).map((s) => [s.id, `${s.status}:${s.exitCode ?? "-"}`]))
        assert.deepStrictEqual(states, {
          "keeps-running": "running:-",
          "exits-while-down": "exited:3",
          "deleted-behind": "exited:255",
          "exited-before": "exited:4",
          "never-started": "created:-"
        })
        const { tasks } = yield* client.tasks.list({})
        assert.deepStrictEqual(tasks.map((t) => t.id), ["keeps-running"], "stopped and never-started tasks are deleted")

        // Still watched: its exit is handled, once.
        const running = (yield* monitors.get("keeps-running")).pipe(Option.getOrThrow)
        yield* running.task!.kill("KILL")
        yield* eventually(Effect.sync(() => handled.length === 4))
        assert.strictEqual(handled[3]?.containerId, "keeps-running")
        for (const id of ["keeps-running", "exits-while-down", "deleted-behind", "exited-before", "never-started"]) {
          yield* monitors.remove(id)
        }
      }).pipe(Effect.scoped, Effect.provide(layer(proxy.address)))
      // That layer is shut down: nothing can be handled any more, so the count is final.
      assert.strictEqual(handled.length, 4, "every exit handled exactly once")
    }), 90_000)

  it.live("a shim killed with SIGKILL leaves its container reported exited, not stuck running", () =>
    Effect.gen(function*() {
      const { fifoDir, namespace } = yield* setup
      yield* Effect.gen(function*() {
        const monitors = yield* Monitors
        yield* monitors.create({ id: "orphan", image: FIXTURE_IMAGE, command: ["sleep", "600"] })
        yield* monitors.start("orphan")
        const bundle = bundlesOf(shared().state).find((b) => b.namespace === namespace && b.id === "orphan")
        assert.isDefined(bundle)
        assert.strictEqual(bundle!.shimPids.length, 1)
        for (const pid of bundle!.shimPids) signal(pid, "SIGKILL")
        yield* eventually(Effect.map(monitors.get("orphan"), (t) => Option.isSome(t) && t.value.state.status === "exited"))
        yield* monitors.remove("orphan")
      }).pipe(Effect.provide(monitorsLayer(namespace, fifoDir, () => Effect.void)))
    }), 60_000)
})
