/**
 * `docker save`: images as one tar that is both a Docker image archive and an
 * OCI image layout, as dockerd 25 writes it (moby `image/tarexport/save.go`
 * and containerd's `archive.Export`): `oci-layout`, `index.json` (one entry per
 * name, named by `io.containerd.image.name` and `org.opencontainers.image.ref.name`),
 * every blob once under `blobs/<algorithm>/<hex>`, and for Docker's `docker
 * load` a `manifest.json` (`[{Config, RepoTags, Layers}]`, paths into `blobs/`)
 * and the legacy `repositories`.
 *
 * The blobs are what the content store holds, byte for byte: the manifest
 * keeps its digest, so loading the archive back gives the same image. Layers
 * stay compressed as stored: dockerd 20.10's `docker load` decompresses a layer
 * file before checking it against the config's diff ID (checked against it),
 * so no layer is decompressed, spooled or held here; each is streamed from
 * containerd into the archive, its size known from its descriptor.
 */
import { Effect, Stream } from "effect"
import { type ContainerdError, failedPrecondition } from "../../domain/ContainerdError.ts"
import { type Descriptor, documentMediaType, isManifestMediaType } from "../../domain/Image.ts"
import type { Reference } from "../../domain/Reference.ts"
import { readContent } from "../../internal/Content.ts"
import { type TarError, type TarMember, tarStream } from "../../internal/TarWriter.ts"
import type { ContainerdClient } from "../Containerd.ts"
import { Labels } from "./Labels.ts"
import type { ResolvedImage } from "./Resolve.ts"

/** One image to save, and the names (tagged references) it is saved under; none for an image saved by ID. */
export interface SaveImage {
  readonly image: ResolvedImage
  readonly names: ReadonlyArray<Reference>
}

/** An entry of a Docker archive's `manifest.json`. */
export interface DockerArchiveEntry {
  readonly Config: string
  readonly RepoTags: ReadonlyArray<string> | null
  readonly Layers: ReadonlyArray<string>
}

/** Where a blob is in a layout: `blobs/sha256/<hex>`. */
export const blobPath = (digest: string): string => `blobs/${digest.replace(":", "/")}`

const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))

const file = <E>(name: string, bytes: Uint8Array): TarMember<E> => ({
  _tag: "File",
  name,
  size: bytes.byteLength,
  data: Stream.succeed(bytes)
})

/** The exporter over the content store. */
export const makeExporter = (client: ContainerdClient) => {
  /** The manifest of an image (small: read whole), with its media type. */
  const manifestOf = (image: ResolvedImage) =>
    Effect.map(readContent(client, image.manifestDigest), (bytes) => {
      const mediaType = isManifestMediaType(image.target.mediaType)
        ? image.target.mediaType
        : documentMediaType(undefined, JSON.parse(Buffer.from(bytes).toString("utf8"))) ?? image.target.mediaType
      return { descriptor: { mediaType, digest: image.manifestDigest, size: bytes.byteLength } satisfies Descriptor, bytes }
    })

  /** A blob streamed from the content store. */
  const blobMember = (descriptor: Descriptor): TarMember<ContainerdError> => ({
    _tag: "File",
    name: blobPath(descriptor.digest),
    size: descriptor.size,
    data: Stream.map(client.content.read({ digest: descriptor.digest }), (chunk): Uint8Array => chunk.data)
  })

  /**
   * The archive of `images`, streamed. The documents are read before the first
   * byte, so an image whose content is missing fails the call, not the stream;
   * a layer that goes missing meanwhile fails the stream.
   */
  const save = (images: ReadonlyArray<SaveImage>): Effect.Effect<Stream.Stream<Uint8Array, ContainerdError>, ContainerdError> =>
    Effect.gen(function*() {
      const documents = yield* Effect.forEach(images, ({ image }) =>
        Effect.map(
          Effect.all([manifestOf(image), readContent(client, image.configDigest)]),
          ([manifest, config]) => ({ manifest, config })
        ), { concurrency: 4 })
      const seen = new Set<string>()
      const members: Array<TarMember<ContainerdError>> = [
        file("oci-layout", json({ imageLayoutVersion: "1.0.0" })),
        { _tag: "Directory", name: "blobs" }
      ]
      const once = (digest: string, member: () => TarMember<ContainerdError>) => {
        if (seen.has(digest)) return
        seen.add(digest)
        const algorithm = `blobs/${digest.slice(0, digest.indexOf(":"))}`
        if (!seen.has(algorithm)) {
          seen.add(algorithm)
          members.push({ _tag: "Directory", name: algorithm })
        }
        members.push(member())
      }
      const index: Array<Descriptor & { readonly annotations?: Record<string, string> }> = []
      const dockerManifest: Array<DockerArchiveEntry> = []
      // Maps, not objects: a tag may be any name, `__proto__` included, and each must be a key of the file.
      const repositories = new Map<string, Map<string, string>>()
      for (const [i, { image, names }] of images.entries()) {
        const { config, manifest } = documents[i]!
        once(manifest.descriptor.digest, () => file(blobPath(manifest.descriptor.digest), manifest.bytes))
        once(image.configDigest, () => file(blobPath(image.configDigest), config))
        for (const layer of image.layers) once(layer.digest, () => blobMember(layer))
        const tagged = names.filter((name) => name.tag !== undefined)
        if (tagged.length === 0) index.push(manifest.descriptor)
        for (const name of tagged) {
          index.push({
            ...manifest.descriptor,
            annotations: { [Labels.imageName]: name.toString(), [Labels.ociRefName]: name.tag! }
          })
          const repository = name.familiar.slice(0, name.familiar.length - name.tag!.length - 1)
          const top = image.layers.at(-1)
          if (top === undefined) continue
          const tags = repositories.get(repository) ?? new Map<string, string>()
          repositories.set(repository, tags.set(name.tag!, top.digest.slice(top.digest.indexOf(":") + 1)))
        }
        dockerManifest.push({
          Config: blobPath(image.configDigest),
          RepoTags: tagged.length === 0 ? null : tagged.map((name) => name.familiar),
          Layers: image.layers.map((layer) => blobPath(layer.digest))
        })
      }
      members.push(
        file("index.json", json({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: index })),
        file("manifest.json", json(dockerManifest)),
        file("repositories", json(Object.fromEntries([...repositories].map(([repository, tags]) => [repository, Object.fromEntries(tags)]))))
      )
      return tarStream(Stream.fromIterable(members)).pipe(
        Stream.mapError((error: ContainerdError | TarError) =>
          error._tag === "TarError" ? failedPrecondition("Images.save", `the content store changed: ${error.message}`) : error
        )
      )
    })

  return { save }
}
