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
 * - `DockerArchive.ts`: a Docker image archive (`docker save`'s) as a source;
 * - `Export.ts`: images as one archive, Docker's and OCI's at once (`docker save`);
 * - `NewImage.ts`: images made here (an imported root filesystem, a committed
 *   container), planned and stored through the same two steps.
 * This module is the service: its shape, and the assembly of those steps.
 */
import { Cache, Context, Effect, Layer, Option, Queue, Result, Stream } from "effect"
import { type ContainerdError, invalidArgument, notFound } from "../domain/ContainerdError.ts"
import { type Descriptor, documentMediaType, hostPlatform, ImageIndex, isIndexMediaType, isManifestMediaType, type Platform } from "../domain/Image.ts"
import { parseReference } from "../domain/Reference.ts"
import type { RegistryError } from "../domain/RegistryError.ts"
import { decodeJson } from "../internal/Content.ts"
import { compositeKey, keyParts } from "../internal/Key.ts"
import { layerSize } from "../internal/LayerSize.ts"
import { type OciLayout, openOciLayout } from "../internal/OciArchive.ts"
import { Containerd, withNamespace } from "./Containerd.ts"
import { Events } from "./Events.ts"
import { Labels } from "./images/Labels.ts"
import { isDockerArchive, readDockerArchive } from "./images/DockerArchive.ts"
import { makeExporter, type SaveImage } from "./images/Export.ts"
import { type CommitTarget, type ImportRootfsOptions, makeNewImages, type NewImageOptions } from "./images/NewImage.ts"
import { makePlanner, type Plan } from "./images/Plan.ts"
import { keepSuccesses, makeResolver, normalise, type ResolvedImage } from "./images/Resolve.ts"
import { archiveSource, importName, registrySource, type Source } from "./images/Sources.ts"
import { type ImageRecord, makeStore, type PullOptions, type PullProgress, toRecord } from "./images/Store.ts"
import { MAX_MANIFEST_BYTES, Registry, RegistryAuth } from "./Registry.ts"
import { Singleflight } from "./Singleflight.ts"

export type { SaveImage } from "./images/Export.ts"
export type { CommitTarget, ImportRootfsOptions, NewImageOptions } from "./images/NewImage.ts"
export { untaggedName } from "./images/NewImage.ts"
export type { ResolvedImage } from "./images/Resolve.ts"
export type { ImageRecord, PullOptions, PullProgress } from "./images/Store.ts"
export { PullLeases } from "./images/Store.ts"

/** How to import. */
export interface ImportOptions extends PullOptions {
  /**
   * The name for images the archive does not name, or the repository for those
   * it names only by tag (`org.opencontainers.image.ref.name: latest`).
   */
  readonly name?: string | undefined
  /**
   * The record name for an image the archive does not name when `name` is not
   * given either (dockerd 25 names such images `moby-dangling@<digest>`), from
   * its top document; without it, such an archive is refused.
   */
  readonly unnamed?: ((top: Descriptor) => string) | undefined
  /**
   * Told the progress of the blobs as they are written and unpacked (the pull's
   * events from `Waiting` on), once every image has been read and checked.
   */
  readonly onProgress?: ((event: PullProgress) => void) | undefined
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
  /**
   * Imports every image of an OCI image layout or a Docker image archive (a
   * directory or a tar), one result per name stored. Every image is read and
   * checked before any is stored; if storing one fails, the names this call
   * created are removed and what it wrote is left to containerd's GC.
   */
  readonly importArchive: (
    path: string,
    options?: ImportOptions
  ) => Effect.Effect<ReadonlyArray<ResolvedImage>, ContainerdError>
  /**
   * The images as one tar stream that is both a Docker image archive and an OCI
   * image layout (`docker save`); the documents are read before it starts.
   */
  readonly save: (
    images: ReadonlyArray<SaveImage>
  ) => Effect.Effect<Stream.Stream<Uint8Array, ContainerdError>, ContainerdError>
  /**
   * The size of each layer of an image as Docker shows it (its files' bytes,
   * read from the layer: see `internal/LayerSize.ts`), bottom first.
   */
  readonly layerSizes: (image: ResolvedImage) => Effect.Effect<ReadonlyArray<number>, ContainerdError>
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
  /** Removes an image record and waits for containerd's GC: what only it referenced is gone on return. */
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
  const storer = yield* makeStore(client, flights)
  const { putRecord, store } = storer

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
      // A pull with its own credentials shares no resolution with others: each must pass the registry's check itself.
      const top = yield* flights.run(compositeKey("resolve", reference.toString(), options.auth?.id ?? ""), registry.resolve(reference))
      emit({ _tag: "Resolved", reference: reference.toString(), digest: top.descriptor.digest })
      const source = registrySource(registry, reference)
      const planned = yield* plan(source, top, options.platform ?? defaultPlatform)
      return yield* store(source, reference.toString(), planned, options, emit)
    }).pipe(Effect.provideService(RegistryAuth, options.auth))

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

  /** The images of an OCI layout: one per entry of its `index.json`, named by its annotations. */
  const ociImages = (layout: OciLayout, path: string, options: ImportOptions | undefined) =>
    Effect.gen(function*() {
      const source = archiveSource(layout, path)
      const indexBytes = yield* layout.read("index.json", MAX_MANIFEST_BYTES)
      const index = yield* Result.match(decodeJson(ImageIndex, indexBytes), {
        onSuccess: Effect.succeed,
        onFailure: (problem) => Effect.fail(source.invalid(`index.json: ${problem}`))
      })
      if (index.manifests.length === 0) return yield* Effect.fail(source.invalid("index.json lists no images"))
      const names = yield* Effect.forEach(index.manifests, (entry) =>
        entry.annotations?.[Labels.imageName] === undefined && entry.annotations?.[Labels.ociRefName] === undefined &&
          options?.name === undefined
          ? Effect.succeed([])
          : Effect.map(importName(entry.annotations, options?.name), (name) => [name]))
      return yield* Effect.forEach(index.manifests, (entry, i) =>
        Effect.gen(function*() {
          const bytes = yield* source.document({ mediaType: entry.mediaType, digest: entry.digest, size: entry.size })
          let mediaType = entry.mediaType
          if (!isIndexMediaType(mediaType) && !isManifestMediaType(mediaType)) {
            mediaType = documentMediaType(undefined, JSON.parse(Buffer.from(bytes).toString("utf8"))) ?? mediaType
          }
          return { top: { descriptor: { mediaType, digest: entry.digest, size: entry.size }, bytes }, source, names: names[i]! }
        }))
    })

  const importArchive = Effect.fn("Images.importArchive")(function*(path: string, options?: ImportOptions) {
    const layout = yield* openOciLayout(path)
    // dockerd 25's `docker save` writes both forms: the OCI one keeps the manifest's digest.
    const oci = yield* layout.has("index.json")
    if (!oci && !(yield* isDockerArchive(layout))) {
      return yield* Effect.fail(invalidArgument(
        "Images.import",
        `${path} is neither an OCI image layout (index.json) nor a Docker image archive (manifest.json)`
      ))
    }
    const images = oci
      ? yield* ociImages(layout, path, options)
      : yield* readDockerArchive(layout).pipe(
        Effect.flatMap((found) =>
          Effect.forEach(found, (image) =>
            image.names.length > 0 || options?.name === undefined
              ? Effect.succeed(image)
              : Effect.map(parseReference(options.name, "Images.import"), (name) => ({ ...image, names: [name] })))
        )
      )
    const unnamed = images.find((image) => image.names.length === 0)
    if (unnamed !== undefined && options?.unnamed === undefined) {
      return yield* Effect.fail(unnamed.source.invalid(
        `the image ${unnamed.top.descriptor.digest} has no name (RepoTags): pass options.name`
      ))
    }
    const platform = options?.platform ?? defaultPlatform
    const planned: ReadonlyArray<{ readonly source: Source<ContainerdError>; readonly names: ReadonlyArray<string>; readonly plan: Plan }> =
      yield* Effect.forEach(images, (image) =>
        Effect.map(plan(image.source, image.top, platform), (plan) => ({
          source: image.source,
          names: image.names.length === 0 ? [options!.unnamed!(image.top.descriptor)] : image.names.map((name) => name.toString()),
          plan
        })))
    const previous = yield* Effect.forEach(planned.flatMap((image) => image.names), (name) =>
      get(name).pipe(
        Effect.as(Option.none<string>()),
        Effect.catchIf((error) => error.reason._tag === "NotFound", () => Effect.succeed(Option.some(name)))
      ))
    const created = previous.flatMap((name) => Option.isSome(name) ? [name.value] : [])
    const stored: Array<ResolvedImage> = []
    return yield* Effect.gen(function*() {
      for (const image of planned) {
        const first = yield* store(image.source, image.names[0]!, image.plan, options ?? {}, options?.onProgress ?? (() => {}))
        stored.push(first)
        for (const name of image.names.slice(1)) {
          const record = yield* putRecord(name, image.plan.top.descriptor)
          stored.push({ ...first, name: record.name })
        }
      }
      return stored as ReadonlyArray<ResolvedImage>
    }).pipe(
      // Nothing half-done: the names this import made go; the content is the lease's, left to GC.
      Effect.onError(() => Effect.forEach(created, (name) => Effect.ignore(client.images.delete({ name })), { discard: true }))
    )
  }, Effect.scoped)

  const { save: exportImages } = makeExporter(client)
  const save = Effect.fn("Images.save")(function*(images: ReadonlyArray<SaveImage>) {
    return yield* exportImages(images)
  })

  // A layer's size never changes: computed once per blob (a pass over the whole layer).
  const sizes = yield* Cache.makeWith(
    (key: string) => {
      const [namespace = "", digest = "", mediaType = ""] = keyParts(key)
      return layerSize(mediaType, Stream.map(client.content.read({ digest }), (chunk): Uint8Array => chunk.data)).pipe(
        withNamespace(namespace)
      )
    },
    { capacity: 4096, timeToLive: keepSuccesses }
  )

  const layerSizes = Effect.fn("Images.layerSizes")(function*(image: ResolvedImage) {
    const namespace = yield* client.currentNamespace
    return yield* Effect.forEach(image.layers, (layer) =>
      Cache.get(sizes, compositeKey(namespace, layer.digest, layer.mediaType)), { concurrency: 2 })
  })

  const made = makeNewImages(client, planner, storer, resolver.resolve)

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
    // Synchronous, as CRI's RemoveImage (images.SynchronousDelete): the GC the delete triggers is done
    // when we answer. Run later, it could remove a blob or snapshot that a load or pull of the same image
    // right after found present and so reused, leaving that image's record pointing at nothing.
    yield* client.images.delete({ name: normalise(name), sync: true })
  })

  return Images.of({ resolve, pull, pullWithProgress, importArchive, save, layerSizes, importRootfs, commit, list, get, tag, remove })
})

/** The images service. */
export class Images extends Context.Service<Images, ImagesShape>()("effect-containerd/Images") {
  /** Images of the `Containerd` client's daemon, pulled through `Registry`, for this host's platform. */
  static readonly layer: Layer.Layer<Images, never, Containerd | Events | Registry | Singleflight> = Layer.effect(
    Images,
    makeImages()
  )
}
