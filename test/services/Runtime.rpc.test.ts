/**
 * The RPC budget of the handles, counted twice: by the client's RpcCalls metric
 * and by a proxy between the client and containerd that counts what crosses the
 * wire. A full lifecycle costs 10 RPCs the first time an image is used and 7 after;
 * an exec costs 3.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
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
import { VersionDefinition } from "../../src/gen/containerd/services/version/v1/version.ts"
import { Containerd, rpcCounts } from "../../src/services/Containerd.ts"
import { Runtime } from "../../src/services/Runtime.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { startGrpcProxy } from "../support/GrpcProxy.ts"
import { importFixture, shared, uniqueNamespace } from "../support/SharedContainerd.ts"

const since = (before: ReadonlyMap<string, number>, after: ReadonlyMap<string, number>) =>
  Object.fromEntries(
    [...after].map(([m, n]) => [m.slice(m.indexOf(".", 12) + 1), n - (before.get(m) ?? 0)] as const).filter(([, n]) => n > 0)
  )

const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0)

describe("RPC economy (client counter and proxy agree)", () => {
  it.live("a lifecycle costs 10 RPCs the first time an image is used, 7 after; an exec costs 3", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("rpc")
      yield* importFixture(namespace)
      const proxy = yield* startGrpcProxy(shared().address, [
        ContainersDefinition, ContentDefinition, EventsDefinition, ImagesDefinition, SnapshotsDefinition, TasksDefinition,
        VersionDefinition
      ])
      const fifoDir = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-fifo-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(fifoDir, { recursive: true, force: true })))
      const layer = Live.services({ runtime: { fifoDir } }).pipe(
        Layer.provideMerge(Containerd.layer({ address: proxy.address, namespace }))
      )

      yield* Effect.gen(function*() {
        const runtime = yield* Runtime
        const measure = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
          Effect.gen(function*() {
            const client = yield* rpcCounts
            const wire = proxy.counts()
            const value = yield* effect
            const counted = { client: since(client, yield* rpcCounts), proxy: since(wire, proxy.counts()) }
            assert.deepStrictEqual(counted.proxy, counted.client, "the proxy saw what the client counted")
            return { value, counts: counted.client }
          })
        const lifecycle = (id: string) =>
          Effect.scoped(Effect.gen(function*() {
            const container = yield* runtime.containers.create({ id, image: FIXTURE_IMAGE, command: ["sh", "-c", "exit 4"] })
            const task = yield* container.newTask()
            yield* task.start
            const status = yield* task.wait
            yield* task.delete
            yield* container.delete({ snapshotCleanup: true })
            return status.code
          }))

        // Once the image is known: the floor.
        const lifecycleRpcs = {
          "containers.v1.Containers/Create": 1,
          "snapshots.v1.Snapshots/Prepare": 1,
          "tasks.v1.Tasks/Create": 1,
          "tasks.v1.Tasks/Start": 1,
          "tasks.v1.Tasks/Delete": 1,
          "snapshots.v1.Snapshots/Remove": 1,
          "containers.v1.Containers/Delete": 1
        }
        const first = yield* measure(lifecycle("first"))
        assert.strictEqual(first.value, 4)
        assert.deepStrictEqual(first.counts, { ...lifecycleRpcs, "images.v1.Images/Get": 1, "content.v1.Content/Read": 2 })
        assert.strictEqual(total(first.counts), 10)

        const again = yield* measure(lifecycle("again"))
        assert.strictEqual(again.value, 4)
        assert.deepStrictEqual(again.counts, lifecycleRpcs)
        assert.strictEqual(total(again.counts), 7)

        const container = yield* runtime.containers.create({ id: "execs", image: FIXTURE_IMAGE, command: ["sleep", "30"] })
        const task = yield* container.newTask()
        yield* task.start
        const exec = yield* measure(Effect.scoped(Effect.gen(function*() {
          const process = yield* task.exec("one", { args: ["sh", "-c", "exit 6"] })
          yield* process.start
          yield* process.wait
          return (yield* process.delete).code
        })))
        assert.strictEqual(exec.value, 6)
        assert.deepStrictEqual(exec.counts, {
          "tasks.v1.Tasks/Exec": 1,
          "tasks.v1.Tasks/Start": 1,
          "tasks.v1.Tasks/DeleteProcess": 1
        })
        yield* task.kill("KILL")
        yield* task.wait
        yield* task.delete
        yield* container.delete()
      }).pipe(Effect.provide(layer))
    }))
})
