/**
 * Where a pull's or an import's documents and blobs come from: a registry (one
 * reference's repository) or an OCI image layout (a directory or tar archive),
 * behind one interface so that planning and storing do not care which. Also
 * the name an archive's image is stored under.
 */
import { Effect, type Stream } from "effect"
import * as crypto from "node:crypto"
import { type ContainerdError, invalidArgument, notFound } from "../../domain/ContainerdError.ts"
import type { Descriptor } from "../../domain/Image.ts"
import { parseReference, type Reference } from "../../domain/Reference.ts"
import {
  InvalidArgument as RegistryInvalidArgument,
  NotFound as RegistryNotFound,
  type RegistryError,
  registryError
} from "../../domain/RegistryError.ts"
import type { OciLayout } from "../../internal/OciArchive.ts"
import { MAX_DOCUMENT_BYTES, type Registry } from "../Registry.ts"
import { Labels } from "./Labels.ts"

/** Where an image's documents and blobs come from: a registry, or an OCI layout. */
export interface Source<E> {
  /** What is being stored, for messages: the reference or the archive. */
  readonly label: string
  /** Reads a document whole, checked against its descriptor. */
  readonly document: (descriptor: Descriptor) => Effect.Effect<Uint8Array, E>
  /** Streams a blob from `offset`. */
  readonly blob: (descriptor: Descriptor, offset: number) => Stream.Stream<Uint8Array, E>
  /** Labels for every blob written (where it came from). */
  readonly blobLabels: Readonly<Record<string, string>>
  /** Whether a failure leaves an ingest worth resuming. */
  readonly resumable: (error: E) => boolean
  /** The source's error for a malformed or unsupported image, or a missing platform. */
  readonly invalid: (message: string) => E
  readonly notFound: (message: string) => E
}

/** The registry as a source of one reference's blobs. */
export const registrySource = (registry: Registry["Service"], reference: Reference): Source<RegistryError> => ({
  label: reference.toString(),
  document: (descriptor) => registry.fetchDocument(reference, descriptor),
  blob: (descriptor, offset) => registry.fetchBlob(reference, descriptor, { offset }),
  blobLabels: { [Labels.distributionSource(reference.domain)]: reference.path },
  resumable: (error) => error.reason._tag === "Unavailable" || error.reason._tag === "DeadlineExceeded",
  invalid: (message) => registryError(RegistryInvalidArgument, reference.toString(), message),
  notFound: (message) => registryError(RegistryNotFound, reference.toString(), message)
})

const sha256 = (bytes: Uint8Array) => `sha256:${crypto.createHash("sha256").update(bytes).digest("hex")}`

/** An opened OCI layout at `path` as a source; documents are checked against their digest and size as they are read. */
export const archiveSource = (layout: OciLayout, path: string): Source<ContainerdError> => {
  const fail = (message: string) => invalidArgument("Images.import", `${path}: ${message}`)
  const blobPath = (descriptor: Descriptor) => `blobs/${descriptor.digest.replace(":", "/")}`
  return {
    label: path,
    document: (descriptor) =>
      layout.read(blobPath(descriptor), MAX_DOCUMENT_BYTES).pipe(
        Effect.filterOrFail(
          (bytes) => bytes.length === descriptor.size && sha256(bytes) === descriptor.digest,
          () => fail(`${blobPath(descriptor)} does not match its digest and size`)
        )
      ),
    // containerd checks the digest and size of every blob when it commits it.
    blob: (descriptor, offset) => layout.stream(blobPath(descriptor), offset),
    blobLabels: {},
    resumable: () => false,
    invalid: fail,
    notFound: (message) => notFound("Images.import", `${path}: ${message}`)
  }
}

/** The name an archive's image is stored under, from its annotations and the caller's name. */
export const importName = (
  annotations: Readonly<Record<string, string>> | undefined,
  fallback: string | undefined
): Effect.Effect<Reference, ContainerdError> => {
  const full = annotations?.[Labels.imageName]
  if (full !== undefined) return parseReference(full, "Images.import")
  const refName = annotations?.[Labels.ociRefName]
  if (refName !== undefined) {
    // A bare tag (`latest`, as `skopeo copy … oci:dir:latest` writes) names only the tag.
    if (/^[\w][\w.-]{0,127}$/.test(refName) && fallback !== undefined) {
      return Effect.map(parseReference(fallback, "Images.import"), (reference) => reference.withTag(refName))
    }
    return parseReference(refName, "Images.import")
  }
  return fallback === undefined
    ? Effect.fail(invalidArgument("Images.import", "the archive does not name an image: pass options.name"))
    : parseReference(fallback, "Images.import")
}
