/**
 * Images in containerd: pulling them from registries, importing OCI layouts and
 * archives, unpacking them into snapshots, naming and removing them, and
 * resolving a name to what a container needs (its config and the chain ID of
 * its unpacked layers).
 *
 * Pulling is the client's job in containerd 1.6 and 1.7, as here: resolve the
 * reference at the registry, write every blob into the content store, unpack
 * the layers with the diff service, then create the image record. Everything is
 * written under a lease, so containerd's GC keeps it until the record refers to
 * it; the lease is shared by the pulls in flight in a namespace and deleted
 * when the last one ends, so a failed pull leaves nothing containerd keeps.
 * As CRI does, concurrent pulls do not repeat work: fetches are shared per blob
 * digest and unpacks per chain ID (`Singleflight`), so 20 pulls of one image
 * fetch each blob once and unpack each layer once. Only successes are shared:
 * a pull that joined a fetch from another source (another registry, an archive)
 * which failed fetches from its own, and every pull hears the progress of the
 * fetch it waits for.
 *
 * Resolution reads the image record, then (for an index) the manifest for this
 * platform, the manifest and the config. Both steps are cached so that a
 * container of an image used before costs no image RPC at all:
 * - by digest, for the documents: content is immutable, so this never goes stale;
 * - by name, for the record: containerd tells us when a name changes
 *   (ImageCreate/Update/Delete) and the entry is dropped at once; after
 *   `Resynced` (events may have been missed) every name is dropped.
 * Concurrent first lookups of one key share one resolution; failures are not cached.
 */
import { Cache, Clock, Context, Deferred, Duration, Effect, Exit, Layer, Queue, RcMap, Result, Schema, Stream } from "effect"
import * as crypto from "node:crypto"
import { ContainerdError, invalidArgument, notFound } from "../domain/ContainerdError.ts"
import {
  chainId,
  type Descriptor,
  documentMediaType,
  hostPlatform,
  ImageConfig,
  ImageIndex,
  ImageManifest,
  isIndexMediaType,
  isLayerMediaType,
  isManifestMediaType,
  MediaType,
  type Platform,
  platformMatches,
  selectManifest
} from "../domain/Image.ts"
import { shortId } from "../domain/Identifier.ts"
import { parseReference, parseReferenceResult, type Reference } from "../domain/Reference.ts"
import {
  InvalidArgument as RegistryInvalidArgument,
  NotFound as RegistryNotFound,
  type RegistryError,
  registryError
} from "../domain/RegistryError.ts"
import type { Image as ImageMessage } from "../gen/containerd/services/images/v1/images.ts"
import { writeContent } from "../internal/ContentWriter.ts"
import { compositeKey, keyParts } from "../internal/Key.ts"
import { openOciLayout } from "../internal/OciArchive.ts"
import { Containerd, withLease, withNamespace } from "./Containerd.ts"
import { Events } from "./Events.ts"
import { MAX_DOCUMENT_BYTES, MAX_MANIFEST_BYTES, Registry } from "./Registry.ts"
import { Singleflight } from "./Singleflight.ts"

/** What a container needs to know about its image. */
export interface ResolvedImage {
  /** The name it was resolved by. */
  readonly name: string
  /** The record's target: a manifest or an index. */
  readonly target: { readonly mediaType: string; readonly digest: string; readonly size: number }
  readonly manifestDigest: string
  readonly configDigest: string
  readonly config: ImageConfig
  /** The committed snapshot holding the image's layers. */
  readonly chainId: string
}

/** An image record as containerd keeps it. */
export interface ImageRecord {
  /** The full reference it is stored under: `docker.io/library/busybox:latest`. */
  readonly name: string
  readonly target: { readonly mediaType: string; readonly digest: string; readonly size: number }
  readonly labels: Readonly<Record<string, string>>
  readonly createdAt: Date | undefined
  readonly updatedAt: Date | undefined
}

/**
 * What a pull reports as it goes, per layer (`id` is the first 12 hex digits of
 * its digest, as Docker prints), ending with `Pulled`.
 */
export type PullProgress =
  | { readonly _tag: "Resolving"; readonly reference: string }
  | { readonly _tag: "Resolved"; readonly reference: string; readonly digest: string }
  | { readonly _tag: "Waiting"; readonly id: string; readonly size: number }
  | { readonly _tag: "Downloading"; readonly id: string; readonly current: number; readonly total: number }
  | { readonly _tag: "Verifying"; readonly id: string }
  | { readonly _tag: "DownloadComplete"; readonly id: string }
  | { readonly _tag: "AlreadyExists"; readonly id: string }
  | { readonly _tag: "Extracting"; readonly id: string }
  | { readonly _tag: "PullComplete"; readonly id: string }
  | { readonly _tag: "Pulled"; readonly image: ResolvedImage }

