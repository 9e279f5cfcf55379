/**
 * The daemon's one error type: what the Docker Engine API answers with, a status
 * code and a message (`{"message": "..."}`), classified as dockerd's errdefs
 * are (`errdefs.InvalidParameter` → 400, `NotFound` → 404, `Conflict` → 409, ...).
 *
 * Library errors are mapped once, here: containerd's reasons and the registry's
 * have the same meaning on this side of the API.
 */
import { Effect, Result, Schema } from "effect"
import type { ContainerdError } from "../domain/ContainerdError.ts"
import type { RegistryError } from "../domain/RegistryError.ts"

/** The Docker status classes the daemon answers with. */
export const DockerStatus = Schema.Literals([400, 401, 403, 404, 409, 413, 500, 501, 503])
export type DockerStatus = typeof DockerStatus.Type

/** A failed Docker API operation: `status` is its HTTP status, `message` what the client prints. */
export class DockerError extends Schema.TaggedError<DockerError>()("DockerError", {
  status: DockerStatus,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/** 400: the request is malformed (dockerd's errdefs.InvalidParameter). */
export const badRequest = (message: string) => new DockerError({ status: 400, message })

/** A parser's answer: its value, or a 400 with its message. */
export const orBadRequest = <A>(result: Result.Result<A, string>): Effect.Effect<A, DockerError> =>
  Result.match(result, { onSuccess: Effect.succeed, onFailure: (message) => Effect.fail(badRequest(message)) })
/** 404: no such container or image (dockerd's errdefs.NotFound). */
export const notFound = (message: string) => new DockerError({ status: 404, message })
/** 409: the object is in a state or has a name that forbids the call (errdefs.Conflict). */
export const conflict = (message: string) => new DockerError({ status: 409, message })
/** 413: a request body over the daemon's limit (dockerd has none; a JSON body here has one). */
export const tooLarge = (message: string) => new DockerError({ status: 413, message })
/** 500: anything else (errdefs.System). */
export const internal = (message: string, cause?: unknown) => new DockerError({ status: 500, message, cause })

const containerdStatus: Record<ContainerdError["reason"]["_tag"], DockerStatus> = {
  NotFound: 404,
  AlreadyExists: 409,
  InvalidArgument: 400,
  FailedPrecondition: 409,
  Unavailable: 503,
  DeadlineExceeded: 500,
  Canceled: 500,
  Unimplemented: 501,
  ResourceExhausted: 500,
  Unknown: 500
}

const registryStatus: Record<RegistryError["reason"]["_tag"], DockerStatus> = {
  NotFound: 404,
  Unauthorized: 401,
  InvalidArgument: 400,
  DataLoss: 500,
  Unavailable: 503,
  DeadlineExceeded: 500,
  ResourceExhausted: 500,
  Unknown: 500
}

/** A library error as the Docker API reports it; `context` is prefixed to the message where given. */
export const fromLibrary = (error: ContainerdError | RegistryError, context?: string): DockerError => {
  const status = error._tag === "ContainerdError"
    ? containerdStatus[error.reason._tag]
    : registryStatus[error.reason._tag]
  // A registry error names its reference; containerd's message names its object.
  const message = error._tag === "RegistryError" ? error.message : error.reason.message
  return new DockerError({ status, message: context === undefined ? message : `${context}: ${message}`, cause: error })
}
