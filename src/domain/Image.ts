/**
 * OCI images as stored in containerd's content store: index, manifest and config
 * documents (OCI and Docker v2 media types), the platform choice in an index, and
 * the chain ID that names an image's unpacked layers as a committed snapshot.
 */
import * as crypto from "node:crypto"
import { Schema } from "effect"

/** Media types of the documents we read. */
export const MediaType = {
  OciIndex: "application/vnd.oci.image.index.v1+json",
  OciManifest: "application/vnd.oci.image.manifest.v1+json",
  OciConfig: "application/vnd.oci.image.config.v1+json",
  DockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  DockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  DockerConfig: "application/vnd.docker.container.image.v1+json"
} as const

/** The manifest media types a registry is asked for, most preferred first. */
export const manifestAcceptTypes: ReadonlyArray<string> = [
  MediaType.OciIndex,
  MediaType.DockerManifestList,
  MediaType.OciManifest,
  MediaType.DockerManifest
]

/** Whether a media type names an index (a list of per-platform manifests). */
export const isIndexMediaType = (mediaType: string): boolean =>
  mediaType === MediaType.OciIndex || mediaType === MediaType.DockerManifestList

/** Whether a media type names a single-platform manifest. */
export const isManifestMediaType = (mediaType: string): boolean =>
  mediaType === MediaType.OciManifest || mediaType === MediaType.DockerManifest

/**
 * The media type of a manifest document: the `Content-Type` it was served with
 * when that is one we know, else its own `mediaType` field, else (OCI allows
 * documents without one) what its shape says. `undefined` for anything else,
 * such as a Docker schema 1 manifest.
 */
export const documentMediaType = (contentType: string | undefined, document: unknown): string | undefined => {
  const served = contentType?.split(";")[0]?.trim()
  if (served !== undefined && (isIndexMediaType(served) || isManifestMediaType(served))) return served
  if (typeof document !== "object" || document === null) return undefined
  const own = "mediaType" in document ? document.mediaType : undefined
  if (typeof own === "string") return isIndexMediaType(own) || isManifestMediaType(own) ? own : undefined
  if ("manifests" in document) return MediaType.OciIndex
  if ("config" in document && "layers" in document) return MediaType.OciManifest
  return undefined
}

/** Layer media types the diff service can apply (plain, gzip and zstd tars, OCI and Docker). */
export const isLayerMediaType = (mediaType: string): boolean =>
  /^application\/vnd\.oci\.image\.layer\.v1\.tar(\+gzip|\+zstd)?$/.test(mediaType) ||
  mediaType === "application/vnd.docker.image.rootfs.diff.tar.gzip" ||
  mediaType === "application/vnd.docker.image.rootfs.diff.tar"

/** An OCI platform. */
export const Platform = Schema.Struct({
  architecture: Schema.String,
  os: Schema.String,
  variant: Schema.optional(Schema.String)
})
export type Platform = typeof Platform.Type

/** An OCI content descriptor. */
export const Descriptor = Schema.Struct({
  mediaType: Schema.String,
  digest: Schema.String,
  size: Schema.Int,
  annotations: Schema.optional(Schema.Record(Schema.String, Schema.String)),
  platform: Schema.optional(Platform)
})
export type Descriptor = typeof Descriptor.Type

/** An image index / Docker manifest list. */
export const ImageIndex = Schema.Struct({
  schemaVersion: Schema.Int,
  mediaType: Schema.optional(Schema.String),
  manifests: Schema.Array(Descriptor)
})
export type ImageIndex = typeof ImageIndex.Type

/** A single-platform image manifest. */
export const ImageManifest = Schema.Struct({
  schemaVersion: Schema.Int,
  mediaType: Schema.optional(Schema.String),
  config: Descriptor,
  layers: Schema.Array(Descriptor)
})
export type ImageManifest = typeof ImageManifest.Type

const Strings = Schema.NullOr(Schema.Array(Schema.String))