/** How to pull or import. */
export interface PullOptions {
  /** The platform to choose from an index; default this host's. */
  readonly platform?: Platform | undefined
  /** Unpack the layers into snapshots, ready for containers; default true. */
  readonly unpack?: boolean | undefined
  /** The snapshotter to unpack into; default overlayfs. */
  readonly snapshotter?: string | undefined
}

/** How to import. */
export interface ImportOptions extends PullOptions {
  /**
   * The name for images the archive does not name, or the repository for those
   * it names only by tag (`org.opencontainers.image.ref.name: latest`).
   */
  readonly name?: string | undefined
}

/** A failure of a pull: at the registry or in containerd. */
export type PullError = ContainerdError | RegistryError

/** The images service. */
export interface ImagesShape {
  /** Resolves an image name (normalised as Docker does) in the current namespace. */
  readonly resolve: (name: string) => Effect.Effect<ResolvedImage, ContainerdError>
  /** Pulls an image, by default unpacked for this host's platform. */
  readonly pull: (reference: string, options?: PullOptions) => Effect.Effect<ResolvedImage, PullError>
  /** Pulls an image, reporting progress; the stream ends with `Pulled`. */
  readonly pullWithProgress: (reference: string, options?: PullOptions) => Stream.Stream<PullProgress, PullError>
  /** Imports every image of an OCI image layout directory or archive (tar). */
  readonly importArchive: (
    path: string,
    options?: ImportOptions
  ) => Effect.Effect<ReadonlyArray<ResolvedImage>, ContainerdError>
  /** Lists image records, optionally filtered (containerd filter syntax: `name~=busybox`). */
  readonly list: (filters?: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<ImageRecord>, ContainerdError>
  /** Reads one image record. */
  readonly get: (name: string) => Effect.Effect<ImageRecord, ContainerdError>
  /** Gives the image `source` a second name, `target` (replacing what that name pointed to). */
  readonly tag: (source: string, target: string) => Effect.Effect<ImageRecord, ContainerdError>
  /** Removes an image record; its content and snapshots are left to containerd's GC. */
  readonly remove: (name: string) => Effect.Effect<void, ContainerdError>
}

/** How many names and digests each cache keeps. */
const CAPACITY = 4096
/** Layers downloaded at once per pull, as Docker's default. */
const FETCH_CONCURRENCY = 3
/** A pull lease outlives a crashed process by at most this long. */
const LEASE_EXPIRY = Duration.hours(24)
/** Applying a layer reads and writes all of it; allow for large layers on slow disks. */
const APPLY_TIMEOUT = Duration.minutes(10)
/** Downloading progress is reported at most every this many bytes. */
const PROGRESS_STEP = 512 * 1024

const Labels = {
  uncompressed: "containerd.io/uncompressed",
  snapshotRef: "containerd.io/snapshot.ref",
  gcSnapshot: (snapshotter: string) => `containerd.io/gc.ref.snapshot.${snapshotter}`,
  gcConfig: "containerd.io/gc.ref.content.config",
  gcLayer: (index: number) => `containerd.io/gc.ref.content.l.${index}`,
  gcManifest: (index: number) => `containerd.io/gc.ref.content.m.${index}`,
  gcExpire: "containerd.io/gc.expire",
  distributionSource: (domain: string) => `containerd.io/distribution.source.${domain}`,
  imageName: "io.containerd.image.name",
  ociRefName: "org.opencontainers.image.ref.name"
} as const

/** Successes are kept until invalidated; failures are not kept at all. */
const keepSuccesses = (exit: Exit.Exit<unknown, unknown>) => Exit.isSuccess(exit) ? Duration.infinity : Duration.zero

/** containerd's ingest names (remotes.MakeRefKey), shared with other clients writing the same blob. */
const ingestRef = (descriptor: Descriptor) =>
  `${
    isIndexMediaType(descriptor.mediaType)
      ? "index"
      : isManifestMediaType(descriptor.mediaType)
      ? "manifest"
      : isLayerMediaType(descriptor.mediaType)
      ? "layer"
      : descriptor.mediaType === MediaType.OciConfig || descriptor.mediaType === MediaType.DockerConfig
      ? "config"
      : "unknown"
  }-${descriptor.digest}`

const sha256 = (bytes: Uint8Array) => `sha256:${crypto.createHash("sha256").update(bytes).digest("hex")}`

const describePlatform = (platform: Platform) =>
  `${platform.os}/${platform.architecture}${platform.variant === undefined ? "" : `/${platform.variant}`}`

/** Where an image's documents and blobs come from: a registry, or an OCI layout. */
interface Source<E> {
  /** What is being stored, for messages: the reference or the archive. */
  readonly label: string
  /** Reads a document whole, checked against its descriptor. */
  readonly document: (descriptor: Descriptor) => Effect.Effect<Uint8Array, E>
  /** Streams a blob from `offset`. */
  readonly blob: (descriptor: Descriptor, offset: number) => Stream.Stream<Uint8Array, E>
  /** Labels for every blob written (where it came from). */
  readonly blobLabels: Readonly<Record<string, string>>
  /** Whether a failure leaves an ingest worth resuming. */
  readonly resumable: (error: E) => boolean
  /** The source's error for a malformed or unsupported image, or a missing platform. */
  readonly invalid: (message: string) => E
  readonly notFound: (message: string) => E
}

/** A document as fetched, with its descriptor. */
interface Document {
  readonly descriptor: Descriptor
  readonly bytes: Uint8Array
}

/** Everything known about an image before any of it is written. */
interface Plan {
  readonly top: Document
  /** The index the manifest was chosen from, and the manifest's position in it. */
  readonly index: { readonly document: Document; readonly position: number } | undefined
  readonly manifest: Document
  readonly config: Document
  readonly parsedConfig: ImageConfig
  readonly layers: ReadonlyArray<Descriptor>
  readonly diffIds: ReadonlyArray<string>
  /** The chain ID of each prefix of the layers; the last one names the image's snapshot. */
  readonly chainIds: ReadonlyArray<string>
}

const decodeJson = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, bytes: Uint8Array) =>
  Result.try(() => JSON.parse(Buffer.from(bytes).toString("utf8")) as unknown).pipe(
    Result.mapError(() => "it is not JSON"),
    Result.flatMap((json) =>
      Schema.decodeUnknownExit(schema)(json).pipe(
        Exit.match({
          onSuccess: (value) => Result.succeed(value),
          onFailure: (cause) => Result.fail(`it is malformed: ${String(cause)}`)
        })
      )
    )
  )

