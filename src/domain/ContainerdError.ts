/**
 * The one error type of the containerd boundary.
 *
 * containerd reports failures as gRPC statuses and its Go client turns them into
 * `errdefs` values (ErrNotFound, ErrAlreadyExists, ...). `ContainerdError` does the
 * same with a tagged `reason`, so callers match on `reason._tag` (or with
 * `Effect.catchReason`) instead of on status codes. Checks we make before calling
 * containerd (bad ids, unknown images) use the same reasons, so a caller handles
 * "invalid argument" once whether containerd or we noticed it.
 */
import { Schema } from "effect"

const ReasonFields = {
  /** The RPC (`/containerd.services.tasks.v1.Tasks/Start`) or library operation that failed. */
  method: Schema.String,
  /** containerd's own message where it sent one, e.g. `container "web": not found`. */
  message: Schema.String,
  /** The gRPC status code, or -1 when the error was raised before any call. */
  code: Schema.Int,
  cause: Schema.optional(Schema.Defect())
}

/** The object does not exist (errdefs.ErrNotFound, gRPC NOT_FOUND). */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", ReasonFields) {}
/** The object already exists (errdefs.ErrAlreadyExists, gRPC ALREADY_EXISTS). */
export class AlreadyExists extends Schema.TaggedError<AlreadyExists>()("AlreadyExists", ReasonFields) {}
/** The request was malformed (errdefs.ErrInvalidArgument, gRPC INVALID_ARGUMENT). */
export class InvalidArgument extends Schema.TaggedError<InvalidArgument>()("InvalidArgument", ReasonFields) {}
/** The object is not in a state that allows the call, e.g. deleting a running task. */
export class FailedPrecondition extends Schema.TaggedError<FailedPrecondition>()("FailedPrecondition", ReasonFields) {}
/** containerd could not be reached; `address` names the socket that was tried. */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", {
  ...ReasonFields,
  address: Schema.String
}) {}
/** The call's deadline passed before containerd answered. */
export class DeadlineExceeded extends Schema.TaggedError<DeadlineExceeded>()("DeadlineExceeded", ReasonFields) {}
/** The call was cancelled (by us on interruption, or by the server). */
export class Canceled extends Schema.TaggedError<Canceled>()("Canceled", ReasonFields) {}
/** containerd does not implement the method (an older daemon, a disabled plugin). */
export class Unimplemented extends Schema.TaggedError<Unimplemented>()("Unimplemented", ReasonFields) {}
/** A limit was hit, such as the maximum message size. */
export class ResourceExhausted extends Schema.TaggedError<ResourceExhausted>()("ResourceExhausted", ReasonFields) {}
/** Anything else; `code` keeps the original gRPC status. */
export class Unknown extends Schema.TaggedError<Unknown>()("Unknown", ReasonFields) {}

/** Every reason a containerd operation can fail for. */
export const ContainerdErrorReason = Schema.Union([
  NotFound,
  AlreadyExists,
  InvalidArgument,
  FailedPrecondition,
  Unavailable,
  DeadlineExceeded,
  Canceled,
  Unimplemented,
  ResourceExhausted,
  Unknown
])

/** The union of reason values. */
export type ContainerdErrorReason = typeof ContainerdErrorReason.Type

const retryable: ReadonlySet<ContainerdErrorReason["_tag"]> = new Set([
  "Unavailable",
  "DeadlineExceeded",
  "ResourceExhausted"
])

/** A failed containerd operation; see `reason` for what went wrong. */
export class ContainerdError extends Schema.TaggedError<ContainerdError>()("ContainerdError", {
  reason: ContainerdErrorReason
}) {
  override readonly cause = this.reason

  override get message(): string {
    return `${this.reason.method}: ${this.reason.message}`
  }

  /** Whether the same call may succeed later (unavailable, deadline, resource limits). */
  get isRetryable(): boolean {
    return retryable.has(this.reason._tag)
  }
}

/** gRPC status codes, by number (see grpc/status.proto). */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16
} as const

/** What a failed gRPC call reports: a status code and containerd's message. */
export interface GrpcStatus {
  readonly code: number
  readonly details: string
}

/**
 * Classifies a gRPC status the way containerd's `errdefs.FromGRPC` does. Codes with
 * no errdefs counterpart (PERMISSION_DENIED, INTERNAL, ...) become `Unknown` with the
 * code kept.
 */
export const fromGrpcStatus = (
  status: GrpcStatus,
  context: { readonly method: string; readonly address: string; readonly cause?: unknown }
): ContainerdError => {
  const fields = { method: context.method, message: status.details, code: status.code, cause: context.cause }
  const reason = (() => {
    switch (status.code) {
      case GrpcCode.NOT_FOUND:
        return new NotFound(fields)
      case GrpcCode.ALREADY_EXISTS:
        return new AlreadyExists(fields)
      case GrpcCode.INVALID_ARGUMENT:
        return new InvalidArgument(fields)
      case GrpcCode.FAILED_PRECONDITION:
        return new FailedPrecondition(fields)
      case GrpcCode.UNAVAILABLE:
        return new Unavailable({
          ...fields,
          message: `containerd at ${context.address} is unavailable: ${status.details}`,
          address: context.address
        })
      case GrpcCode.DEADLINE_EXCEEDED:
        return new DeadlineExceeded(fields)
      case GrpcCode.CANCELLED:
        return new Canceled(fields)
      case GrpcCode.UNIMPLEMENTED:
        return new Unimplemented(fields)
      case GrpcCode.RESOURCE_EXHAUSTED:
        return new ResourceExhausted(fields)
      default:
        return new Unknown(fields)
    }
  })()
  return new ContainerdError({ reason })
}

/** A malformed request we reject ourselves, before any call or state change. */
export const invalidArgument = (method: string, message: string): ContainerdError =>
  new ContainerdError({ reason: new InvalidArgument({ method, message, code: -1 }) })

/** An operation of ours that gave up waiting, e.g. for the event subscription to go live. */
export const deadlineExceeded = (method: string, message: string): ContainerdError =>
  new ContainerdError({ reason: new DeadlineExceeded({ method, message, code: -1 }) })

/** A missing object found by our own lookup (e.g. an image with no manifest for this platform). */
export const notFound = (method: string, message: string): ContainerdError =>
  new ContainerdError({ reason: new NotFound({ method, message, code: -1 }) })

/** A state that forbids the operation, found by our own check (e.g. deleting a container with a task). */
export const failedPrecondition = (method: string, message: string): ContainerdError =>
  new ContainerdError({ reason: new FailedPrecondition({ method, message, code: -1 }) })

/** An object that exists already, found by our own check (e.g. a host port another container publishes). */
export const alreadyExists = (method: string, message: string): ContainerdError =>
  new ContainerdError({ reason: new AlreadyExists({ method, message, code: -1 }) })

/** Something containerd sent that this library does not handle yet (e.g. cgroup v2 metrics). */
export const unimplemented = (method: string, message: string): ContainerdError =>
  new ContainerdError({ reason: new Unimplemented({ method, message, code: -1 }) })

/** A payload containerd sent that does not decode as what its type URL says. */
export const unknown = (method: string, message: string, cause?: unknown): ContainerdError =>
  new ContainerdError({ reason: new Unknown({ method, message, code: -1, cause }) })
