/**
 * The daemon SIGKILLed in the middle of an operation, then started again, as
 * a crash and a service manager's restart: what the killed process left
 * half-done (a pull's lease and partial content, a container whose create did
 * not finish, a task created but never started) is found and removed at start,
 * and the log says so; the same operation then succeeds. The gRPC fault proxy
 * holds the call the kill must land in, so it lands there every time.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Schedule } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { ContainersDefinition } from "../../src/gen/containerd/services/containers/v1/containers.ts"
import { ContentDefinition } from "../../src/gen/containerd/services/content/v1/content.ts"
import { DiffDefinition } from "../../src/gen/containerd/services/diff/v1/diff.ts"
import { EventsDefinition } from "../../src/gen/containerd/services/events/v1/events.ts"
import { ImagesDefinition } from "../../src/gen/containerd/services/images/v1/images.ts"
import { IntrospectionDefinition } from "../../src/gen/containerd/services/introspection/v1/introspection.ts"
import { LeasesDefinition } from "../../src/gen/containerd/services/leases/v1/leases.ts"
import { NamespacesDefinition } from "../../src/gen/containerd/services/namespaces/v1/namespace.ts"
import { SnapshotsDefinition } from "../../src/gen/containerd/services/snapshots/v1/snapshots.ts"
import { TasksDefinition } from "../../src/gen/containerd/services/tasks/v1/tasks.ts"
import { VersionDefinition } from "../../src/gen/containerd/services/version/v1/version.ts"
import { PLACEHOLDER } from "../../src/daemon/Leftovers.ts"
import { bareRecord } from "../../src/internal/BareRecord.ts"
import { Containerd } from "../../src/services/Containerd.ts"
import { startDaemon } from "../support/DaemonHarness.ts"
import { contentOf, debrisOf, noDebris } from "../support/Debris.ts"
import { buildLayeredImage, FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { startGrpcProxy } from "../support/GrpcProxy.ts"
import { createRawTask } from "../support/RawContainers.ts"
import { startRegistry } from "../support/RegistryHarness.ts"
import { importFixture, shared, sharedClient, uniqueNamespace } from "../support/SharedContainerd.ts"

/** A daemon on a proxy in front of the shared containerd, in a namespace of its own with the fixture image. */
const setup = (options?: { readonly insecureRegistries?: ReadonlyArray<string> }) =>
  Effect.gen(function*() {
    const namespace = uniqueNamespace("crash")
    yield* importFixture(namespace)
    const proxy = yield* startGrpcProxy(shared().address, [
      ContainersDefinition, ContentDefinition, DiffDefinition, EventsDefinition, ImagesDefinition, IntrospectionDefinition,
      LeasesDefinition, NamespacesDefinition, SnapshotsDefinition, TasksDefinition, VersionDefinition
    ])
    const daemon = yield* startDaemon({ containerd: proxy.address, namespace, ...options })
    const debris = debrisOf(namespace).pipe(Effect.provide(sharedClient(namespace)))
    const content = contentOf(namespace).pipe(Effect.provide(sharedClient(namespace)))
    /** Kills the daemon once `method` is held, never lets that call reach containerd, and starts the daemon again. */
    const killDuring = <A, E>(method: string, operation: Effect.Effect<A, E>) =>
      Effect.gen(function*() {
        const hold = yield* proxy.hold(method, "request")
        const fiber = yield* Effect.forkChild(operation)
        yield* hold.arrived
        const before = daemon.output().length
        yield* daemon.kill
        yield* hold.drop
        yield* Fiber.interrupt(fiber)
        yield* daemon.start
        return () => daemon.output().slice(before)
      })
    return { namespace, daemon, debris, content, killDuring, client: sharedClient(namespace) }
  })

