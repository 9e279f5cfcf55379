/**
 * New images made here rather than pulled: a base image (or none), one new
 * layer blob in the content store, and a config for the result — what `docker
 * import` (a root filesystem tar as the only layer) and `docker commit` (the
 * changes of a container's root filesystem over its image) both make.
 *
 * The new layer is written under the pull lease; then the config (the base's,
 * with the layer's diff ID, a history entry and the caller's runtime config)
 * and the manifest are planned and stored as a pull's are (`Plan.ts`,
 * `Store.ts`): the same checks, GC labels, record and unpack, so `run` of the
 * new image finds its snapshot committed. A failure at any step fails the
 * lease, and containerd collects what was written at once.
 *
 * A commit is what nerdctl's `imgutil/commit` does (containerd's Go client has
 * none): a read-only view of the base's snapshot against the container's
 * active snapshot, through containerd's differ (`Diff.Diff`), which writes the
 * gzip layer and labels it with its uncompressed digest.
 */
import { Clock, Duration, Effect, Stream } from "effect"
import * as crypto from "node:crypto"
import { type ContainerdError, failedPrecondition, invalidArgument } from "../../domain/ContainerdError.ts"
import {
  type ContainerDefaults,
  type Descriptor,
  type HistoryEntry,
  type ImageConfig,
  MediaType,
  type Platform
} from "../../domain/Image.ts"
import { parseReference } from "../../domain/Reference.ts"
import { readContent } from "../../internal/Content.ts"
import { writeStream } from "../../internal/ContentWriter.ts"
import { measureLayer } from "../../internal/LayerTar.ts"
import type { ContainerdClient } from "../Containerd.ts"
import { Labels } from "./Labels.ts"
import type { makePlanner } from "./Plan.ts"
import type { ResolvedImage } from "./Resolve.ts"
import type { Source } from "./Sources.ts"
import type { makeStore } from "./Store.ts"

/** Layer media types of the layers made here. */
export const LayerMediaType = {
  tar: "application/vnd.oci.image.layer.v1.tar",
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip"
} as const

/** The record name of an image made without one: no reference parses as it, so Docker shows it as `<none>`. */
export const untaggedName = (configDigest: string): string => `<none>@${configDigest}`

/** What a new image is made with, besides its layer. */
export interface NewImageOptions {
  /** The reference to store it under; without one it is untagged (`untaggedName`). */
  readonly name?: string | undefined
  /** Its runtime config (`config` of the image config); default the base's, or none. */
  readonly config?: ContainerDefaults | undefined
  /** The image's author, also in its history entry. */
  readonly author?: string | undefined
  /** The comment of the config and its history entry (`docker commit -m`, `docker import -m`), as dockerd writes both. */
  readonly comment?: string | undefined
  /** The history entry's `created_by`: what made the layer. */
  readonly createdBy?: string | undefined
  /** The snapshotter to unpack into; default overlayfs. */
  readonly snapshotter?: string | undefined
}

/** How to import a root filesystem. */
export interface ImportRootfsOptions extends NewImageOptions {
  /** The platform the image is for; default this host's. */
  readonly platform?: Platform | undefined
}

/** What a commit reads of a container: a containerd container record as `Container.info` has it. */
export interface CommitTarget {
  /** The container's image: the name it resolves by, whose snapshot is the container's parent. */
  readonly image: string
  readonly snapshotter: string
  readonly snapshotKey: string
}

/** A commit's differ may read a whole root filesystem. */
const DIFF_TIMEOUT = Duration.minutes(10)

const sha256 = (bytes: Uint8Array) => `sha256:${crypto.createHash("sha256").update(bytes).digest("hex")}`
const randomKey = (what: string) => `effect-containerd-${what}-${crypto.randomBytes(6).toString("hex")}`
const json = (value: unknown): Uint8Array => Buffer.from(JSON.stringify(value))

/** A blob of the content store, streamed from `offset`. */
const readBlob = (client: ContainerdClient, digest: string, offset: number): Stream.Stream<Uint8Array, ContainerdError> =>
  Stream.map(client.content.read({ digest, offset, size: 0 }), (chunk): Uint8Array => chunk.data)

/** The documents of the new image, served from memory; anything else (the layers) from the content store. */
const memorySource = (
  client: ContainerdClient,
  method: string,
  documents: ReadonlyMap<string, Uint8Array>
): Source<ContainerdError> => ({
  label: method,
  document: (descriptor) => {
    const bytes = documents.get(descriptor.digest)
    return bytes === undefined ? readContent(client, descriptor.digest) : Effect.succeed(bytes)
  },
  blob: (descriptor, offset) => readBlob(client, descriptor.digest, offset),
  blobLabels: {},
  resumable: () => false,
  invalid: (message) => invalidArgument(method, message),
  notFound: (message) => invalidArgument(method, message)
})

