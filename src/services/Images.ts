/**
 * Images in containerd: pulling them from registries, importing OCI layouts and
 * archives, unpacking them into snapshots, naming and removing them, and
 * resolving a name to what a container needs (its config and the chain ID of
 * its unpacked layers).
 *
 * Pulling is the client's job in containerd 1.6 and 1.7, as here: resolve the
 * reference at the registry, write every blob into the content store, unpack
 * the layers with the diff service, then create the image record. The steps
 * are modules of `images/`, along the pipeline:
 * - `Resolve.ts`: a name to a `ResolvedImage`, cached by name and by digest;
 * - `Sources.ts`: where blobs come from (a registry, an OCI layout);
 * - `Plan.ts`: read and check everything before anything is written;
 * - `Store.ts`: blobs, unpacks, GC labels and the record, under a pull lease,
 *   with the work of concurrent pulls shared;
 * - `NewImage.ts`: images made here (an imported root filesystem, a committed
 *   container), planned and stored through the same two steps.
 * This module is the service: its shape, and the assembly of those steps.
 */
import { Context, Effect, Layer, Queue, Result, Stream } from "effect"
import { type ContainerdError, notFound } from "../domain/ContainerdError.ts"
import { documentMediaType, hostPlatform, ImageIndex, isIndexMediaType, isManifestMediaType, type Platform } from "../domain/Image.ts"
import { parseReference } from "../domain/Reference.ts"
import type { RegistryError } from "../domain/RegistryError.ts"
import { decodeJson } from "../internal/Content.ts"
import { compositeKey } from "../internal/Key.ts"
import { openOciLayout } from "../internal/OciArchive.ts"
import { Containerd } from "./Containerd.ts"
import { Events } from "./Events.ts"
import { makePlanner } from "./images/Plan.ts"
import { type CommitTarget, type ImportRootfsOptions, makeNewImages, type NewImageOptions } from "./images/NewImage.ts"
import { makeResolver, normalise, type ResolvedImage } from "./images/Resolve.ts"
import { archiveSource, importName, registrySource } from "./images/Sources.ts"
import { type ImageRecord, makeStore, type PullOptions, type PullProgress, toRecord } from "./images/Store.ts"
import { MAX_MANIFEST_BYTES, Registry } from "./Registry.ts"
import { Singleflight } from "./Singleflight.ts"

export type { CommitTarget, ImportRootfsOptions, NewImageOptions } from "./images/NewImage.ts"
export { untaggedName } from "./images/NewImage.ts"
export type { ResolvedImage } from "./images/Resolve.ts"
export type { ImageRecord, PullOptions, PullProgress } from "./images/Store.ts"

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
  /**
   * Imports a root filesystem tar (plain or gzip, streamed with bounded memory)
   * as a new image of one layer; a stream that is not a whole tar fails with
   * InvalidArgument and leaves nothing behind (`docker import`).
   */
  readonly importRootfs: <E>(
    tar: Stream.Stream<Uint8Array, E>,
    options?: ImportRootfsOptions
  ) => Effect.Effect<ResolvedImage, ContainerdError | E>
  /**
   * Stores the changes of a container's root filesystem over its image as a new
   * image, the image's layers plus one (`docker commit`); `Container.info` is a
   * target. A running container should be paused meanwhile for a consistent layer.
   */
  readonly commit: (container: CommitTarget, options?: NewImageOptions) => Effect.Effect<ResolvedImage, ContainerdError>
  /** Lists image records, optionally filtered (containerd filter syntax: `name~=busybox`). */
  readonly list: (filters?: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<ImageRecord>, ContainerdError>
  /** Reads one image record. */
  readonly get: (name: string) => Effect.Effect<ImageRecord, ContainerdError>
  /** Gives the image `source` a second name, `target` (replacing what that name pointed to). */
  readonly tag: (source: string, target: string) => Effect.Effect<ImageRecord, ContainerdError>
  /** Removes an image record; its content and snapshots are left to containerd's GC. */
  readonly remove: (name: string) => Effect.Effect<void, ContainerdError>
}

/** Builds the images service; its event fiber and shared work live in the current scope. */
export const makeImages = Effect.fnUntraced(function*(options?: { readonly platform?: Platform }) {
  const client = yield* Containerd
  const registry = yield* Registry
  const defaultPlatform = options?.platform ?? hostPlatform()
  // Work shared by concurrent pulls, keyed by what it is: resolving a tag, reading a document,
  // writing a blob, unpacking a layer, writing the record.
  const flights = yield* Singleflight
  const resolver = yield* makeResolver(client, yield* Events, defaultPlatform)
  const planner = makePlanner(client, flights)
  const { plan } = planner
  const stored = yield* makeStore(client, flights)
  const { putRecord, store } = stored

  const resolve = Effect.fn("Images.resolve")(function*(name: string) {
    return yield* resolver.resolve(name)
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
      const source = registrySource(registry, reference)
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
    ).pipe(Stream.withSpan("Images.pullWithProgress"))

  const importArchive = Effect.fn("Images.importArchive")(function*(path: string, options?: ImportOptions) {
    const layout = yield* openOciLayout(path)
    const source = archiveSource(layout, path)
    const indexBytes = yield* layout.read("index.json", MAX_MANIFEST_BYTES)
    const index = yield* Result.match(decodeJson(ImageIndex, indexBytes), {
      onSuccess: Effect.succeed,
      onFailure: (problem) => Effect.fail(source.invalid(`index.json: ${problem}`))
    })
    if (index.manifests.length === 0) return yield* Effect.fail(source.invalid("index.json lists no images"))
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

  const made = makeNewImages(client, planner, stored, resolver.resolve)

  const importRootfs = <E>(tar: Stream.Stream<Uint8Array, E>, options?: ImportRootfsOptions) =>
    made.importRootfs(tar, options?.platform ?? defaultPlatform, options ?? {}).pipe(Effect.withSpan("Images.importRootfs"))

  const commit = Effect.fn("Images.commit")(function*(container: CommitTarget, options?: NewImageOptions) {
    return yield* made.commit(container, options ?? {})
  })

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

  return Images.of({ resolve, pull, pullWithProgress, importArchive, importRootfs, commit, list, get, tag, remove })
})

/** The images service. */
export class Images extends Context.Service<Images, ImagesShape>()("effect-containerd/Images") {
  /** Images of the `Containerd` client's daemon, pulled through `Registry`, for this host's platform. */
  static readonly layer: Layer.Layer<Images, never, Containerd | Events | Registry | Singleflight> = Layer.effect(
    Images,
    makeImages()
  )
}
