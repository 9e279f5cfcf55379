/**
 * The handles on their failure paths, against the real containerd through the
 * fault-injecting proxy: a task whose init dies before it is started
 * (containerd's TestIssue9103), an exit that happens while `attach` is between
 * registering and reading, and a delete that finds the task gone.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Stream } from "effect"
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
import { Events } from "../../src/services/Events.ts"
import { Runtime, Stdio } from "../../src/services/Runtime.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { startGrpcProxy } from "../support/GrpcProxy.ts"
import { importFixture, shared, uniqueNamespace } from "../support/SharedContainerd.ts"
import { exitWaitsPending } from "../support/Gauges.ts"

/** The library over a proxy in front of the shared containerd, in a namespace of its own. */
const setup = Effect.gen(function*() {
  const namespace = uniqueNamespace("rtf")
  yield* importFixture(namespace)
  const proxy = yield* startGrpcProxy(shared().address, [
    ContainersDefinition, ContentDefinition, EventsDefinition, ImagesDefinition, SnapshotsDefinition, TasksDefinition
  ])
  const fifoDir = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-fifo-"))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )
  const layer = Live.services({ runtime: { fifoDir } }).pipe(
    Layer.provideMerge(Containerd.layer({ address: proxy.address, namespace }).pipe(Layer.orDie))
  )
  return { namespace, proxy, fifoDir, layer }
})

/** Waits until containerd has published the exit of `containerId`'s init. */
const exitPublished = (containerId: string) =>
  Effect.gen(function*() {
    const events = yield* Events
    const stream = yield* events.subscribe({ tags: ["TaskExit"] })
    return yield* Effect.forkScoped(stream.pipe(
      Stream.filter((e) => e._tag === "TaskExit" && e.containerId === containerId && e.id === containerId),
      Stream.runHead
    ))
  })