/** The import and commit operations over the planner and the store of the pull pipeline. */
export const makeNewImages = (
  client: ContainerdClient,
  planner: ReturnType<typeof makePlanner>,
  store: Effect.Success<ReturnType<typeof makeStore>>,
  resolve: (name: string) => Effect.Effect<ResolvedImage, ContainerdError>
) => {
  /** Writes the config and manifest of `base` plus `layer`, and stores the image (under the caller's lease). */
  const finish = (
    method: string,
    base: ResolvedImage | undefined,
    platform: Platform,
    layer: { readonly descriptor: Descriptor; readonly diffId: string },
    options: NewImageOptions
  ) =>
    Effect.gen(function*() {
      const created = new Date(yield* Clock.currentTimeMillis).toISOString()
      const history: HistoryEntry = {
        created,
        ...(options.createdBy ? { created_by: options.createdBy } : {}),
        ...(options.author ? { author: options.author } : {}),
        ...(options.comment ? { comment: options.comment } : {})
      }
      const config: ImageConfig = {
        created,
        ...(options.author ? { author: options.author } : {}),
        ...(options.comment ? { comment: options.comment } : {}),
        architecture: platform.architecture,
        os: platform.os,
        ...(platform.variant === undefined ? {} : { variant: platform.variant }),
        config: options.config ?? base?.config.config ?? {},
        rootfs: { type: "layers", diff_ids: [...(base?.config.rootfs.diff_ids ?? []), layer.diffId] },
        history: [...(base?.config.history ?? []), history]
      }
      const configBytes = json(config)
      const configDescriptor = { mediaType: MediaType.OciConfig, digest: sha256(configBytes), size: configBytes.length }
      const layers = [...(base?.layers ?? []), layer.descriptor].map(({ digest, mediaType, size }) => ({ mediaType, digest, size }))
      const manifestBytes = json({ schemaVersion: 2, mediaType: MediaType.OciManifest, config: configDescriptor, layers })
      const manifest = { mediaType: MediaType.OciManifest, digest: sha256(manifestBytes), size: manifestBytes.length }
      const name = options.name === undefined
        ? untaggedName(configDescriptor.digest)
        : (yield* parseReference(options.name, method)).toString()
      const source = memorySource(client, method, new Map([[configDescriptor.digest, configBytes], [manifest.digest, manifestBytes]]))
      const plan = yield* planner.plan(source, { descriptor: manifest, bytes: manifestBytes }, platform)
      return yield* store.store(source, name, plan, { snapshotter: options.snapshotter }, () => {})
    })

  /**
   * A root filesystem tar (plain or gzip), streamed into the content store as
   * the one layer of a new image; a stream that is not a whole tar fails with
   * InvalidArgument and leaves nothing.
   */
  const importRootfs = <E>(
    tar: Stream.Stream<Uint8Array, E>,
    platform: Platform,
    options: NewImageOptions
  ): Effect.Effect<ResolvedImage, ContainerdError | E> =>
    store.leased(Effect.gen(function*() {
      if (options.name !== undefined) yield* parseReference(options.name, "Images.importRootfs")
      const written = yield* writeStream(client, { ref: randomKey("import"), mediaType: LayerMediaType.tar, labels: {}, source: tar })
      // Read back from containerd, not kept: the tar is checked and its diff ID computed in a second pass.
      const measured = yield* measureLayer(readBlob(client, written.digest, 0))
      const descriptor = { ...written, mediaType: measured.compression === "gzip" ? LayerMediaType.gzip : LayerMediaType.tar }
      if (measured.compression === "gzip") {
        yield* client.content.update({
          info: { digest: descriptor.digest, labels: { [Labels.uncompressed]: measured.diffId } },
          updateMask: [`labels.${Labels.uncompressed}`]
        })
      }
      return yield* finish("Images.importRootfs", undefined, platform, { descriptor, diffId: measured.diffId }, options)
    }))

  /**
   * The changes of a container's root filesystem over its image, as a new
   * image: the image's layers and one more.
   */
  const commit = (target: CommitTarget, options: NewImageOptions): Effect.Effect<ResolvedImage, ContainerdError> =>
    store.leased(Effect.gen(function*() {
      const method = "Images.commit"
      const { snapshotter, snapshotKey } = target
      const base = yield* resolve(target.image)
      const { info } = yield* client.snapshots.stat({ snapshotter, key: snapshotKey })
      if ((info?.parent ?? "") !== base.chainId) {
        return yield* Effect.fail(failedPrecondition(
          method,
          `the container's snapshot ${snapshotKey} is not over image ${target.image} (its parent is ${info?.parent || "none"})`
        ))
      }
      const viewKey = randomKey("commit-view")
      // The view is made under the commit's lease: if its removal fails, the lease's end lets containerd's GC take it.
      const lower = yield* Effect.acquireRelease(
        client.snapshots.view({ snapshotter, key: viewKey, parent: base.chainId }),
        () => Effect.ignore(client.snapshots.remove({ snapshotter, key: viewKey }))
      )
      const upper = yield* client.snapshots.mounts({ snapshotter, key: snapshotKey })
      const { diff } = yield* client.diff.diff({
        left: lower.mounts,
        right: upper.mounts,
        mediaType: LayerMediaType.gzip,
        ref: randomKey("commit"),
        labels: {}
      }, { timeout: DIFF_TIMEOUT })
      if (diff === undefined) return yield* Effect.fail(invalidArgument(method, "the differ returned no layer"))
      const blob = yield* client.content.info({ digest: diff.digest })
      const diffId = blob.info?.labels[Labels.uncompressed]
      if (diffId === undefined) {
        return yield* Effect.fail(invalidArgument(method, `the differ's layer ${diff.digest} has no ${Labels.uncompressed} label`))
      }
      const { architecture, os, variant } = base.config
      const platform: Platform = variant === undefined ? { os, architecture } : { os, architecture, variant }
      const descriptor = { mediaType: diff.mediaType, digest: diff.digest, size: diff.size }
      return yield* finish(method, base, platform, { descriptor, diffId }, options)
    }).pipe(Effect.scoped))

  return { importRootfs, commit }
}
