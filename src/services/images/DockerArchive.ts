/**
 * Reading a Docker image archive (what `docker save` of dockerd 20.10 and
 * `skopeo copy … docker-archive:` write): a `manifest.json` listing, per image,
 * its config file, its `RepoTags` and its layer files (plain tars, or
 * compressed as newer engines write them), with no manifest in the registry's
 * sense. As containerd's importer (`images/archive`), a Docker schema 2
 * manifest is made for each image, so the image goes through the same plan and
 * store as a pull: each layer file's digest is computed in one streamed pass
 * (and its compression told from its first bytes), the config's from its bytes.
 * The image ID (the config digest) is the one the archive's engine showed.
 */
import { Effect, Result, Schema, Stream } from "effect"
import * as crypto from "node:crypto"
import { type ContainerdError, invalidArgument, notFound } from "../../domain/ContainerdError.ts"
import { type Descriptor, MediaType } from "../../domain/Image.ts"
import { parseReference, type Reference } from "../../domain/Reference.ts"
import { decodeJson } from "../../internal/Content.ts"
import type { OciLayout } from "../../internal/OciArchive.ts"
import { MAX_DOCUMENT_BYTES, MAX_MANIFEST_BYTES } from "../Registry.ts"
import type { Document } from "./Plan.ts"
import type { Source } from "./Sources.ts"

/** `manifest.json` of a Docker image archive. */
const DockerArchiveManifest = Schema.Array(Schema.Struct({
  Config: Schema.String,
  RepoTags: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
  Layers: Schema.Array(Schema.String)
}))

/** One image of a Docker archive: its made-up manifest, where its blobs are, and its names. */
export interface DockerArchiveImage {
  readonly top: Document
  readonly source: Source<ContainerdError>
  readonly names: ReadonlyArray<Reference>
}

const METHOD = "Images.load"

const sha256 = (bytes: Uint8Array) => `sha256:${crypto.createHash("sha256").update(bytes).digest("hex")}`

/** A layer file's media type from its first bytes, as Docker's `DetectCompression`. */
const layerMediaType = (head: Uint8Array): string =>
  head[0] === 0x1f && head[1] === 0x8b
    ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
    : head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd
    ? "application/vnd.oci.image.layer.v1.tar+zstd"
    : "application/vnd.docker.image.rootfs.diff.tar"

/** Whether a layout is a Docker archive (it has `manifest.json`). */
export const isDockerArchive = (layout: OciLayout): Effect.Effect<boolean> => layout.has("manifest.json")

/** The images of a Docker archive, read and hashed; nothing is written. */
export const readDockerArchive = (layout: OciLayout): Effect.Effect<ReadonlyArray<DockerArchiveImage>, ContainerdError> =>
  Effect.gen(function*() {
    const fail = (message: string) => invalidArgument(METHOD, `${layout.source}: ${message}`)
    const entries = yield* Result.match(decodeJson(DockerArchiveManifest, yield* layout.read("manifest.json", MAX_MANIFEST_BYTES)), {
      onSuccess: Effect.succeed,
      onFailure: (problem) => Effect.fail(fail(`manifest.json: ${problem}`))
    })
    if (entries.length === 0) return yield* Effect.fail(fail("manifest.json lists no images"))
    /** One streamed pass over a layer file: its digest, size and compression. */
    const describeLayer = (file: string) =>
      Effect.gen(function*() {
        const hash = crypto.createHash("sha256")
        let head: Uint8Array | undefined
        let size = 0
        yield* Stream.runForEach(layout.stream(file, 0), (chunk) =>
          Effect.sync(() => {
            if (head === undefined) head = chunk.subarray(0, 4)
            hash.update(chunk)
            size += chunk.byteLength
          }))
        return { mediaType: layerMediaType(head ?? new Uint8Array()), digest: `sha256:${hash.digest("hex")}`, size } satisfies Descriptor
      })
    const images: Array<DockerArchiveImage> = []
    for (const entry of entries) {
      const configBytes = yield* layout.read(entry.Config, MAX_DOCUMENT_BYTES)
      const config: Descriptor = { mediaType: MediaType.DockerConfig, digest: sha256(configBytes), size: configBytes.byteLength }
      const files = new Map<string, string>()
      const layers: Array<Descriptor> = []
      for (const file of entry.Layers) {
        const layer = yield* describeLayer(file)
        files.set(layer.digest, file)
        layers.push(layer)
      }
      // Key order is fixed: the manifest's digest is the hash of exactly these bytes.
      const manifestBytes = new TextEncoder().encode(JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.DockerManifest,
        config: { mediaType: config.mediaType, size: config.size, digest: config.digest },
        layers: layers.map((layer) => ({ mediaType: layer.mediaType, size: layer.size, digest: layer.digest }))
      }))
      const manifest: Descriptor = { mediaType: MediaType.DockerManifest, digest: sha256(manifestBytes), size: manifestBytes.byteLength }
      const documents = new Map([[manifest.digest, manifestBytes], [config.digest, configBytes]])
      const source: Source<ContainerdError> = {
        label: layout.source,
        document: (descriptor) => {
          const bytes = documents.get(descriptor.digest)
          return bytes === undefined ? Effect.fail(fail(`no document ${descriptor.digest}`)) : Effect.succeed(bytes)
        },
        blob: (descriptor, offset) => {
          const file = files.get(descriptor.digest)
          return file === undefined ? Stream.fail(fail(`no layer ${descriptor.digest}`)) : layout.stream(file, offset)
        },
        blobLabels: {},
        resumable: () => false,
        invalid: fail,
        notFound: (message) => notFound(METHOD, `${layout.source}: ${message}`)
      }
      const names = yield* Effect.forEach(entry.RepoTags ?? [], (tag) => parseReference(tag, METHOD))
      images.push({ top: { descriptor: manifest, bytes: manifestBytes }, source, names })
    }
    return images
  })
