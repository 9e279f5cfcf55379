import { assert, describe, it, layer } from "@effect/vitest"
import { ConfigProvider, Deferred, Effect, Fiber, Stream } from "effect"
import { execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import { OciSpecTypeUrl, packJson, packMessage, unpackJson, unpackMessage } from "../../src/domain/Any.ts"
import type { ContainerdError } from "../../src/domain/ContainerdError.ts"
import { ContainerCreate, ContainerDelete } from "../../src/gen/containerd/events/container.ts"
import { TasksDefinition } from "../../src/gen/containerd/services/tasks/v1/tasks.ts"
import { Containerd, rpcCounts, withNamespace } from "../../src/services/Containerd.ts"
import { serveGrpc } from "../support/GrpcServer.ts"
import { importFixture, shared, sharedClient, uniqueNamespace } from "../support/SharedContainerd.ts"

const namespace = uniqueNamespace("client")

/** The reason tag of a failed call, or "success". */
const reasonOf = <A, R>(effect: Effect.Effect<A, ContainerdError, R>) =>
  effect.pipe(
    Effect.map(() => "success"),
    Effect.catch((error) => Effect.succeed(error.reason._tag))
  )

/** Per-method difference between two RPC count snapshots, without zero entries. */
const countsSince = (before: ReadonlyMap<string, number>, after: ReadonlyMap<string, number>) =>
  Object.fromEntries(
    [...after].map(([method, n]) => [method, n - (before.get(method) ?? 0)] as const).filter(([, n]) => n !== 0)
  )

layer(sharedClient(namespace), { excludeTestServices: true })("Containerd client against containerd", (it) => {
  it.effect("Version and Introspection answer", () =>
    Effect.gen(function*() {
      const client = yield* Containerd
      const version = yield* client.version.version()
      assert.match(version.version, /^v?\d+\.\d+/)
      const { plugins } = yield* client.introspection.plugins({ filters: ["type==io.containerd.snapshotter.v1"] })
      const overlay = plugins.find((plugin) => plugin.id === "overlayfs")
      assert.isDefined(overlay)
      assert.isUndefined(overlay?.initErr)
      const server = yield* client.introspection.server()
      assert.match(server.uuid, /^[0-9a-f-]{36}$/)
    }))

  it.effect("namespaces are created, listed and deleted", () =>
    Effect.gen(function*() {
      const client = yield* Containerd
      const name = uniqueNamespace("ns")
      yield* client.namespaces.create({ namespace: { name, labels: { owner: "test" } } })
      const listed = yield* client.namespaces.list()
      assert.deepStrictEqual(listed.namespaces.find((ns) => ns.name === name)?.labels, { owner: "test" })
      yield* client.namespaces.delete({ name })
      const after = yield* client.namespaces.list()
      assert.isFalse(after.namespaces.some((ns) => ns.name === name))
    }))

  it.effect("containers round trip with labels and a JSON OCI spec", () =>
    Effect.gen(function*() {
      const client = yield* Containerd
      const id = `rt-${crypto.randomBytes(3).toString("hex")}`
      const spec = { ociVersion: "1.0.2", process: { args: ["true"], cwd: "/" }, root: { path: "rootfs" } }
      const created = yield* client.containers.create({
        container: {
          id,
          labels: { app: "web" },
          image: "effect-containerd.test/busybox:latest",
          runtime: { name: "io.containerd.runc.v2" },
          spec: packJson(OciSpecTypeUrl, spec)
        }
      })
      assert.strictEqual(created.container?.id, id)
      assert.instanceOf(created.container?.createdAt, Date)

      const got = yield* client.containers.get({ id })
      assert.deepStrictEqual(got.container?.labels, { app: "web" })
      assert.strictEqual(got.container?.spec?.typeUrl, OciSpecTypeUrl)
      assert.deepStrictEqual(yield* unpackJson(OciSpecTypeUrl, got.container!.spec!), spec)

      const listed = yield* client.containers.list({ filters: [`labels."app"==web,id==${id}`] })
      assert.deepStrictEqual(listed.containers.map((c) => c.id), [id])

      const updated = yield* client.containers.update({
        container: { id, labels: { app: "web", tier: "front" } },
        updateMask: ["labels"]
      })
      assert.deepStrictEqual(updated.container?.labels, { app: "web", tier: "front" })

      yield* client.containers.delete({ id })
      assert.strictEqual(yield* reasonOf(client.containers.get({ id })), "NotFound")
    }))

  it.effect("errors carry containerd's errdefs: NotFound, AlreadyExists", () =>
    Effect.gen(function*() {
      const client = yield* Containerd
      const error = yield* Effect.flip(client.containers.get({ id: "missing" }))
      assert.strictEqual(error.reason._tag, "NotFound")
      assert.strictEqual(error.reason.method, "/containerd.services.containers.v1.Containers/Get")
      assert.include(error.reason.message, "missing")
      assert.isFalse(error.isRetryable)

      const id = `dup-${crypto.randomBytes(3).toString("hex")}`
      const container = { id, runtime: { name: "io.containerd.runc.v2" }, spec: packJson(OciSpecTypeUrl, {}) }
      yield* client.containers.create({ container })
      const duplicate = yield* Effect.flip(client.containers.create({ container }))
      assert.strictEqual(duplicate.reason._tag, "AlreadyExists")
      assert.include(duplicate.message, id)
      yield* client.containers.delete({ id })
    }))

  it.effect("a unary call whose deadline passes fails with DeadlineExceeded", () =>
    Effect.gen(function*() {
      const client = yield* Containerd
      yield* importFixture(namespace)
      const id = `wait-${crypto.randomBytes(3).toString("hex")}`
      execFileSync("ctr", [
        "--address", shared().address, "--namespace", namespace, "run", "-d",
        "effect-containerd.test/busybox:latest", id, "sleep", "30"
      ])
      const error = yield* Effect.flip(client.tasks.wait({ containerId: id }, { timeout: "200 millis" }))
      assert.strictEqual(error.reason._tag, "DeadlineExceeded")
      assert.isTrue(error.isRetryable)
      yield* client.tasks.kill({ containerId: id, signal: 9 })
      yield* client.tasks.wait({ containerId: id })
      yield* client.tasks.delete({ containerId: id })
      yield* client.snapshots.remove({ snapshotter: "overlayfs", key: id })
      yield* client.containers.delete({ id })
    }))

  it.effect("the namespace can be changed for a region of code", () =>
    Effect.gen(function*() {
      const client = yield* Containerd
      const other = uniqueNamespace("region")
      const id = `ns-${crypto.randomBytes(3).toString("hex")}`
      yield* client.containers.create({
        container: { id, runtime: { name: "io.containerd.runc.v2" }, spec: packJson(OciSpecTypeUrl, {}) }
      }).pipe(withNamespace(other))
      assert.strictEqual(yield* client.currentNamespace, namespace)
      assert.strictEqual(yield* client.currentNamespace.pipe(withNamespace(other)), other)
      assert.strictEqual(yield* reasonOf(client.containers.get({ id })), "NotFound")
      assert.strictEqual(yield* reasonOf(client.containers.get({ id }).pipe(withNamespace(other))), "success")
      yield* client.containers.delete({ id }).pipe(withNamespace(other))
    }))

  it.effect("Events.Subscribe delivers a ContainerCreate with its payload decoded", () =>
    Effect.gen(function*() {
      const client = yield* Containerd
      const id = `ev-${crypto.randomBytes(3).toString("hex")}`
      const probeTopic = `/effect-containerd/probe/${id}`
      const subscribed = yield* Deferred.make<void>()
      const created = yield* client.events.subscribe({
        filters: [`namespace==${namespace},topic=="/containers/create"`, `topic=="${probeTopic}"`]
      }).pipe(
        Stream.tap((envelope) => envelope.topic === probeTopic ? Deferred.succeed(subscribed, undefined) : Effect.void),
        Stream.filter((envelope) => envelope.topic === "/containers/create"),
        Stream.mapEffect((envelope) => unpackMessage(ContainerCreate, envelope.event!)),
        Stream.filter((event) => event.id === id),
        Stream.runHead,
        Effect.forkScoped
      )
      // containerd sends nothing when a subscription starts: publish a probe until
      // it comes back, so the container is created only once we are listening.
      yield* client.events.publish({ topic: probeTopic, event: packMessage(ContainerDelete, { id }) }).pipe(
        Effect.andThen(Deferred.await(subscribed).pipe(Effect.timeout("200 millis"))),
        Effect.retry({ times: 25 })
      )
      yield* client.containers.create({
        container: { id, image: "example/image:1", runtime: { name: "io.containerd.runc.v2" }, spec: packJson(OciSpecTypeUrl, {}) }
      })
      const event = yield* Fiber.join(created).pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(event._tag, "Some")
      assert.deepStrictEqual(
        event._tag === "Some" ? { id: event.value.id, image: event.value.image, runtime: event.value.runtime?.name } : {},
        { id, image: "example/image:1", runtime: "io.containerd.runc.v2" }
      )
      yield* client.containers.delete({ id })
    }))

  it.effect("Content.Write (a bidirectional stream) and Content.Read round trip a blob", () =>
    Effect.gen(function*() {
      const client = yield* Containerd
      const data = crypto.randomBytes(100_000)
      const digest = `sha256:${crypto.createHash("sha256").update(data).digest("hex")}`
      const ref = `test-${crypto.randomBytes(3).toString("hex")}`
      const responses = yield* client.content.write(Stream.make(
        { action: 1, ref, total: data.length, expected: digest, offset: 0, data },
        // A COMMIT at offset 0 would truncate what was written: it must name the current offset.
        { action: 2, ref, total: data.length, expected: digest, offset: data.length, labels: { "containerd.io/gc.root": "test" } }
      )).pipe(Stream.runCollect)
      assert.strictEqual(responses.at(-1)?.digest, digest)

      const chunks = yield* Stream.runCollect(client.content.read({ digest }))
      assert.isTrue(Buffer.concat(chunks.map((chunk) => chunk.data)).equals(data))
      const { info } = yield* client.content.info({ digest })
      assert.strictEqual(info?.size, data.length)
      yield* client.content.delete({ digest })
    }))

  it.effect("the RPC counter counts exactly the calls made, streams and failures included", () =>
    Effect.gen(function*() {
      const client = yield* Containerd
      const before = yield* rpcCounts
      yield* client.version.version()
      yield* client.version.version()
      yield* client.containers.list()
      yield* Effect.flip(client.containers.get({ id: "missing" }))
      yield* Stream.runDrain(client.content.list())
      const after = yield* rpcCounts
      assert.deepStrictEqual(countsSince(before, after), {
        "/containerd.services.version.v1.Version/Version": 2,
        "/containerd.services.containers.v1.Containers/List": 1,
        "/containerd.services.containers.v1.Containers/Get": 1,
        "/containerd.services.content.v1.Content/List": 1
      })
    }))
})

describe("Containerd.layerConfig", () => {
  it.live("reads CONTAINERD_ADDRESS, CONTAINERD_NAMESPACE and CONTAINERD_TIMEOUT", () =>
    Effect.gen(function*() {
      const client = yield* Containerd
      assert.strictEqual(client.address, `unix://${shared().address}`)
      assert.strictEqual(client.namespace, "from-env")
      assert.strictEqual(yield* client.currentNamespace, "from-env")
      assert.match((yield* client.version.version()).version, /^v?\d+\.\d+/)
    }).pipe(
      Effect.provide(Containerd.layerConfig),
      Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({
        env: { CONTAINERD_ADDRESS: shared().address, CONTAINERD_NAMESPACE: "from-env", CONTAINERD_TIMEOUT: "5 seconds" }
      })))
    ))

  it.live("defaults to containerd's own socket and the default namespace", () =>
    Effect.gen(function*() {
      const client = yield* Containerd
      assert.strictEqual(client.address, "unix:///run/containerd/containerd.sock")
      assert.strictEqual(client.namespace, "default")
    }).pipe(
      Effect.provide(Containerd.layerConfig),
      Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env: {} })))
    ))
})

