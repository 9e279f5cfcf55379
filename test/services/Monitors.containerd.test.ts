import { assert, describe, it } from "@effect/vitest"
import { type Duration, Effect, Layer, Option, Schedule } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Live from "../../src/layers/Live.ts"
import { Containerd } from "../../src/services/Containerd.ts"
import { ExitHub } from "../../src/services/ExitHub.ts"
import { type ContainerExit, ExitHandler, Monitors, type MonitorsShape } from "../../src/services/Monitors.ts"
import { Runtime, Stdio } from "../../src/services/Runtime.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { bundlesOf, signal } from "../support/Processes.ts"
import { importFixture, shared, sharedClient, uniqueNamespace } from "../support/SharedContainerd.ts"

/** Everything, over the shared daemon, with `handle` as the consumer's exit handler. */
const monitorsLayer = (
  namespace: string,
  fifoDir: string,
  handle: (exit: ContainerExit, monitors: MonitorsShape) => Effect.Effect<void, unknown>
) =>
  Monitors.layer({ backoff: { tick: "100 millis", initialDelay: "300 millis" } }).pipe(
    Layer.provideMerge(Layer.succeed(ExitHandler, ExitHandler.of({ handle }))),
    Layer.provideMerge(Live.services({ runtime: { fifoDir } })),
    Layer.provideMerge(sharedClient(namespace))
  )

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
const eventually = (check: Effect.Effect<boolean>, within: Duration.Input = "10 seconds") =>
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
        yield* Effect.sleep("300 millis")
        assert.strictEqual(handled.length, 50, "no handler ran twice")
        assert.deepStrictEqual(
          handled.map((h) => `${h.containerId}=${h.status.code}`).sort(),
          Array.from({ length: 50 }, (_, i) => `c${i}=${i}`).sort()
        )
        const states = yield* monitors.states
        assert.isTrue(states.every((s) => s.status === "exited" && s.exitCode === Number(s.id.slice(1))))
        yield* Effect.forEach(Array.from({ length: 50 }, (_, i) => `c${i}`), (id) => monitors.remove(id), { concurrency: 8, discard: true })
        assert.strictEqual((yield* monitors.stats).tracked, 0)
      }).pipe(Effect.provide(monitorsLayer(namespace, fifoDir, (exit) => Effect.sync(() => void handled.push(exit)))))
    }), 120_000)

  it.live("a failing handler is retried through the backoff queue; the container's later exits wait behind it", () =>
    Effect.gen(function*() {
      const { fifoDir, namespace } = yield* setup
      const order: Array<number> = []
      let failFirst = true
      yield* Effect.gen(function*() {
        const monitors = yield* Monitors
        yield* monitors.create({ id: "flaky", image: FIXTURE_IMAGE, command: ["sh", "-c", "exit 1"] })
        yield* monitors.start("flaky")
        yield* eventually(Effect.map(monitors.stats, (s) => s.backoffKeys === 1))
        // Started again, it exits again while its first exit waits in backoff.
        yield* monitors.start("flaky")
        yield* eventually(Effect.map(monitors.stats, (s) => s.backoffEvents === 2 || order.length === 2))
        yield* eventually(Effect.sync(() => order.length === 2))
        assert.deepStrictEqual(order, [1, 1])
        const stats = yield* monitors.stats
        assert.deepStrictEqual([stats.backoffKeys, stats.backoffEvents], [0, 0])
        yield* monitors.remove("flaky")
      }).pipe(Effect.provide(monitorsLayer(namespace, fifoDir, (exit) =>
        Effect.suspend(() => {
          if (failFirst) {
            failFirst = false
            return Effect.fail("the consumer is not ready yet")
          }
          order.push(exit.status.code)
          return Effect.void
        }))))
    }), 60_000)

  it.live("a container deleted with ctr has its scope closed within 1 s, and nothing of it is left", () =>
    Effect.gen(function*() {
      const { fifoDir, namespace } = yield* setup
      yield* Effect.gen(function*() {
        const monitors = yield* Monitors
        const hub = yield* ExitHub
        const fds = () => fs.readdirSync("/proc/self/fd").length
        const fifos = () => fs.existsSync(path.join(fifoDir, namespace)) ? fs.readdirSync(path.join(fifoDir, namespace)).length : 0
        const baseline = { stats: yield* monitors.stats, pending: yield* hub.pending, fds: fds(), fifos: fifos() }
        yield* monitors.create({ id: "victim", image: FIXTURE_IMAGE, command: ["sleep", "600"] })
        yield* monitors.start("victim", { stdio: Stdio.pipe({ stdin: true }) })
        assert.strictEqual((yield* monitors.stats).monitors, 1)
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
        yield* eventually(Effect.map(monitors.stats, (s) => s.tracked === 0), "1 second")
        assert.isBelow(Date.now() - deletedAt, 1000)
        assert.deepStrictEqual(yield* monitors.stats, baseline.stats)
        assert.strictEqual(yield* hub.pending, baseline.pending)
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
      const layer = () => monitorsLayer(namespace, fifoDir, (exit) => Effect.sync(() => void handled.push(exit)))
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

      yield* Effect.gen(function*() {
        const monitors = yield* Monitors
        const client = yield* Containerd
        yield* eventually(Effect.sync(() => handled.length === 3))
        yield* Effect.sleep("300 millis")
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
      }).pipe(Effect.scoped, Effect.provide(layer()))
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
