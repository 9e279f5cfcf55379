/**
 * Images in containerd: resolving a name to what a container needs from it (its
 * config and the chain ID of its unpacked layers).
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
import { Cache, Context, Duration, Effect, Exit, Layer, Schema, Stream } from "effect"
import { type ContainerdError, invalidArgument, notFound } from "../domain/ContainerdError.ts"
import {
  chainId,
  type Descriptor,
  hostPlatform,
  ImageConfig,
  ImageIndex,
  ImageManifest,
  isIndexMediaType,
  isManifestMediaType,
  type Platform,
  selectManifest
} from "../domain/Image.ts"
import { Containerd, withNamespace } from "./Containerd.ts"
import { Events } from "./Events.ts"

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

/** The images service. */
export interface ImagesShape {
  /** Resolves an image name in the current namespace. */
  readonly resolve: (name: string) => Effect.Effect<ResolvedImage, ContainerdError>
}

/** How many names and digests each cache keeps. */
const CAPACITY = 4096

/** Successes are kept until invalidated; failures are not kept at all. */
const keepSuccesses = (exit: Exit.Exit<unknown, unknown>) => Exit.isSuccess(exit) ? Duration.infinity : Duration.zero

/** Builds the images service; its event fiber lives in the current scope. */
export const makeImages = Effect.fnUntraced(function*(options?: { readonly platform?: Platform }) {
  const client = yield* Containerd
  const events = yield* Events
  const platform = options?.platform ?? hostPlatform()

  const readJson = <S extends Schema.Top & { readonly DecodingServices: never }>(
    schema: S,
    what: string,
    descriptor: { readonly digest: string }
  ) =>
    client.content.read({ digest: descriptor.digest }).pipe(
      Stream.runCollect,
      Effect.map((chunks) => Buffer.concat(chunks.map((chunk) => chunk.data)).toString("utf8")),
      Effect.flatMap((text) =>
        Effect.try({
          try: () => JSON.parse(text) as unknown,
          catch: () => invalidArgument("Images.resolve", `the ${what} ${descriptor.digest} is not JSON`)
        })
      ),
      Effect.flatMap((json) =>
        Schema.decodeUnknownEffect(schema)(json).pipe(
          Effect.mapError((issue) =>
            invalidArgument("Images.resolve", `the ${what} ${descriptor.digest} is malformed: ${issue.message}`)
          )
        )
      )
    )

  /** Resolves a target descriptor (in the namespace the key names). */
  const resolveTarget = (name: string, target: Descriptor) =>
    Effect.gen(function*() {
      let manifestDescriptor: { readonly digest: string } = target
      if (isIndexMediaType(target.mediaType)) {
        const index = yield* readJson(ImageIndex, "index", target)
        const chosen = selectManifest(index, platform)
        if (chosen === undefined) {
          return yield* Effect.fail(notFound(
            "Images.resolve",
            `image ${name} has no manifest for ${platform.os}/${platform.architecture}${platform.variant ? `/${platform.variant}` : ""}`
          ))
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
      const [namespace = "", name = "", digest = "", mediaType = "", size = "0"] = key.split("\u0000")
      return resolveTarget(name, { digest, mediaType, size: Number(size) }).pipe(withNamespace(namespace))
    },
    { capacity: CAPACITY, timeToLive: keepSuccesses }
  )

  const byName = yield* Cache.makeWith(
    (key: string) => {
      const [namespace = "", name = ""] = key.split("\u0000")
      return Effect.gen(function*() {
        const { image } = yield* client.images.get({ name })
        if (image?.target === undefined) return yield* Effect.fail(notFound("Images.resolve", `image ${name} not found`))
        const target = { mediaType: image.target.mediaType, digest: image.target.digest, size: image.target.size }
        const resolved = yield* Cache.get(byDigest, [namespace, name, target.digest, target.mediaType, target.size].join("\u0000"))
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
        : Cache.invalidate(byName, `${message.namespace}\u0000${message.name}`)
    ),
    Effect.forkScoped
  )

  const resolve = (name: string) =>
    Effect.flatMap(client.currentNamespace, (namespace) => Cache.get(byName, `${namespace}\u0000${name}`))

  return Images.of({ resolve })
})

/** The images service. */
export class Images extends Context.Service<Images, ImagesShape>()("effect-containerd/Images") {
  /** Images of the `Containerd` client's daemon, for this host's platform. */
  static readonly layer: Layer.Layer<Images, never, Containerd | Events> = Layer.effect(Images, makeImages())
}
