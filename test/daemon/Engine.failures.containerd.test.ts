/**
 * The engine's create on its failure paths, against the real containerd
 * through the fault-injecting proxy: a create that fails leaves nothing
 * behind, and what a daemon killed in the middle of one left is removed at the
 * next start; the end of an exec's input survives a failed CloseIO.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Engine } from "../../src/daemon/Engine.ts"
import { EventLog } from "../../src/daemon/EventLog.ts"
import { ContainersDefinition } from "../../src/gen/containerd/services/containers/v1/containers.ts"
import { ContentDefinition } from "../../src/gen/containerd/services/content/v1/content.ts"
import { EventsDefinition } from "../../src/gen/containerd/services/events/v1/events.ts"
import { ImagesDefinition } from "../../src/gen/containerd/services/images/v1/images.ts"
import { SnapshotsDefinition } from "../../src/gen/containerd/services/snapshots/v1/snapshots.ts"
import { TasksDefinition } from "../../src/gen/containerd/services/tasks/v1/tasks.ts"
import * as Live from "../../src/layers/Live.ts"
import { Containerd } from "../../src/services/Containerd.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { startGrpcProxy } from "../support/GrpcProxy.ts"
import { importFixture, shared, uniqueNamespace } from "../support/SharedContainerd.ts"

/** An engine over a proxy in front of the shared containerd; the log root and fifo directory are the test's. */
const setup = Effect.gen(function*() {
  const namespace = uniqueNamespace("engf")
  yield* importFixture(namespace)
  const proxy = yield* startGrpcProxy(shared().address, [
    ContainersDefinition, ContentDefinition, EventsDefinition, ImagesDefinition, SnapshotsDefinition, TasksDefinition
  ])
  const tempDir = (prefix: string) =>
    Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), prefix))),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    )
  const logRoot = yield* tempDir("ectr-logs-")
  const fifoDir = yield* tempDir("ectr-fifo-")
  const layer = Engine.layer({ namespace, logRoot }).pipe(
    Layer.provideMerge(EventLog.layer),
    Layer.provideMerge(Live.services({ runtime: { fifoDir } })),
    Layer.provideMerge(Containerd.layer({ address: proxy.address, namespace }).pipe(Layer.orDie))
  )
  return { proxy, logRoot, layer }
})

describe("Engine on failure paths (real containerd, fault-injecting proxy)", () => {
  it.live("a create whose log options cannot be written makes no container, even when a rollback would fail", () =>
    Effect.gen(function*() {
      const { layer, logRoot, proxy } = yield* setup
      const ctx = yield* Layer.build(layer)
      const engine = Context.get(ctx, Engine)
      // Nothing can be made under the log root any more; and deleting a container would fail.
      fs.rmSync(logRoot, { recursive: true })
      fs.writeFileSync(logRoot, "")
      yield* proxy.failNext("Containers/Delete", 5)
      const failed = yield* Effect.exit(engine.create(undefined, { Image: FIXTURE_IMAGE, Cmd: ["true"] }))
      assert.isTrue(Exit.isFailure(failed))
      const { containers } = yield* Context.get(ctx, Containerd).containers.list({})
      assert.deepStrictEqual(containers.map((c) => c.id), [], "no container was made")
      fs.rmSync(logRoot)
      fs.mkdirSync(logRoot)
    }).pipe(Effect.scoped), 60_000)

  it.live("a create that containerd refuses leaves no container directory and no container", () =>
    Effect.gen(function*() {
      const { layer, logRoot, proxy } = yield* setup
      const engine = Context.get(yield* Layer.build(layer), Engine)
      yield* proxy.failNext("Containers/Create", 1)
      const failed = yield* Effect.exit(engine.create("doomed", { Image: FIXTURE_IMAGE, Cmd: ["true"] }))
      assert.isTrue(Exit.isFailure(failed))
      assert.strictEqual(proxy.injected("Containers/Create"), 1)
      assert.deepStrictEqual(fs.readdirSync(logRoot), [], "nothing of the failed create is left on disk")
      assert.deepStrictEqual(yield* engine.list({ all: true }), [])
      // The name was not taken by the failed create.
      const { Id } = yield* engine.create("doomed", { Image: FIXTURE_IMAGE, Cmd: ["true"] })
      assert.deepStrictEqual(fs.readdirSync(logRoot), [Id])
      yield* engine.remove(Id, { force: true })
    }).pipe(Effect.scoped), 60_000)

  it.live("a container directory whose container is gone is removed at the next start; a live container's is kept", () =>
    Effect.gen(function*() {
      const { layer, logRoot } = yield* setup
      const kept = yield* Effect.scoped(Effect.gen(function*() {
        const engine = Context.get(yield* Layer.build(layer), Engine)
        return (yield* engine.create("kept", { Image: FIXTURE_IMAGE, Cmd: ["true"] })).Id
      }))
      // As a daemon killed between writing a create's log options and making its container leaves it.
      const orphan = crypto.randomBytes(32).toString("hex")
      fs.mkdirSync(path.join(logRoot, orphan))
      fs.writeFileSync(path.join(logRoot, orphan, "log-config.json"), "{}")
      const engine = Context.get(yield* Layer.build(layer), Engine)
      assert.deepStrictEqual(fs.readdirSync(logRoot), [kept])
      yield* engine.remove(kept, { force: true })
    }).pipe(Effect.scoped), 60_000)

  it.live("the end of an exec's input reaches the process even when containerd fails the first CloseIO", () =>
    Effect.gen(function*() {
      const { layer, proxy } = yield* setup
      const engine = Context.get(yield* Layer.build(layer), Engine)
      const { Id } = yield* engine.create(undefined, { Image: FIXTURE_IMAGE, Cmd: ["sleep", "100"] })
      yield* engine.start(Id)
      const exec = yield* engine.execCreate(Id, { Cmd: ["cat"], AttachStdin: true, AttachStdout: true })
      const { exited, session } = yield* engine.execStart(exec.Id, { detach: false })
      yield* proxy.failNext("Tasks/CloseIO", 2)
      yield* session.write!(new TextEncoder().encode("hi\n"))
      yield* session.endInput
      // cat exits only when its stdin is closed.
      assert.strictEqual(yield* exited.pipe(Effect.timeout("20 seconds")), 0)
      assert.strictEqual(proxy.injected("Tasks/CloseIO"), 2)
      yield* engine.remove(Id, { force: true })
    }).pipe(Effect.scoped), 60_000)
})
