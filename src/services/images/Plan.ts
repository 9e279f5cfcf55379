/**
 * The first step of a pull or import: read and check everything an image is
 * made of — the index (and this platform's manifest in it), the manifest, the
 * config — before anything is written, so a malformed or unsupported image
 * fails with nothing left behind. Documents already in the content store are
 * read from there; concurrent reads of one document share one read.
 */
import { Effect, Result } from "effect"
import type { ContainerdError } from "../../domain/ContainerdError.ts"
import {
  chainId,
  type Descriptor,
  describePlatform,
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
} from "../../domain/Image.ts"
import { decodeJson, type DecodableSchema, readContent } from "../../internal/Content.ts"
import { compositeKey } from "../../internal/Key.ts"
import type { ContainerdClient } from "../Containerd.ts"
import type { Singleflight } from "../Singleflight.ts"
import type { Source } from "./Sources.ts"

/** A document as fetched, with its descriptor. */
export interface Document {
  readonly descriptor: Descriptor
  readonly bytes: Uint8Array
}

/** Everything known about an image before any of it is written. */
export interface Plan {
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

/** The planner over the content store and the shared work of concurrent pulls. */
export const makePlanner = (client: ContainerdClient, flights: Singleflight["Service"]) => {
  /** Reads a document from containerd if it is there, else from the source; one read per digest at a time. */
  const readDocument = <E>(source: Source<E>, descriptor: Descriptor) =>
    Effect.flatMap(client.currentNamespace, (namespace) =>
      flights.run(
        compositeKey("document", namespace, descriptor.digest),
        readContent(client, descriptor.digest).pipe(
          Effect.catchIf(
            (error): error is ContainerdError => error.reason._tag === "NotFound",
            () => source.document(descriptor)
          )
        )
      ))

  const decodeOrFail = <E, S extends DecodableSchema>(source: Source<E>, schema: S, what: string, document: Document) =>
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

  return { plan }
}