describe("Runtime on failure paths (real containerd, fault-injecting proxy)", () => {
  it.live("a container whose task is being created is not deleted (its shim would be out of reach); once the task is, it is", () =>
    Effect.gen(function*() {
      const { layer, proxy } = yield* setup
      yield* Effect.gen(function*() {
        const runtime = yield* Runtime
        const client = yield* Containerd
        const c = yield* runtime.containers.create({ id: "creating-task", image: FIXTURE_IMAGE, command: ["sleep", "30"] })
        const hold = yield* proxy.hold("Tasks/Create", "request")
        const creating = yield* Effect.forkChild(Effect.scoped(Effect.flatMap(c.newTask(), (task) => task.delete)))
        yield* hold.arrived
        const refused = yield* Effect.flip(c.delete())
        assert.strictEqual(refused.reason._tag, "FailedPrecondition")
        assert.include(refused.message, "has a task being created")
        assert.strictEqual((yield* client.containers.list({})).containers.length, 1, "the record is still there")
        yield* hold.release
        yield* Fiber.join(creating)
        yield* c.delete()
        const { tasks } = yield* client.tasks.list({})
        assert.deepStrictEqual([(yield* client.containers.list({})).containers, tasks], [[], []])
      }).pipe(Effect.provide(layer))
    }), 60_000)

  it.live("an init killed between Tasks.Create and Start: wait answers 137 without a start, and start fails (TestIssue9103)", () =>
    Effect.gen(function*() {
      const { layer } = yield* setup
      yield* Effect.gen(function*() {
        const runtime = yield* Runtime
        const c = yield* runtime.containers.create({ id: "killed-early", image: FIXTURE_IMAGE, command: ["sleep", "30"] })
        const task = yield* c.newTask()
        assert.strictEqual(task.statusSeen, "created")
        process.kill(task.pid, "SIGKILL")
        const status = yield* task.wait.pipe(Effect.timeout("10 seconds"))
        assert.deepStrictEqual([status._tag, status.code, status.pid], ["Exited", 137, task.pid])
        const start = yield* Effect.flip(task.start)
        assert.match(start.message, /stopped/)
        assert.strictEqual((yield* task.delete).code, 137)
        yield* c.delete()
      }).pipe(Effect.provide(layer))
    }), 60_000)

  it.live("an init killed while its Tasks.Start is in flight: the start fails and wait answers 137", () =>
    Effect.gen(function*() {
      const { layer, proxy } = yield* setup
      yield* Effect.gen(function*() {
        const runtime = yield* Runtime
        const c = yield* runtime.containers.create({ id: "killed-starting", image: FIXTURE_IMAGE, command: ["sleep", "30"] })
        const task = yield* c.newTask()
        const exited = yield* exitPublished(c.id)
        const held = yield* proxy.hold("Tasks/Start", "request")
        const starting = yield* Effect.forkChild(Effect.flip(task.start))
        yield* held.arrived
        process.kill(task.pid, "SIGKILL")
        yield* Fiber.join(exited)
        yield* held.release
        assert.match((yield* Fiber.join(starting)).message, /stopped/)
        const status = yield* task.wait.pipe(Effect.timeout("10 seconds"))
        assert.deepStrictEqual([status._tag, status.code], ["Exited", 137])
        yield* task.delete
        yield* c.delete()
      }).pipe(Effect.scoped, Effect.provide(layer))
    }), 60_000)

  it.live("attach registers before it reads: a task that exits while Tasks.Get is answering is still reported", () =>
    Effect.gen(function*() {
      const { layer, proxy } = yield* setup
      yield* Effect.gen(function*() {
        const runtime = yield* Runtime
        const c = yield* runtime.containers.create({ id: "attached", image: FIXTURE_IMAGE, command: ["sleep", "600"] })
        const task = yield* c.newTask()
        yield* task.start
        const exited = yield* exitPublished(c.id)
        // containerd answers "running"; the answer is held while the task is killed and its exit published.
        const held = yield* proxy.hold("Tasks/Get", "response")
        const other = yield* runtime.containers.load(c.id)
        const attaching = yield* Effect.forkChild(other.task)
        yield* held.arrived
        yield* task.kill("SIGKILL")
        yield* Fiber.join(exited)
        yield* held.release
        const attached = yield* Fiber.join(attaching)
        assert.strictEqual(attached.statusSeen, "running")
        const status = yield* attached.wait.pipe(Effect.timeout("10 seconds"))
        assert.deepStrictEqual([status._tag, status.code], ["Exited", 137])
        yield* task.delete
        yield* c.delete()
      }).pipe(Effect.scoped, Effect.provide(layer))
    }), 60_000)

  it.live("a delete that finds the task deleted by someone else still releases its stdio and exit registration", () =>
    Effect.gen(function*() {
      const { fifoDir, layer, namespace } = yield* setup
      yield* Effect.gen(function*() {
        const runtime = yield* Runtime
        const client = yield* Containerd
        const fifos = () => fs.readdirSync(path.join(fifoDir, namespace)).filter((d) => !d.startsWith("."))
        const c = yield* runtime.containers.create({ id: "stolen", image: FIXTURE_IMAGE, command: ["sh", "-c", "echo hi"] })
        const pendingBefore = yield* exitWaitsPending
        const task = yield* c.newTask({ stdio: Stdio.pipe({ stdin: true }) })
        assert.strictEqual(fifos().length, 1)
        yield* task.start
        yield* task.wait
        yield* client.tasks.delete({ containerId: c.id })
        const error = yield* Effect.flip(task.delete)
        assert.strictEqual(error.reason._tag, "NotFound")
        assert.isTrue(task.deleted, "the handle is spent")
        assert.deepStrictEqual(fifos(), [], "its FIFO directory is gone")
        assert.strictEqual(yield* exitWaitsPending, pendingBefore)
        assert.strictEqual((yield* task.delete).code, 0, "a second delete answers the recorded status")
        yield* c.delete()
      }).pipe(Effect.scoped, Effect.provide(layer))
    }), 60_000)
})
