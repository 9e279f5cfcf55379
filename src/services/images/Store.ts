/**
 * The last step of a pull or import: store a planned image in containerd.
 *
 * Blobs go into the content store (layers fetched concurrently, unpacked in
 * order as they arrive, with the diff service into committed snapshots named
 * by chain ID), the documents with the GC labels that keep what they refer to,
 * then the image record. Everything is written under a lease, so containerd's
 * GC keeps it until the record refers to it; the lease is shared by the pulls
 * in flight in a namespace and deleted when the last one ends, so a failed pull
 * leaves nothing containerd keeps. As CRI does, concurrent pulls do not repeat
 * work: writes are shared per blob digest, unpacks per chain ID, record writes
 * per name and target (`Singleflight`). Only successes are shared: a pull that
 * joined a write from another source which failed writes from its own, and
 * every pull hears the progress of the write it waits for.
 */
import { Clock, Deferred, Duration, Effect, RcMap, type Scope, Stream } from "effect"
import * as crypto from "node:crypto"
import { type ContainerdError, invalidArgument } from "../../domain/ContainerdError.ts"
import { shortId } from "../../domain/Identifier.ts"
import { type Descriptor, isIndexMediaType, isLayerMediaType, isManifestMediaType, MediaType, type Platform } from "../../domain/Image.ts"
import type { Image as ImageMessage } from "../../gen/containerd/services/images/v1/images.ts"
import { writeContent } from "../../internal/ContentWriter.ts"
import { compositeKey } from "../../internal/Key.ts"
import { type ContainerdClient, Lease, withLease, withNamespace } from "../Containerd.ts"
import type { RequestCredentials } from "../registry/Auth.ts"
import type { Singleflight } from "../Singleflight.ts"
import { Labels } from "./Labels.ts"
import type { Document, Plan } from "./Plan.ts"
import type { ResolvedImage } from "./Resolve.ts"
import type { Source } from "./Sources.ts"

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
  /** Credentials for the registry, for this pull only (a client's `X-Registry-Auth`); default the host's options. */
  readonly auth?: RequestCredentials | undefined
}

/** An image record as the service reports it. */
export const toRecord = (image: ImageMessage): ImageRecord => ({
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

/** Layers downloaded at once per pull, as Docker's default. */
const FETCH_CONCURRENCY = 3
/** A pull lease outlives a crashed process by at most this long. */
const LEASE_EXPIRY = Duration.hours(24)
/** Applying a layer reads and writes all of it; allow for large layers on slow disks. */
const APPLY_TIMEOUT = Duration.minutes(10)
/** Downloading progress is reported at most every this many bytes. */
const PROGRESS_STEP = 512 * 1024

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

/**
 * How the leases of our pulls and imports are known: by their label (and, for those written
 * before it, the prefix of their id). Only a program that owns its namespace may sweep them.
 */
export const PullLeases = { label: Labels.lease, value: "pull", idPrefix: "effect-containerd-pull-" } as const

/** The store over the client and the shared work of concurrent pulls; its leases live in the current scope. */
export const makeStore = Effect.fnUntraced(function*(client: ContainerdClient, flights: Singleflight["Service"]) {
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
            id: `${PullLeases.idPrefix}${crypto.randomBytes(6).toString("hex")}`,
            labels: { [Labels.gcExpire]: expires, [PullLeases.label]: PullLeases.value }
          })
          return { id: lease?.id ?? "", failed: false }
        }).pipe(withNamespace(namespace)),
        (lease) => Effect.ignore(client.leases.delete({ id: lease.id, sync: lease.failed }).pipe(withNamespace(namespace)))
      ),
    idleTimeToLive: Duration.zero
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

  const statSnapshot = (snapshotter: string, key: string) =>
    client.snapshots.stat({ snapshotter, key }).pipe(
      Effect.as(true),
      Effect.catchIf((error) => error.reason._tag === "NotFound", () => Effect.succeed(false))
    )

  /**
   * Whether the snapshot `key` exists, and if it does, that it is ours to keep:
   * a snapshot found present may be referenced by nothing (its image removed, the
   * GC not yet run), so it is added to the ambient lease, which a blob found present
   * already is by containerd (see `ContentWriter`). A GC can run between the stat
   * and the claim, so the stat is made again after it: only a snapshot seen after
   * it was claimed is reused.
   */
  const snapshotExists = (snapshotter: string, key: string) =>
    Effect.gen(function*() {
      if (!(yield* statSnapshot(snapshotter, key))) return false
      const lease = yield* Lease
      if (lease === undefined) return true
      yield* client.leases.addResource({ id: lease, resource: { id: key, type: `snapshots/${snapshotter}` } })
      return yield* statSnapshot(snapshotter, key)
    })

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
    leased(Effect.flatMap(client.currentNamespace, (namespace) => storeLeased(namespace, source, name, plan, options, emit)))

  /**
   * Runs `effect` under the namespace's pull lease: what its calls write is
   * kept until the lease ends, and collected at once then if it (or any other
   * work under the lease) failed. For work that writes blobs before `store`
   * names them (a new layer of an import or a commit).
   */
  const leased = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | ContainerdError, Exclude<R, Scope.Scope>> =>
    Effect.scoped(Effect.gen(function*() {
      const namespace = yield* client.currentNamespace
      const lease = yield* RcMap.get(leases, namespace)
      // Every call below, and the shared work it starts, belongs to the lease.
      return yield* effect.pipe(
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
        configSize: plan.config.descriptor.size,
        config: plan.parsedConfig,
        layers: plan.layers,
        chainId: topChain
      } satisfies ResolvedImage
    })

  return { store, putRecord, leased }
})