/** Builds the images service; its event fiber and shared work live in the current scope. */
export const makeImages = Effect.fnUntraced(function*(options?: { readonly platform?: Platform }) {
  const client = yield* Containerd
  const events = yield* Events
  const registry = yield* Registry
  const defaultPlatform = options?.platform ?? hostPlatform()
  // Work shared by concurrent pulls, keyed by what it is: resolving a tag, reading a document,
  // writing a blob, unpacking a layer, writing the record.
  const flights = yield* Singleflight

  const readJson = <S extends Schema.Top & { readonly DecodingServices: never }>(
    schema: S,
    what: string,
    descriptor: { readonly digest: string }
  ) =>
    client.content.read({ digest: descriptor.digest }).pipe(
      Stream.runCollect,
      Effect.map((chunks) => Buffer.concat(chunks.map((chunk) => chunk.data))),
      Effect.flatMap((bytes) =>
        Result.match(decodeJson(schema, bytes), {
          onSuccess: Effect.succeed,
          onFailure: (problem) => Effect.fail(invalidArgument("Images.resolve", `the ${what} ${descriptor.digest}: ${problem}`))
        })
      )
    )

  /** Resolves a target descriptor (in the namespace the key names). */
  const resolveTarget = (name: string, target: Descriptor) =>
    Effect.gen(function*() {
      let manifestDescriptor: { readonly digest: string } = target
      if (isIndexMediaType(target.mediaType)) {
        const index = yield* readJson(ImageIndex, "index", target)
        const chosen = selectManifest(index, defaultPlatform)
        if (chosen === undefined) {
          return yield* Effect.fail(notFound("Images.resolve", `image ${name} has no manifest for ${describePlatform(defaultPlatform)}`))
        }
        manifestDescriptor = chosen
      } else if (!isManifestMediaType(target.mediaType)) {
        return yield* Effect.fail(invalidArgument("Images.resolve", `image ${name} has an unsupported media type ${target.mediaType}`))
      }
      const manifest = yield* readJson(ImageManifest, "manifest", manifestDescriptor)
      const config = yield* readJson(ImageConfig, "config", manifest.config)
      return {
        manifestDigest: manifestDescriptor.digest,
        configDigest: manifest.config.digest,
        config,
        chainId: chainId(config.rootfs.diff_ids)
      }
    })

  const byDigest = yield* Cache.makeWith(
    (key: string) => {
      const [namespace = "", name = "", digest = "", mediaType = "", size = "0"] = keyParts(key)
      return resolveTarget(name, { digest, mediaType, size: Number(size) }).pipe(withNamespace(namespace))
    },
    { capacity: CAPACITY, timeToLive: keepSuccesses }
  )

  const byName = yield* Cache.makeWith(
    (key: string) => {
      const [namespace = "", name = ""] = keyParts(key)
      return Effect.gen(function*() {
        const { image } = yield* client.images.get({ name })
        if (image?.target === undefined) return yield* Effect.fail(notFound("Images.resolve", `image ${name} not found`))
        const target = { mediaType: image.target.mediaType, digest: image.target.digest, size: image.target.size }
        const resolved = yield* Cache.get(byDigest, compositeKey(namespace, name, target.digest, target.mediaType, target.size))
        return { name, target, ...resolved }
      }).pipe(withNamespace(namespace))
    },
    { capacity: CAPACITY, timeToLive: keepSuccesses }
  )

  const changes = yield* events.subscribe({ tags: ["ImageCreate", "ImageUpdate", "ImageDelete"] })
  yield* changes.pipe(
    Stream.runForEach((message) =>
      message._tag === "Resynced"
        ? Cache.invalidateAll(byName)
        : Cache.invalidate(byName, compositeKey(message.namespace, message.name))
    ),
    Effect.forkScoped
  )

  /** A reference in the form images are stored under; names that are not references are kept as they are. */
  const normalise = (name: string) =>
    Result.match(parseReferenceResult(name), { onSuccess: (reference) => reference.toString(), onFailure: () => name })

  const resolve = (name: string) =>
    Effect.flatMap(client.currentNamespace, (namespace) => Cache.get(byName, compositeKey(namespace, normalise(name))))

  // One lease per namespace while pulls are in flight there, deleted when the last one ends. If
  // one of them failed, containerd collects at once what it wrote (partial downloads included),
  // so that a failed pull has left nothing behind by the time its caller sees the failure.
  const leases = yield* RcMap.make({
    lookup: (namespace: string) =>
      Effect.acquireRelease(
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          const expires = new Date(now + Duration.toMillis(LEASE_EXPIRY)).toISOString().replace(/\.\d+Z$/, "Z")
          const { lease } = yield* client.leases.create({
            id: `effect-containerd-pull-${crypto.randomBytes(6).toString("hex")}`,
            labels: { [Labels.gcExpire]: expires }
          })
          return { id: lease?.id ?? "", failed: false }
        }).pipe(withNamespace(namespace)),
        (lease) => Effect.ignore(client.leases.delete({ id: lease.id, sync: lease.failed }).pipe(withNamespace(namespace)))
      ),
    idleTimeToLive: Duration.zero
  })

  /** Reads a document from containerd if it is there, else from the source; one read per digest at a time. */
  const readDocument = <E>(source: Source<E>, descriptor: Descriptor) =>
    Effect.flatMap(client.currentNamespace, (namespace) =>
      flights.run(
        compositeKey("document", namespace, descriptor.digest),
        client.content.read({ digest: descriptor.digest }).pipe(
          Stream.runCollect,
          Effect.map((chunks): Uint8Array => Buffer.concat(chunks.map((chunk) => chunk.data))),
          Effect.catchIf(
            (error): error is ContainerdError => error.reason._tag === "NotFound",
            () => source.document(descriptor)
          )
        )
      ))

  const decodeOrFail = <E, S extends Schema.Top & { readonly DecodingServices: never }>(
    source: Source<E>,
    schema: S,
    what: string,
    document: Document
  ) =>
    Result.match(decodeJson(schema, document.bytes), {
      onSuccess: Effect.succeed,
      onFailure: (problem) => Effect.fail(source.invalid(`the ${what} ${document.descriptor.digest}: ${problem}`))
    })

  /** Reads and checks everything an image is made of, before anything is written. */
  const plan = <E>(source: Source<E>, top: Document, platform: Platform): Effect.Effect<Plan, E | ContainerdError> =>
    Effect.gen(function*() {
      let manifest = top
      let index: Plan["index"]
      if (isIndexMediaType(top.descriptor.mediaType)) {
        const parsed = yield* decodeOrFail(source, ImageIndex, "index", top)
        const chosen = selectManifest(parsed, platform)
        if (chosen === undefined) {
          const offered = parsed.manifests.flatMap((m) => (m.platform === undefined ? [] : [describePlatform(m.platform)]))
          return yield* Effect.fail(source.notFound(
            `no manifest for platform ${describePlatform(platform)} (the index has: ${offered.join(", ") || "none"})`
          ))
        }
        manifest = { descriptor: chosen, bytes: yield* readDocument(source, chosen) }
        index = { document: top, position: parsed.manifests.indexOf(chosen) }
      } else if (!isManifestMediaType(top.descriptor.mediaType)) {
        return yield* Effect.fail(source.invalid(`unsupported media type ${top.descriptor.mediaType}`))
      }
      const parsedManifest = yield* decodeOrFail(source, ImageManifest, "manifest", manifest)
      const configDescriptor = parsedManifest.config
      if (configDescriptor.mediaType !== MediaType.OciConfig && configDescriptor.mediaType !== MediaType.DockerConfig) {
        return yield* Effect.fail(source.invalid(`not a container image: its config has media type ${configDescriptor.mediaType}`))
      }
      const unsupported = parsedManifest.layers.find((layer) => !isLayerMediaType(layer.mediaType))
      if (unsupported !== undefined) {
        return yield* Effect.fail(source.invalid(`layer ${unsupported.digest} has unsupported media type ${unsupported.mediaType}`))
      }
      const config: Document = { descriptor: configDescriptor, bytes: yield* readDocument(source, configDescriptor) }
      const parsedConfig = yield* decodeOrFail(source, ImageConfig, "config", config)
      if (index === undefined && !platformMatches(parsedConfig, platform)) {
        return yield* Effect.fail(source.notFound(
          `the image is for ${describePlatform(parsedConfig)}, not ${describePlatform(platform)}`
        ))
      }
      const diffIds = parsedConfig.rootfs.diff_ids
      if (diffIds.length !== parsedManifest.layers.length) {
        return yield* Effect.fail(source.invalid(
          `the manifest has ${parsedManifest.layers.length} layers but the config ${diffIds.length} diff IDs`
        ))
      }
      return {
        top,
        index,
        manifest,
        config,
        parsedConfig,
        layers: parsedManifest.layers,
        diffIds,
        chainIds: diffIds.map((_, i) => chainId(diffIds.slice(0, i + 1)))
      }
    })

  /**
   * Writes a blob, or joins the write of it already in flight (and hears its
   * progress); one write per digest and namespace at a time. A joiner whose
   * write failed writes from its own source.
   */
  const ensureBlob = <E>(
    namespace: string,
    source: Source<E>,
    descriptor: Descriptor,
    labels: Readonly<Record<string, string>>,
    onProgress: (offset: number) => Effect.Effect<void> = () => Effect.void
  ) =>
    flights.runReporting(
      compositeKey("blob", namespace, descriptor.digest),
      (report: (offset: number) => Effect.Effect<void>) =>
        writeContent(client, {
          ref: ingestRef(descriptor),
          descriptor,
          labels: { ...source.blobLabels, ...labels },
          source: (offset) => source.blob(descriptor, offset),
          resumable: source.resumable,
          onProgress: report
        }),
      onProgress
    )

  /** Writes an in-memory document (already checked) as a blob. */
  const ensureDocument = <E>(namespace: string, source: Source<E>, document: Document, labels: Readonly<Record<string, string>>) =>
    ensureBlob(namespace, { ...source, blob: () => Stream.make(document.bytes) }, document.descriptor, labels)

  /**
   * Unpacks layer `i` onto the snapshot of the layers below it, unless its
   * chain's snapshot exists; one unpack per chain ID, snapshotter and namespace.
   */
  const unpackLayer = (namespace: string, snapshotter: string, plan: Plan, i: number) => {
    const chain = plan.chainIds[i]!
    return flights.run(
      compositeKey("unpack", namespace, snapshotter, chain),
      Effect.gen(function*() {
        if (yield* snapshotExists(snapshotter, chain)) return "exists" as const
        const key = `extract-${crypto.randomBytes(6).toString("hex")}-${chain}`
        const { mounts } = yield* client.snapshots.prepare({
          snapshotter,
          key,
          parent: i === 0 ? "" : plan.chainIds[i - 1]!,
          labels: { [Labels.snapshotRef]: chain }
        })
        yield* Effect.gen(function*() {
          const layer = plan.layers[i]!
          const diff = { mediaType: layer.mediaType, digest: layer.digest, size: layer.size }
          const { applied } = yield* client.diff.apply({ diff, mounts }, { timeout: APPLY_TIMEOUT })
          if (applied?.digest !== plan.diffIds[i]) {
            return yield* Effect.fail(invalidArgument(
              "Images.unpack",
              `layer ${plan.layers[i]!.digest} unpacks to ${applied?.digest}, but the config says ${plan.diffIds[i]}`
            ))
          }
          yield* client.snapshots.commit({ snapshotter, name: chain, key, labels: { [Labels.snapshotRef]: chain } }).pipe(
            // Another client committed the same chain meanwhile: theirs is as good as ours.
            Effect.catchIf((error) => error.reason._tag === "AlreadyExists", () => client.snapshots.remove({ snapshotter, key }))
          )
        }).pipe(Effect.onError(() => Effect.ignore(client.snapshots.remove({ snapshotter, key }))))
        return "unpacked" as const
      })
    )
  }

  const snapshotExists = (snapshotter: string, key: string) =>
    client.snapshots.stat({ snapshotter, key }).pipe(
      Effect.as(true),
      Effect.catchIf((error) => error.reason._tag === "NotFound", () => Effect.succeed(false))
    )

  /** Makes sure the config's GC label keeps the unpacked snapshot (a config written by an earlier pull may lack it). */
  const labelConfig = (plan: Plan, snapshotter: string) =>
    Effect.gen(function*() {
      const key = Labels.gcSnapshot(snapshotter)
      const chain = plan.chainIds.at(-1) ?? ""
      const { info } = yield* client.content.info({ digest: plan.config.descriptor.digest })
      if (info?.labels[key] === chain) return
      yield* client.content.update({
        info: { digest: plan.config.descriptor.digest, labels: { [key]: chain } },
        updateMask: [`labels.${key}`]
      })
    })

  /**
   * Points `name` at `target`: creates the record, or moves an existing one that
   * points elsewhere. Concurrent pulls of one image share one write: each record
   * write is a transaction containerd syncs to disk.
   */
  const putRecord = (name: string, target: Descriptor) => {
    const descriptor = { mediaType: target.mediaType, digest: target.digest, size: target.size }
    const put = client.images.create({ image: { name, target: descriptor } }).pipe(
      Effect.map(({ image }) => toRecord(image!)),
      Effect.catchIf((error) => error.reason._tag === "AlreadyExists", () =>
        Effect.gen(function*() {
          const { image } = yield* client.images.get({ name })
          if (image?.target?.digest === descriptor.digest) return toRecord(image)
          const updated = yield* client.images.update({ image: { name, target: descriptor }, updateMask: ["target"] })
          return toRecord(updated.image!)
        }))
    )
    return Effect.flatMap(client.currentNamespace, (namespace) =>
      flights.run(compositeKey("record", namespace, name, descriptor.digest), put))
  }

  /**
   * Stores a planned image: blobs (layers fetched concurrently, unpacked in
   * order as they arrive) and, meanwhile, the config, manifest and index with
   * their GC labels; then the record under `name`. Runs under the namespace's
   * pull lease.
   */
  const store = <E>(
    source: Source<E>,
    name: string,
    plan: Plan,
    options: PullOptions,
    emit: (event: PullProgress) => void
  ): Effect.Effect<ResolvedImage, E | ContainerdError> =>
    Effect.scoped(Effect.gen(function*() {
      const namespace = yield* client.currentNamespace
      const lease = yield* RcMap.get(leases, namespace)
      // Every call below, and the shared work it starts, belongs to the lease.
      return yield* storeLeased(namespace, source, name, plan, options, emit).pipe(
        withLease(lease.id),
        Effect.onError(() => Effect.sync(() => void (lease.failed = true)))
      )
    }))

  const storeLeased = <E>(
    namespace: string,
    source: Source<E>,
    name: string,
    plan: Plan,
    options: PullOptions,
    emit: (event: PullProgress) => void
  ) =>
    Effect.gen(function*() {
      const unpack = options.unpack ?? true
      const snapshotter = options.snapshotter ?? "overlayfs"
      const topChain = plan.chainIds.at(-1) ?? ""
      const unpacked = unpack && plan.layers.length > 0 && (yield* snapshotExists(snapshotter, topChain))

      const fetched = yield* Effect.forEach(plan.layers, () => Deferred.make<void>())
      for (const layer of plan.layers) emit({ _tag: "Waiting", id: shortId(layer.digest), size: layer.size })
      const fetchLayers = Effect.forEach(plan.layers, (layer, i) => {
        const id = shortId(layer.digest)
        let reported = -1
        const progress = (offset: number) =>
          Effect.sync(() => {
            const done = offset >= layer.size
            if (reported === layer.size || (!done && offset - reported < PROGRESS_STEP && reported >= 0)) return
            reported = done ? layer.size : offset
            // All bytes are in: containerd checks digest and size as it commits.
            emit(done ? { _tag: "Verifying", id } : { _tag: "Downloading", id, current: offset, total: layer.size })
          })
        return ensureBlob(namespace, source, layer, { [Labels.uncompressed]: plan.diffIds[i]! }, progress).pipe(
          Effect.flatMap((outcome) => {
            emit(outcome === "exists" ? { _tag: "AlreadyExists", id } : { _tag: "DownloadComplete", id })
            return Deferred.succeed(fetched[i]!, undefined)
          })
        )
      }, { concurrency: FETCH_CONCURRENCY, discard: true })
      const unpackLayers = Effect.forEach(plan.layers, (layer, i) =>
        Effect.gen(function*() {
          yield* Deferred.await(fetched[i]!)
          const id = shortId(layer.digest)
          emit({ _tag: "Extracting", id })
          yield* unpackLayer(namespace, snapshotter, plan, i)
          emit({ _tag: "PullComplete", id })
        }), { discard: true })
      // The documents are small and refer to the layers by digest, which containerd
      // allows before the layers exist (the lease keeps everything meanwhile): they
      // are written while the layers download and unpack, not after.
      const configLabels = unpack && topChain !== "" ? { [Labels.gcSnapshot(snapshotter)]: topChain } : {}
      const writeDocuments = Effect.gen(function*() {
        const config = yield* ensureDocument(namespace, source, plan.config, configLabels)
        if (config === "exists" && unpack && topChain !== "") yield* labelConfig(plan, snapshotter)
        yield* ensureDocument(namespace, source, plan.manifest, {
          [Labels.gcConfig]: plan.config.descriptor.digest,
          ...Object.fromEntries(plan.layers.map((layer, i) => [Labels.gcLayer(i), layer.digest]))
        })
        if (plan.index !== undefined) {
          yield* ensureDocument(namespace, source, plan.index.document, {
            [Labels.gcManifest(plan.index.position)]: plan.manifest.descriptor.digest
          })
        }
      })
      // All fail fast: a failed download interrupts the unpacks waiting for it.
      yield* Effect.all([fetchLayers, unpack && !unpacked ? unpackLayers : Effect.void, writeDocuments], {
        concurrency: 3,
        discard: true
      })
      const record = yield* putRecord(name, plan.top.descriptor)
      return {
        name: record.name,
        target: record.target,
        manifestDigest: plan.manifest.descriptor.digest,
        configDigest: plan.config.descriptor.digest,
        config: plan.parsedConfig,
        chainId: topChain
      } satisfies ResolvedImage
    })

  /** The registry as a source of one reference's blobs. */
  const registrySource = (reference: Reference): Source<RegistryError> => ({
    label: reference.toString(),
    document: (descriptor) => registry.fetchDocument(reference, descriptor),
    blob: (descriptor, offset) => registry.fetchBlob(reference, descriptor, { offset }),
    blobLabels: { [Labels.distributionSource(reference.domain)]: reference.path },
    resumable: (error) => error.reason._tag === "Unavailable" || error.reason._tag === "DeadlineExceeded",
    invalid: (message) => registryError(RegistryInvalidArgument, reference.toString(), message),
    notFound: (message) => registryError(RegistryNotFound, reference.toString(), message)
  })

  const pullWith = (
    input: string,
    options: PullOptions,
    emit: (event: PullProgress) => void
  ): Effect.Effect<ResolvedImage, PullError> =>
    Effect.gen(function*() {
      const reference = yield* parseReference(input, "Images.pull")
      emit({ _tag: "Resolving", reference: reference.toString() })
      const top = yield* flights.run(compositeKey("resolve", reference.toString()), registry.resolve(reference))
      emit({ _tag: "Resolved", reference: reference.toString(), digest: top.descriptor.digest })
      const source = registrySource(reference)
      const planned = yield* plan(source, top, options.platform ?? defaultPlatform)
      return yield* store(source, reference.toString(), planned, options, emit)
    })

  const pull = Effect.fn("Images.pull")(function*(reference: string, options?: PullOptions) {
    return yield* pullWith(reference, options ?? {}, () => {})
  })

  const pullWithProgress = (reference: string, options?: PullOptions): Stream.Stream<PullProgress, PullError> =>
    Stream.callback<PullProgress, PullError>((queue) =>
      pullWith(reference, options ?? {}, (event) => void Queue.offerUnsafe(queue, event)).pipe(
        Effect.flatMap((image) =>
          Effect.sync(() => {
            Queue.offerUnsafe(queue, { _tag: "Pulled", image })
            Queue.endUnsafe(queue)
          })
        )
      )
    )

  /** The name an archive's image is stored under, from its annotations and the caller's name. */
  const importName = (annotations: Readonly<Record<string, string>> | undefined, fallback: string | undefined) => {
    const full = annotations?.[Labels.imageName]
    if (full !== undefined) return parseReference(full, "Images.import")
    const refName = annotations?.[Labels.ociRefName]
    if (refName !== undefined) {
      // A bare tag (`latest`, as `skopeo copy … oci:dir:latest` writes) names only the tag.
      if (/^[\w][\w.-]{0,127}$/.test(refName) && fallback !== undefined) {
        return Effect.map(parseReference(fallback, "Images.import"), (reference) => reference.withTag(refName))
      }
      return parseReference(refName, "Images.import")
    }
    return fallback === undefined
      ? Effect.fail(invalidArgument("Images.import", "the archive does not name an image: pass options.name"))
      : parseReference(fallback, "Images.import")
  }

  const importArchive = Effect.fn("Images.import")(function*(path: string, options?: ImportOptions) {
    const layout = yield* openOciLayout(path)
    const fail = (message: string) => invalidArgument("Images.import", `${path}: ${message}`)
    const blobPath = (descriptor: Descriptor) => `blobs/${descriptor.digest.replace(":", "/")}`
    const source: Source<ContainerdError> = {
      label: path,
      document: (descriptor) =>
        layout.read(blobPath(descriptor), MAX_DOCUMENT_BYTES).pipe(
          Effect.filterOrFail(
            (bytes) => bytes.length === descriptor.size && sha256(bytes) === descriptor.digest,
            () => fail(`${blobPath(descriptor)} does not match its digest and size`)
          )
        ),
      // containerd checks the digest and size of every blob when it commits it.
      blob: (descriptor, offset) => layout.stream(blobPath(descriptor), offset),
      blobLabels: {},
      resumable: () => false,
      invalid: fail,
      notFound: (message) => notFound("Images.import", `${path}: ${message}`)
    }
    const indexBytes = yield* layout.read("index.json", MAX_MANIFEST_BYTES)
    const index = yield* Result.match(decodeJson(ImageIndex, indexBytes), {
      onSuccess: Effect.succeed,
      onFailure: (problem) => Effect.fail(fail(`index.json: ${problem}`))
    })
    if (index.manifests.length === 0) return yield* Effect.fail(fail("index.json lists no images"))
    const names = yield* Effect.forEach(index.manifests, (entry) => importName(entry.annotations, options?.name))
    const images: Array<ResolvedImage> = []
    for (const [i, entry] of index.manifests.entries()) {
      const bytes = yield* source.document({ mediaType: entry.mediaType, digest: entry.digest, size: entry.size })
      let mediaType = entry.mediaType
      if (!isIndexMediaType(mediaType) && !isManifestMediaType(mediaType)) {
        mediaType = documentMediaType(undefined, JSON.parse(Buffer.from(bytes).toString("utf8"))) ?? mediaType
      }
      const top = { descriptor: { mediaType, digest: entry.digest, size: entry.size }, bytes }
      const planned = yield* plan(source, top, options?.platform ?? defaultPlatform)
      images.push(yield* store(source, names[i]!.toString(), planned, options ?? {}, () => {}))
    }
    return images
  }, Effect.scoped)

  const list = Effect.fn("Images.list")(function*(filters?: ReadonlyArray<string>) {
    const { images } = yield* client.images.list({ filters: [...(filters ?? [])] })
    return images.map(toRecord)
  })

  const get = Effect.fn("Images.get")(function*(name: string) {
    const { image } = yield* client.images.get({ name: normalise(name) })
    if (image === undefined) return yield* Effect.fail(notFound("Images.get", `image ${name} not found`))
    return toRecord(image)
  })

  const tag = Effect.fn("Images.tag")(function*(source: string, target: string) {
    const from = yield* get(source)
    const to = yield* parseReference(target, "Images.tag")
    return yield* putRecord(to.toString(), from.target)
  })

  const remove = Effect.fn("Images.remove")(function*(name: string) {
    yield* client.images.delete({ name: normalise(name) })
  })

  return Images.of({ resolve, pull, pullWithProgress, importArchive, list, get, tag, remove })
})

const toRecord = (image: ImageMessage): ImageRecord => ({
  name: image.name,
  target: {
    mediaType: image.target?.mediaType ?? "",
    digest: image.target?.digest ?? "",
    size: image.target?.size ?? 0
  },
  labels: image.labels,
  createdAt: image.createdAt,
  updatedAt: image.updatedAt
})

/** The images service. */
export class Images extends Context.Service<Images, ImagesShape>()("effect-containerd/Images") {
  /** Images of the `Containerd` client's daemon, pulled through `Registry`, for this host's platform. */
  static readonly layer: Layer.Layer<Images, never, Containerd | Events | Registry | Singleflight> = Layer.effect(
    Images,
    makeImages()
  )
}
