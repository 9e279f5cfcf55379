/**
 * Resolving an image name to what a container needs: the image record, then
 * (for an index) the manifest for this platform, the manifest and the config.
 *
 * Both steps are cached so that a container of an image used before costs no
 * image RPC at all:
 * - by digest, for the documents: content is immutable, so this never goes stale;
 * - by name, for the record: containerd tells us when a name changes
 *   (ImageCreate/Update/Delete) and the entry is dropped at once; after
 *   `Resynced` (events may have been missed) every name is dropped.
 * Concurrent first lookups of one key share one resolution; failures are not cached.
 */
import { Cache, Duration, Effect, Exit, Result, Stream } from "effect"
import { type ContainerdError, invalidArgument, notFound } from "../../domain/ContainerdError.ts"
import {
  chainId,
  type Descriptor,
  describePlatform,
  ImageConfig,
  ImageIndex,
  ImageManifest,
  isIndexMediaType,
  isManifestMediaType,
  type Platform,
  selectManifest
} from "../../domain/Image.ts"
import { parseReferenceResult } from "../../domain/Reference.ts"
import { readJson } from "../../internal/Content.ts"
import { compositeKey, keyParts } from "../../internal/Key.ts"
import { type ContainerdClient, withNamespace } from "../Containerd.ts"
import type { Events } from "../Events.ts"

/** What a container (or Docker's image view) needs to know about its image. */
export interface ResolvedImage {
  /** The name it was resolved by. */
  readonly name: string
  /** The record's target: a manifest or an index. */
  readonly target: { readonly mediaType: string; readonly digest: string; readonly size: number }
  readonly manifestDigest: string
  readonly configDigest: string
  /** The config blob's size, as the manifest gives it. */
  readonly configSize: number
  readonly config: ImageConfig
  /** The manifest's layers (compressed, as stored), bottom first. */
  readonly layers: ReadonlyArray<Descriptor>
  /** The committed snapshot holding the image's layers. */
  readonly chainId: string
}

/** How many names and digests each cache keeps. */
const CAPACITY = 4096

/** Successes are kept until invalidated; failures are not kept at all. */
export const keepSuccesses = (exit: Exit.Exit<unknown, unknown>): Duration.Duration =>
  Exit.isSuccess(exit) ? Duration.infinity : Duration.zero

/** A reference in the form images are stored under; names that are not references are kept as they are. */
export const normalise = (name: string): string =>
  Result.match(parseReferenceResult(name), { onSuccess: (reference) => reference.toString(), onFailure: () => name })

/** The resolver with its caches; the fiber dropping renamed images lives in the current scope. */
export const makeResolver = Effect.fnUntraced(function*(client: ContainerdClient, events: Events["Service"], platform: Platform) {
  const read = <S extends Parameters<typeof readJson>[2]>(schema: S, what: string, digest: string) =>
    readJson(client, "Images.resolve", schema, what, digest)

  /** Resolves a target descriptor (in the current namespace). */
  const resolveTarget = (name: string, target: Descriptor) =>
    Effect.gen(function*() {
      let manifestDescriptor: { readonly digest: string } = target
      if (isIndexMediaType(target.mediaType)) {
        const index = yield* read(ImageIndex, "index", target.digest)
        const chosen = selectManifest(index, platform)
        if (chosen === undefined) {
          return yield* Effect.fail(notFound("Images.resolve", `image ${name} has no manifest for ${describePlatform(platform)}`))
        }
        manifestDescriptor = chosen
      } else if (!isManifestMediaType(target.mediaType)) {
        return yield* Effect.fail(invalidArgument("Images.resolve", `image ${name} has an unsupported media type ${target.mediaType}`))
      }
      const manifest = yield* read(ImageManifest, "manifest", manifestDescriptor.digest)
      const config = yield* read(ImageConfig, "config", manifest.config.digest)
      return {
        manifestDigest: manifestDescriptor.digest,
        configDigest: manifest.config.digest,
        configSize: manifest.config.size,
        config,
        layers: manifest.layers,
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
        return { name, target, ...resolved } satisfies ResolvedImage
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

  /** Resolves an image name (normalised as Docker does) in the current namespace. */
  const resolve = (name: string): Effect.Effect<ResolvedImage, ContainerdError> =>
    Effect.flatMap(client.currentNamespace, (namespace) => Cache.get(byName, compositeKey(namespace, normalise(name))))

  return { resolve }
})