/**
 * The runtime defaults an image carries (the `config` object of an image
 * config): what a container is created with, and what Docker shows of it.
 */
export const ContainerDefaults = Schema.Struct({
  User: Schema.optional(Schema.String),
  ExposedPorts: Schema.optional(Schema.NullOr(Schema.Record(Schema.String, Schema.Unknown))),
  Env: Schema.optional(Strings),
  Entrypoint: Schema.optional(Strings),
  Cmd: Schema.optional(Strings),
  Volumes: Schema.optional(Schema.NullOr(Schema.Record(Schema.String, Schema.Unknown))),
  WorkingDir: Schema.optional(Schema.String),
  Labels: Schema.optional(Schema.NullOr(Schema.Record(Schema.String, Schema.String))),
  StopSignal: Schema.optional(Schema.String),
  ArgsEscaped: Schema.optional(Schema.Boolean),
  Healthcheck: Schema.optional(Schema.Unknown),
  OnBuild: Schema.optional(Strings),
  Shell: Schema.optional(Strings)
})
export type ContainerDefaults = typeof ContainerDefaults.Type

/** One step of an image's build history, as its config records it. */
export const HistoryEntry = Schema.Struct({
  created: Schema.optional(Schema.String),
  created_by: Schema.optional(Schema.String),
  author: Schema.optional(Schema.String),
  comment: Schema.optional(Schema.String),
  empty_layer: Schema.optional(Schema.Boolean)
})
export type HistoryEntry = typeof HistoryEntry.Type

/** An image config document. */
export const ImageConfig = Schema.Struct({
  /** When the image was built (RFC 3339), if the config says. */
  created: Schema.optional(Schema.String),
  author: Schema.optional(Schema.String),
  /** What made it, as `docker commit -m` and `docker import -m` write it (Docker's `Comment`). */
  comment: Schema.optional(Schema.String),
  architecture: Schema.String,
  os: Schema.String,
  variant: Schema.optional(Schema.String),
  config: Schema.optional(Schema.NullOr(ContainerDefaults)),
  rootfs: Schema.Struct({ type: Schema.String, diff_ids: Schema.Array(Schema.String) }),
  history: Schema.optional(Schema.NullOr(Schema.Array(HistoryEntry)))
})
export type ImageConfig = typeof ImageConfig.Type

/** The platform this process runs on, in OCI terms. */
export const hostPlatform = (): Platform => {
  switch (process.arch) {
    case "x64":
      return { os: "linux", architecture: "amd64" }
    case "arm64":
      return { os: "linux", architecture: "arm64", variant: "v8" }
    case "arm":
      return { os: "linux", architecture: "arm", variant: "v7" }
    default:
      return { os: "linux", architecture: process.arch }
  }
}

/** Whether a manifest's platform runs on `want` (a missing variant matches any). */
export const platformMatches = (have: Platform | undefined, want: Platform): boolean =>
  have !== undefined &&
  have.os === want.os &&
  have.architecture === want.architecture &&
  (have.variant === undefined || want.variant === undefined || have.variant === want.variant)

/** A platform as people write it: `linux/arm64/v8`. */
export const describePlatform = (platform: Platform): string =>
  `${platform.os}/${platform.architecture}${platform.variant === undefined ? "" : `/${platform.variant}`}`

/** The manifest an index lists for `platform`, if any. */
export const selectManifest = (index: ImageIndex, platform: Platform): Descriptor | undefined =>
  index.manifests.find((m) => isManifestMediaType(m.mediaType) && platformMatches(m.platform, platform))

/**
 * The chain ID of a stack of layers (OCI image spec): the first layer's diff ID,
 * then sha256 of "<previous chain ID> <diff ID>" for each further layer. It names
 * the committed snapshot holding the stack unpacked.
 */
export const chainId = (diffIds: ReadonlyArray<string>): string =>
  diffIds.reduce((parent, diffId) =>
    parent === "" ? diffId : `sha256:${crypto.createHash("sha256").update(`${parent} ${diffId}`).digest("hex")}`, "")