/** Polls `check` every 100 ms until it holds, for at most 10 s; the last value either way. */
const settle = <A, E, R>(check: Effect.Effect<A, E, R>, until: (a: A) => boolean) =>
  check.pipe(
    Effect.repeat({ schedule: Schedule.spaced("100 millis"), until }),
    Effect.timeoutOption("10 seconds"),
    Effect.andThen(check)
  )

const run = { Image: FIXTURE_IMAGE, Cmd: ["sleep", "60"] }

describe("the daemon, SIGKILLed mid-operation and started again", () => {
  it.live("during a create (its container made, its snapshot not): the container is removed at start; the name is free again", () =>
    Effect.gen(function*() {
      const { daemon, debris, killDuring } = yield* setup()
      const log = yield* killDuring("Snapshots/Prepare", daemon.request("POST", "/containers/create?name=half", JSON.stringify(run)))
      assert.deepStrictEqual(yield* debris, noDebris)
      assert.match(log(), /removed container [0-9a-f]{64}: its create did not finish/)
      assert.deepStrictEqual(fs.readdirSync(path.join(daemon.dataRoot, "containers")), [], "nor its directory")
      const ps = yield* daemon.request("GET", "/containers/json?all=1")
      assert.deepStrictEqual(JSON.parse(ps.body), [])
      const created = yield* daemon.request("POST", "/containers/create?name=half", JSON.stringify(run))
      assert.strictEqual(created.status, 201, created.body)
      assert.strictEqual((yield* daemon.request("POST", "/containers/half/start")).status, 204)
      assert.strictEqual(JSON.parse((yield* daemon.request("GET", "/containers/half/json")).body).State.Running, true)
      assert.strictEqual((yield* daemon.request("DELETE", "/containers/half?force=1")).status, 204)
      assert.deepStrictEqual(yield* settle(debris, (d) => d.shims.length === 0), noDebris)
    }).pipe(Effect.scoped), 120_000)

  it.live("during a create's last step (its user not yet the image's answer): the container marked as being created is removed at start", () =>
    Effect.gen(function*() {
      const { daemon, debris, killDuring } = yield* setup()
      // A user name on the image's first use: created as root, then updated from the image's /etc/passwd.
      const nobody = JSON.stringify({ ...run, User: "nobody" })
      const log = yield* killDuring("Containers/Update", daemon.request("POST", "/containers/create?name=nobody", nobody))
      assert.deepStrictEqual(yield* debris, noDebris)
      assert.match(log(), /removed container [0-9a-f]{64}: its create did not finish \(it is still marked as being created\)/)
      const created = yield* daemon.request("POST", "/containers/create?name=nobody", nobody)
      assert.strictEqual(created.status, 201, created.body)
      assert.strictEqual((yield* daemon.request("POST", "/containers/nobody/start")).status, 204)
      const uid = yield* daemon.docker(["exec", "nobody", "id", "-u"])
      assert.deepStrictEqual([uid.code, uid.stdout], [0, "65534\n"], `it runs as the image's nobody: ${uid.stderr}`)
      assert.strictEqual((yield* daemon.request("DELETE", "/containers/nobody?force=1")).status, 204)
      assert.deepStrictEqual(yield* settle(debris, (d) => d.shims.length === 0), noDebris)
    }).pipe(Effect.scoped), 120_000)

  it.live("during a run (its task made, not started): no task or shim is left; the container starts again", () =>
    Effect.gen(function*() {
      const { daemon, debris, killDuring } = yield* setup()
      const created = yield* daemon.request("POST", "/containers/create?name=runner", JSON.stringify(run))
      assert.strictEqual(created.status, 201, created.body)
      const id = JSON.parse(created.body).Id as string
      yield* killDuring("Tasks/Start", daemon.request("POST", "/containers/runner/start"))
      const left = yield* settle(debris, (d) => d.shims.length === 0 && d.tasks.length === 0)
      assert.deepStrictEqual(left, { ...noDebris, containers: [id], snapshots: [id] }, "only the container and its rootfs")
      assert.strictEqual((yield* daemon.request("POST", "/containers/runner/start")).status, 204)
      assert.strictEqual(JSON.parse((yield* daemon.request("GET", "/containers/runner/json")).body).State.Running, true)
      assert.strictEqual((yield* daemon.request("DELETE", "/containers/runner?force=1")).status, 204)
      assert.deepStrictEqual(yield* settle(debris, (d) => d.shims.length === 0), noDebris)
    }).pipe(Effect.scoped), 120_000)

  it.live("during a pull (its content written under its lease): the lease and the partial content go at start; the pull then succeeds", () =>
    Effect.gen(function*() {
      const registry = yield* startRegistry
      const { content, daemon, debris, killDuring } = yield* setup({ insecureRegistries: [registry.host] })
      const image = yield* buildLayeredImage(daemon.dir, { name: "fixture/crash:v1", layers: 2, layerSize: 256 * 1024 })
      const reference = yield* registry.push(image.archive, "fixture/crash", "v1")
      const before = yield* content
      const log = yield* killDuring("Diff/Apply", daemon.request("POST", `/images/create?fromImage=${encodeURIComponent(reference)}`))
      assert.deepStrictEqual(yield* debris, noDebris, "no lease is left")
      assert.deepStrictEqual(yield* content, before, "no blob or ingest of the killed pull is left")
      assert.match(log(), /removed lease effect-containerd-pull-[0-9a-f]+ of a pull that did not finish/)
      const pulled = yield* daemon.request("POST", `/images/create?fromImage=${encodeURIComponent(reference)}`)
      assert.strictEqual(pulled.status, 200, pulled.body)
      assert.include(pulled.body, "Downloaded newer image for")
      const created = yield* daemon.request("POST", "/containers/create?name=pulled", JSON.stringify({ Image: reference, Cmd: ["true"] }))
      assert.strictEqual(created.status, 201, created.body)
      assert.strictEqual((yield* daemon.request("POST", "/containers/pulled/start")).status, 204)
      assert.strictEqual(JSON.parse((yield* daemon.request("POST", "/containers/pulled/wait")).body).StatusCode, 0)
      assert.strictEqual((yield* daemon.request("DELETE", "/containers/pulled")).status, 204)
      assert.deepStrictEqual(yield* settle(debris, (d) => d.shims.length === 0), noDebris)
    }).pipe(Effect.scoped), 120_000)

  it.live("a task whose container is gone (as a removal racing a start left them) is killed and deleted at start, its shim gone", () =>
    Effect.gen(function*() {
      const { client, daemon, debris } = yield* setup()
      yield* Effect.gen(function*() {
        const containerd = yield* Containerd
        yield* createRawTask(containerd, { id: "orphan", args: ["sleep", "60"], chainId: shared().fixtureChainId })
        yield* containerd.tasks.start({ containerId: "orphan" })
        yield* containerd.snapshots.remove({ snapshotter: "overlayfs", key: "orphan" })
        yield* containerd.containers.delete({ id: "orphan" })
        // And the placeholder record of an earlier sweep that could not remove it.
        yield* containerd.containers.create({ container: bareRecord("stale-placeholder", { [PLACEHOLDER]: "true" }) })
      }).pipe(Effect.provide(client))
      const orphaned = yield* debris
      assert.deepStrictEqual([orphaned.containers, orphaned.tasks, orphaned.shims], [["stale-placeholder"], ["orphan"], ["orphan"]])
      const before = daemon.output().length
      yield* daemon.kill
      yield* daemon.start
      assert.deepStrictEqual(yield* settle(debris, (d) => d.shims.length === 0), noDebris)
      assert.match(daemon.output().slice(before), /removed task orphan \(pid \d+\) of a container that is gone/)
      assert.match(daemon.output().slice(before), /removed placeholder record stale-placeholder/)
    }).pipe(Effect.scoped), 120_000)
})