describe("Containerd client without a daemon", () => {
  it.live("a socket with nothing listening fails with Unavailable naming the path", () =>
    Effect.gen(function*() {
      const address = `/tmp/effect-containerd-nothing-${crypto.randomBytes(4).toString("hex")}.sock`
      const error = yield* Effect.flip(
        Containerd.use((client) => client.version.version()).pipe(Effect.provide(Containerd.layer({ address })))
      )
      assert.strictEqual(error.reason._tag, "Unavailable")
      assert.include(error.message, address)
      assert.isTrue(error.isRetryable)
    }))

  it.live("an address that is not a unix socket is rejected before connecting", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Containerd.use((client) => client.version.version()).pipe(
          Effect.provide(Containerd.layer({ address: "relative/path.sock" }))
        )
      )
      assert.strictEqual(error.reason._tag, "InvalidArgument")
      assert.include(error.message, "relative/path.sock")
    }))

  it.live("interrupting a call cancels it on the wire", () =>
    Effect.gen(function*() {
      const received = yield* Deferred.make<void>()
      const cancelled = yield* Deferred.make<void>()
      const address = yield* serveGrpc(TasksDefinition, {
        // A Wait that never answers, reporting when it starts and when it is cancelled.
        wait: (call: { on: (event: "cancelled", f: () => void) => void }) => {
          call.on("cancelled", () => Deferred.doneUnsafe(cancelled, Effect.void))
          Deferred.doneUnsafe(received, Effect.void)
        }
      })
      const fiber = yield* Containerd.use((client) => client.tasks.wait({ containerId: "c" }, { timeout: "1 minute" })).pipe(
        Effect.provide(Containerd.layer({ address })),
        Effect.forkScoped
      )
      yield* Deferred.await(received)
      yield* Fiber.interrupt(fiber)
      const observed = yield* Deferred.await(cancelled).pipe(Effect.timeoutOption("5 seconds"))
      assert.strictEqual(observed._tag, "Some")
    }))
})
