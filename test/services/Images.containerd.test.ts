import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Stream } from "effect"
import { ContainerdError } from "../../src/domain/ContainerdError.ts"
import { RegistryError } from "../../src/domain/RegistryError.ts"
import { ContentDefinition, WriteAction } from "../../src/gen/containerd/services/content/v1/content.ts"
import { DiffDefinition } from "../../src/gen/containerd/services/diff/v1/diff.ts"
import { EventsDefinition } from "../../src/gen/containerd/services/events/v1/events.ts"
import { ImagesDefinition } from "../../src/gen/containerd/services/images/v1/images.ts"
import { LeasesDefinition } from "../../src/gen/containerd/services/leases/v1/leases.ts"
import { SnapshotsDefinition } from "../../src/gen/containerd/services/snapshots/v1/snapshots.ts"
import * as Live from "../../src/layers/Live.ts"
import { Containerd, rpcCounts } from "../../src/services/Containerd.ts"
import { Images, type PullProgress } from "../../src/services/Images.ts"
import { USER_AGENT } from "../../src/services/Registry.ts"
import { serveArchive, startFaultyRegistry } from "../support/FaultyRegistry.ts"
import { buildLayeredImage, FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { type RegistryInstance, startRegistry } from "../support/RegistryHarness.ts"
import { startGrpcProxy } from "../support/GrpcProxy.ts"
import { shared, uniqueNamespace } from "../support/SharedContainerd.ts"
import { emptyLibrary, holdings, output, tempDir } from "../support/RuntimeLayer.ts"

const setup = emptyLibrary("img")

/** The blob GETs we made that the registry logged, by digest. */
const blobFetches = (registry: RegistryInstance) =>
  Effect.gen(function*() {
    // The access log line is written as the response completes.
    yield* Effect.sleep("200 millis")
    const counts = new Map<string, number>()
    for (const request of yield* registry.requests) {
      const blob = /\/blobs\/(sha256:[a-f0-9]+)$/.exec(request.path)
      if (request.method === "GET" && request.userAgent === USER_AGENT && blob !== null) {
        counts.set(blob[1]!, (counts.get(blob[1]!) ?? 0) + 1)
      }
    }
    return counts
  })

const since = (before: ReadonlyMap<string, number>, after: ReadonlyMap<string, number>, method: string) =>
  (after.get(method) ?? 0) - (before.get(method) ?? 0)

const reasonTag = (exit: Exit.Exit<unknown, unknown>) => {
  if (Exit.isSuccess(exit)) return "success"
  const error = exit.cause.reasons.find((r) => r._tag === "Fail")?.error
  return error instanceof ContainerdError || error instanceof RegistryError
    ? `${error._tag}.${error.reason._tag}: ${error.message}`
    : String(error)
}

describe("Images against containerd and docker-registry", () => {
  it.live("pulls an image, runs a container from it, and pulls it again without fetching a blob", () =>
    Effect.gen(function*() {
      const { client, images, runtime } = yield* setup
      const registry = yield* startRegistry
      const image = yield* buildLayeredImage(yield* tempDir, { name: "layered:v1", layers: 2, layerSize: 256 * 1024 })
      const reference = yield* registry.push(image.archive, "team/layered", "v1")

      const progress = yield* Stream.runCollect(images.pullWithProgress(reference))
      const pulled = progress.at(-1)
      assert.strictEqual(pulled?._tag, "Pulled")
      const resolved = (pulled as Extract<PullProgress, { _tag: "Pulled" }>).image
      assert.strictEqual(resolved.name, reference)
      assert.deepStrictEqual(progress.slice(0, 2).map((e) => e._tag), ["Resolving", "Resolved"])
      for (const digest of image.layerDigests) {
        const id = digest.slice(7, 19)
        const tags = progress.filter((e) => "id" in e && e.id === id).map((e) => e._tag)
        assert.deepStrictEqual(
          tags.filter((t) => t !== "Downloading"),
          ["Waiting", "Verifying", "DownloadComplete", "Extracting", "PullComplete"],
          `layer ${id}`
        )
      }

      const fetched = yield* blobFetches(registry)
      assert.deepStrictEqual(
        [...fetched.keys()].sort(),
        [...image.layerDigests, image.configDigest].sort(),
        "each layer and the config fetched"
      )
      assert.isTrue([...fetched.values()].every((n) => n === 1), "once each")

      // What containerd now holds, and the GC labels that keep it.
      const record = yield* images.get(reference)
      assert.strictEqual(record.target.digest, resolved.target.digest)
      const info = (digest: string) => Effect.map(client.content.info({ digest }), (r) => r.info!.labels)
      assert.strictEqual((yield* info(resolved.configDigest))["containerd.io/gc.ref.snapshot.overlayfs"], resolved.chainId)
      const manifestLabels = yield* info(resolved.manifestDigest)
      assert.strictEqual(manifestLabels["containerd.io/gc.ref.content.config"], resolved.configDigest)
      assert.deepStrictEqual(
        image.layerDigests.map((_, i) => manifestLabels[`containerd.io/gc.ref.content.l.${i}`]),
        [...image.layerDigests]
      )
      const layerLabels = yield* info(image.layerDigests[1]!)
      assert.strictEqual(layerLabels["containerd.io/uncompressed"], image.diffIds[1])
      assert.strictEqual(layerLabels[`containerd.io/distribution.source.${registry.host}`], "team/layered")
      yield* client.snapshots.stat({ snapshotter: "overlayfs", key: resolved.chainId })
      assert.deepStrictEqual((yield* holdings(client)).leases, [], "the pull's lease is gone")

      // A container sees every layer, unpacked in order on the base.
      assert.strictEqual(yield* output(runtime, reference, ["ls", "/data"]), "layer-0.bin\nlayer-1.bin\n")

      const again = yield* Stream.runCollect(images.pullWithProgress(reference))
      assert.deepStrictEqual(
        again.map((e) => e._tag).sort(),
        ["AlreadyExists", "AlreadyExists", "AlreadyExists", "Pulled", "Resolved", "Resolving", "Waiting", "Waiting", "Waiting"]
      )
      assert.strictEqual(again.at(-1)?._tag, "Pulled")
      const fetchedAgain = yield* blobFetches(registry)
      assert.deepStrictEqual(fetchedAgain, fetched, "no blob fetched the second time")
    }).pipe(Effect.scoped), 60_000)

  it.live("20 concurrent cold pulls fetch every blob once and unpack every layer once", () =>
    Effect.gen(function*() {
      const { client, images } = yield* setup
      const registry = yield* startRegistry
      // No busybox base: every blob is new to the daemon, none can be shared from another namespace.
      const image = yield* buildLayeredImage(yield* tempDir, { name: "many:v1", layers: 5, layerSize: 1024 * 1024, base: false })
      const reference = yield* registry.push(image.archive, "many", "v1")
      const before = yield* rpcCounts

      const results = yield* Effect.all(Array.from({ length: 20 }, () => images.pull(reference)), { concurrency: "unbounded" })
      assert.strictEqual(new Set(results.map((r) => r.chainId)).size, 1)

      const after = yield* rpcCounts
      const layers = image.layerDigests.length
      assert.strictEqual(since(before, after, "/containerd.services.diff.v1.Diff/Apply"), layers, "one apply per layer")
      assert.strictEqual(since(before, after, "/containerd.services.snapshots.v1.Snapshots/Commit"), layers)
      const fetched = yield* blobFetches(registry)
      assert.strictEqual(fetched.size, layers + 1)
      assert.isTrue([...fetched.values()].every((n) => n === 1), `each blob fetched once: ${[...fetched.values()]}`)
      const left = yield* holdings(client)
      assert.deepStrictEqual([left.images, left.leases, left.ingests], [[reference], [], []])
    }).pipe(Effect.scoped), 120_000)

  it.live("imports an OCI archive, tags and removes it", () =>
    Effect.gen(function*() {
      const { client, images } = yield* setup
      const image = yield* buildLayeredImage(yield* tempDir, { name: "imported/app:v1", layers: 1, layerSize: 64 * 1024 })
      const [imported] = yield* images.importArchive(image.archive)
      assert.strictEqual(imported?.name, "docker.io/imported/app:v1")
      yield* client.snapshots.stat({ snapshotter: "overlayfs", key: imported!.chainId })

      const tagged = yield* images.tag("imported/app:v1", "imported/app:stable")
      assert.strictEqual(tagged.name, "docker.io/imported/app:stable")
      assert.strictEqual(tagged.target.digest, imported!.target.digest)
      assert.deepStrictEqual((yield* images.list()).map((i) => i.name).sort(), [
        "docker.io/imported/app:stable",
        "docker.io/imported/app:v1"
      ])
      yield* images.remove("imported/app:v1")
      assert.strictEqual(reasonTag(yield* Effect.exit(images.get("imported/app:v1"))).split(":")[0], "ContainerdError.NotFound")
      assert.deepStrictEqual((yield* images.list()).map((i) => i.name), ["docker.io/imported/app:stable"])
      assert.deepStrictEqual((yield* holdings(client)).leases, [])
      // The last name goes with a synchronous delete (CRI's): what only it referenced is collected when it returns,
      // so a load of the same image right after cannot find a blob or snapshot that the GC then takes away.
      yield* images.remove("imported/app:stable")
      assert.strictEqual(reasonTag(yield* Effect.exit(client.content.info({ digest: imported!.target.digest }))).split(":")[0], "ContainerdError.NotFound")
      assert.strictEqual(
        reasonTag(yield* Effect.exit(client.snapshots.stat({ snapshotter: "overlayfs", key: imported!.chainId }))).split(":")[0],
        "ContainerdError.NotFound"
      )
    }).pipe(Effect.scoped))

  it.live("a snapshot an import finds present is claimed for its lease before it is reused: a GC meanwhile cannot leave the image without it", () =>
    Effect.gen(function*() {
      // Through a proxy, so the import can be stopped just after containerd said the snapshot exists.
      const proxy = yield* startGrpcProxy(shared().address, [
        ContentDefinition, DiffDefinition, EventsDefinition, ImagesDefinition, LeasesDefinition, SnapshotsDefinition
      ])
      const context = yield* Layer.build(
        Live.services({ runtime: { fifoDir: yield* tempDir } }).pipe(
          Layer.provideMerge(Containerd.layer({ address: proxy.address, namespace: uniqueNamespace("img-claim") }))
        )
      )
      const client = Context.get(context, Containerd)
      const images = Context.get(context, Images)
      const image = yield* buildLayeredImage(yield* tempDir, { name: "claimed/app:v1", layers: 1, layerSize: 64 * 1024 })
      const [first] = yield* images.importArchive(image.archive)
      const snapshot = { snapshotter: "overlayfs", key: first!.chainId }

      // The image goes, but another lease keeps its snapshot: present, and referenced by no image.
      const { lease } = yield* client.leases.create({ id: `claim-${first!.chainId.slice(7, 19)}`, labels: {} })
      yield* client.leases.addResource({ id: lease!.id, resource: { id: snapshot.key, type: "snapshots/overlayfs" } })
      yield* client.images.delete({ name: first!.name, sync: true })
      yield* client.snapshots.stat(snapshot)

      // Imported again: once containerd has said the snapshot exists, the other lease ends and its GC runs.
      const hold = yield* proxy.hold("Snapshots/Stat", "response")
      const again = yield* Effect.forkChild(images.importArchive(image.archive))
      yield* hold.arrived
      yield* client.leases.delete({ id: lease!.id, sync: true })
      yield* hold.release
      const [second] = yield* Fiber.join(again)

      assert.strictEqual(second!.chainId, first!.chainId)
      // On the old code the stat's answer was trusted: the GC took the snapshot, and the image had no rootfs.
      yield* client.snapshots.stat(snapshot)
      assert.deepStrictEqual((yield* holdings(client)).leases, [])
    }).pipe(Effect.scoped))

  it.live("imports the shared fixture archive as the harness does", () =>
    Effect.gen(function*() {
      const { images } = yield* setup
      const [imported] = yield* images.importArchive(shared().fixtureArchive)
      assert.strictEqual(imported?.name, FIXTURE_IMAGE)
      assert.strictEqual(imported?.chainId, shared().fixtureChainId)
    }).pipe(Effect.scoped))
})

describe("Images against a misbehaving registry", () => {
  it.live("a blob that does not match its digest fails the pull and leaves nothing behind", () =>
    Effect.gen(function*() {
      const { client, images } = yield* setup
      const faulty = yield* startFaultyRegistry
      const image = yield* buildLayeredImage(yield* tempDir, { name: "bad:v1", layers: 1, layerSize: 128 * 1024 })
      const served = serveArchive(faulty, image.archive, "bad", "v1")
      faulty.fault(`/blobs/${served.layers[1]!.digest}`, { _tag: "Corrupt" })

      const exit = yield* Effect.exit(images.pull(`${faulty.host}/bad:v1`))
      assert.include(reasonTag(exit), "RegistryError.DataLoss")
      assert.include(reasonTag(exit), served.layers[1]!.digest)
      const left = yield* holdings(client)
      assert.deepStrictEqual([left.images, left.leases, left.ingests], [[], [], []], "no record, lease or ingest")
      assert.notInclude(left.blobs, served.layers[1]!.digest, "nothing committed under the digest")
    }).pipe(Effect.scoped))

  it.live("a download cut off mid-blob resumes with Range, and a partial ingest is resumed where it stopped", () =>
    Effect.gen(function*() {
      const { client, images } = yield* setup
      const faulty = yield* startFaultyRegistry
      const image = yield* buildLayeredImage(yield* tempDir, { name: "cut:v1", layers: 2, layerSize: 512 * 1024 })
      const served = serveArchive(faulty, image.archive, "cut", "v1")
      const [, cut, partial] = served.layers
      faulty.fault(`/blobs/${cut!.digest}`, { _tag: "Cut", after: 100_000 })

      // Half of another layer is already in containerd, as a pull that died would leave it.
      const bytes = yield* Effect.promise(() =>
        fetch(`http://${faulty.host}/v2/cut/blobs/${partial!.digest}`).then((r) => r.arrayBuffer())
      )
      const half = Math.floor(partial!.size / 2)
      yield* client.content.write(Stream.make(
        { action: WriteAction.STAT, ref: `layer-${partial!.digest}`, total: partial!.size, expected: partial!.digest },
        { action: WriteAction.WRITE, ref: `layer-${partial!.digest}`, offset: 0, data: Buffer.from(bytes).subarray(0, half) }
      )).pipe(Stream.runDrain)
      const seenBefore = faulty.seen.length

      const pulled = yield* images.pull(`${faulty.host}/cut:v1`)
      assert.strictEqual(pulled.chainId.length, 71)
      const ranges = (digest: string) =>
        faulty.seen.slice(seenBefore).filter((s) => s.path.endsWith(`/blobs/${digest}`)).map((s) => s.range ?? "all")
      const cutRanges = ranges(cut!.digest)
      assert.strictEqual(cutRanges[0], "all")
      assert.match(cutRanges[1] ?? "", /^bytes=\d+-$/, "the cut blob was resumed")
      assert.deepStrictEqual(ranges(partial!.digest), [`bytes=${half}-`], "the ingest was resumed from its offset")
      assert.deepStrictEqual((yield* holdings(client)).ingests, [])
    }).pipe(Effect.scoped))

  it.live("two pulls of a layer from two registries share its download and its progress; when the first source fails, the second fetches from its own", () =>
    Effect.gen(function*() {
      const { client, images } = yield* setup
      const [first, second] = [yield* startFaultyRegistry, yield* startFaultyRegistry]
      const image = yield* buildLayeredImage(yield* tempDir, { name: "shared:v1", layers: 1, layerSize: 512 * 1024 })
      const layer = serveArchive(first, image.archive, "shared", "v1").layers[1]!
      serveArchive(second, image.archive, "shared", "v1")
      const layerPath = `/blobs/${layer.digest}`
      const layerRequests = (registry: typeof first) => registry.seen.filter((s) => s.path.endsWith(layerPath)).length
      // The first registry breaks off the layer, then answers the resumption with a 404 when told to.
      const release = yield* Deferred.make<void>()
      // Even when the test fails: a held answer would hold the registry's shutdown open.
      yield* Effect.addFinalizer(() => Deferred.succeed(release, undefined))
      first.fault(layerPath, { _tag: "Cut", after: 100_000 })
      first.fault(layerPath, { _tag: "Status", status: 404, after: Deferred.await(release) })
      const until = (condition: () => boolean, what: string) =>
        Effect.sleep("10 millis").pipe(
          Effect.repeat({ until: condition }),
          Effect.timeoutOrElse({ duration: "20 seconds", orElse: () => Effect.die(new Error(`never: ${what}`)) })
        )

      const fromFirst = yield* Effect.forkChild(Effect.exit(images.pull(`${first.host}/shared:v1`)))
      yield* until(() => layerRequests(first) === 2, "the first pull resumes the layer")
      const heard: Array<PullProgress> = []
      const fromSecond = yield* images.pullWithProgress(`${second.host}/shared:v1`).pipe(
        Stream.runForEach((event) => Effect.sync(() => void heard.push(event))),
        Effect.exit,
        Effect.forkChild
      )
      const id = layer.digest.slice(7, 19)
      yield* until(() => heard.some((e) => e._tag === "Downloading" && e.id === id), "the second pull hears the download")
      assert.strictEqual(layerRequests(second), 0, "the second pull joined the first one's download")

      yield* Deferred.succeed(release, undefined)
      assert.include(reasonTag(yield* Fiber.join(fromFirst)), "RegistryError.NotFound")
      assert.isTrue(Exit.isSuccess(yield* Fiber.join(fromSecond)), "the second pull succeeds")
      assert.strictEqual(layerRequests(second), 1, "from its own registry")
      assert.isTrue(heard.some((e) => e._tag === "PullComplete" && e.id === id))
      const left = yield* holdings(client)
      assert.deepStrictEqual([left.images, left.leases, left.ingests], [[`${second.host}/shared:v1`], [], []])
      assert.include(left.blobs, layer.digest)
    }).pipe(Effect.scoped))

  it.live("bad input fails with a typed error naming the reference and the reason, and creates nothing", () =>
    Effect.gen(function*() {
      const { client, images } = yield* setup
      const faulty = yield* startFaultyRegistry
      const image = yield* buildLayeredImage(yield* tempDir, { name: "arm:v1", layers: 0, layerSize: 0 })
      const served = serveArchive(faulty, image.archive, "arm", "single")
      faulty.manifest("arm", {
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [{ ...served.manifest, platform: { os: "linux", architecture: "s390x" } }]
      }, { tag: "v1" })
      faulty.manifest("old", { schemaVersion: 1, name: "old", tag: "v1", fsLayers: [] }, {
        tag: "v1",
        mediaType: "application/vnd.docker.distribution.manifest.v1+prettyjws"
      })

      const cases: ReadonlyArray<readonly [string, string, string]> = [
        ["Bad:Ref", "ContainerdError.InvalidArgument", "must be lowercase"],
        [`${faulty.host}/missing:v1`, "RegistryError.NotFound", "MANIFEST_UNKNOWN"],
        [`${faulty.host}/arm:v1`, "RegistryError.NotFound", "no manifest for platform linux/"],
        [`${faulty.host}/old:v1`, "RegistryError.InvalidArgument", "unsupported manifest media type"],
        ["127.0.0.1:1/nobody:v1", "RegistryError.Unavailable", "ECONNREFUSED"]
      ]
      for (const [reference, tag, reason] of cases) {
        const failure = reasonTag(yield* Effect.exit(images.pull(reference)))
        assert.include(failure, tag, reference)
        assert.include(failure, reason, reference)
        if (reference !== "Bad:Ref") assert.include(failure, reference.split(":v1")[0]!, "names the reference")
      }
      assert.deepStrictEqual(yield* holdings(client), { images: [], leases: [], ingests: [], blobs: [] })
    }).pipe(Effect.scoped))
})
