/**
 * The one error type of the registry boundary: what went wrong while resolving
 * or fetching an image, with the reference it was for.
 *
 * Reasons mirror containerd's errdefs as its remotes map registry answers onto
 * them (404 → NotFound, 401/403 → Unauthorized, ...), so callers match on
 * `reason._tag` the same way as for `ContainerdError`.
 */
import { Schema } from "effect"

const ReasonFields = {
  /** The reference being resolved or fetched, in full: `docker.io/library/busybox:latest`. */
  reference: Schema.String,
  message: Schema.String,
  /** The HTTP status that decided it, or 0 when there was no response. */
  status: Schema.Int,
  cause: Schema.optional(Schema.Defect())
}

/** The repository, tag, manifest, blob or platform does not exist (HTTP 404). */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", ReasonFields) {}
/** The registry refused our credentials or had none for us (HTTP 401, 403). */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", ReasonFields) {}
/** What the registry sent is not something we can use: unsupported media type, oversized, malformed. */
export class InvalidArgument extends Schema.TaggedError<InvalidArgument>()("InvalidArgument", ReasonFields) {}
/** Bytes did not match the digest or size they were fetched by. */
export class DataLoss extends Schema.TaggedError<DataLoss>()("DataLoss", ReasonFields) {}
/** The registry could not be reached, or kept failing (connection errors, HTTP 5xx). */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", ReasonFields) {}
/** The registry did not answer, or stopped sending, within the timeout. */
export class DeadlineExceeded extends Schema.TaggedError<DeadlineExceeded>()("DeadlineExceeded", ReasonFields) {}
/** The registry kept saying "too many requests" (HTTP 429) after every retry. */
export class ResourceExhausted extends Schema.TaggedError<ResourceExhausted>()("ResourceExhausted", ReasonFields) {}
/** Any other answer, such as too many redirects or an unexpected status. */
export class Unknown extends Schema.TaggedError<Unknown>()("Unknown", ReasonFields) {}

/** Every reason a registry operation can fail for. */
export const RegistryErrorReason = Schema.Union([
  NotFound,
  Unauthorized,
  InvalidArgument,
  DataLoss,
  Unavailable,
  DeadlineExceeded,
  ResourceExhausted,
  Unknown
])

/** The union of reason values. */
export type RegistryErrorReason = typeof RegistryErrorReason.Type

/** A failed registry operation; see `reason` for what went wrong. */
export class RegistryError extends Schema.TaggedError<RegistryError>()("RegistryError", {
  reason: RegistryErrorReason
}) {
  override readonly cause = this.reason

  override get message(): string {
    return `${this.reason.reference}: ${this.reason.message}`
  }
}

type ReasonClass = new(fields: {
  readonly reference: string
  readonly message: string
  readonly status: number
  readonly cause?: unknown
}) => RegistryErrorReason

/** Builds a `RegistryError` of one reason. */
export const registryError = (
  Reason: ReasonClass,
  reference: string,
  message: string,
  options?: { readonly status?: number; readonly cause?: unknown }
): RegistryError =>
  new RegistryError({
    reason: new Reason({ reference, message, status: options?.status ?? 0, cause: options?.cause })
  })
