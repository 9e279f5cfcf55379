/**
 * A generic gRPC transport over one grpc-js channel.
 *
 * ts-proto's generic definitions describe every method with its request and
 * response message types; this module turns a definition into an object of Effect
 * functions, so all services share one channel and one implementation of
 * metadata, deadlines, cancellation, error mapping and counting. Unary methods
 * become `Effect`s, server streams `Stream`s, and bidirectional streams functions
 * from a request `Stream` to a response `Stream` (containerd has no client-only
 * streams).
 */
import { NodeStream } from "@effect/platform-node"
import type * as grpc from "@grpc/grpc-js"
import { Duration, Effect, Stream } from "effect"
import type { Duplex } from "node:stream"
import type { MessageType } from "../domain/Any.ts"
import { type ContainerdError, fromGrpcStatus, GrpcCode } from "../domain/ContainerdError.ts"

/** A method as described by ts-proto's `outputServices=generic-definitions`. */
export interface MethodDefinition {
  readonly name: string
  readonly requestType: MessageType<any>
  readonly requestStream: boolean
  readonly responseType: MessageType<any>
  readonly responseStream: boolean
}

/** A service as described by ts-proto's `outputServices=generic-definitions`. */
export interface ServiceDefinition {
  readonly fullName: string
  readonly methods: { readonly [name: string]: MethodDefinition }
}

/** The partial request a method accepts: any subset of fields, the rest defaulted. */
export type RequestOf<M extends MethodDefinition> = Parameters<M["requestType"]["fromPartial"]>[0]
/** The decoded response of a method. */
export type ResponseOf<M extends MethodDefinition> = ReturnType<M["responseType"]["decode"]>

/** Per-call options. */
export interface CallOptions {
  /**
   * The call's deadline, counted from when it starts. Unary calls default to the
   * client's timeout; streams have none unless one is given. `Duration.infinity`
   * removes the deadline (e.g. for `Tasks.Wait`).
   */
  readonly timeout?: Duration.Input | undefined
}

/** The Effect form of one method, chosen by its streaming shape. */
export type MethodClient<M extends MethodDefinition> = M["requestStream"] extends true
  ? M["responseStream"] extends true ? <E = never, R = never>(
      requests: Stream.Stream<RequestOf<M>, E, R>,
      options?: CallOptions
    ) => Stream.Stream<ResponseOf<M>, ContainerdError | E, R>
  : never
  : M["responseStream"] extends true
    ? (request?: RequestOf<M>, options?: CallOptions) => Stream.Stream<ResponseOf<M>, ContainerdError>
  : (request?: RequestOf<M>, options?: CallOptions) => Effect.Effect<ResponseOf<M>, ContainerdError>

/** The Effect form of a whole service. */
export type ServiceClient<S extends ServiceDefinition> = {
  readonly [K in keyof S["methods"]]: MethodClient<S["methods"][K]>
}

/** What every call needs from the client that owns the channel. */
export interface Transport {
  readonly channel: grpc.Client
  /** The address the channel dials, named in `Unavailable` errors. */
  readonly address: string
  /** The deadline applied to unary calls without their own timeout. */
  readonly defaultTimeout: Duration.Duration
  /** Builds the metadata of one call (namespace, lease) from the caller's context. */
  readonly metadata: Effect.Effect<grpc.Metadata>
  /** Runs once per call, before it is sent: the RPC counter. */
  readonly onCall: (path: string) => Effect.Effect<void>
}

const isServiceError = (u: unknown): u is grpc.ServiceError =>
  typeof u === "object" && u !== null && "code" in u && typeof u.code === "number" && "details" in u

const toError = (transport: Transport, path: string) => (cause: unknown): ContainerdError =>
  isServiceError(cause)
    ? fromGrpcStatus(cause, { method: path, address: transport.address, cause })
    : fromGrpcStatus({ code: GrpcCode.UNKNOWN, details: String(cause) }, {
      method: path,
      address: transport.address,
      cause
    })

const deadlineOf = (timeout: Duration.Input | undefined): grpc.Deadline => {
  if (timeout === undefined) return Infinity
  const millis = Duration.toMillis(Duration.fromInputUnsafe(timeout))
  return Number.isFinite(millis) ? Date.now() + millis : Infinity
}

/**
 * Cancels a streaming call on the wire. grpc-js reports the cancellation as an
 * `error` event, which must have a listener once the stream's own are gone.
 */
const cancelCall = (call: grpc.ClientReadableStream<unknown> | grpc.ClientDuplexStream<unknown, unknown>) =>
  Effect.sync(() => {
    call.on("error", () => {})
    call.cancel()
  })

const makeMethod = (transport: Transport, service: ServiceDefinition, method: MethodDefinition) => {
  const path = `/${service.fullName}/${method.name}`
  const serialize = (value: unknown): Buffer => {
    const bytes = method.requestType.encode(value).finish()
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }
  const deserialize = (bytes: Buffer): unknown => method.responseType.decode(bytes)
  const fromPartial = (request: unknown) => method.requestType.fromPartial((request ?? {}) as never)
  const fail = toError(transport, path)
  const start = Effect.flatMap(transport.onCall(path), () => transport.metadata)

  // containerd has no client-only streams, so every request stream is bidirectional.
  if (method.requestStream) {
    return (requests: Stream.Stream<unknown, unknown, unknown>, options?: CallOptions) =>
      Stream.unwrap(Effect.gen(function*() {
        const metadata = yield* start
        const call = yield* Effect.acquireRelease(
          Effect.sync(() =>
            transport.channel.makeBidiStreamRequest(path, serialize, deserialize, metadata, {
              deadline: deadlineOf(options?.timeout)
            })
          ),
          cancelCall
        )
        return NodeStream.pipeThroughDuplex(Stream.map(requests, fromPartial), {
          // grpc-js types its duplex call structurally; at run time it is a Node Duplex.
          evaluate: () => call as unknown as Duplex,
          onError: fail
        })
      }))
  }
  if (method.responseStream) {
    return (request?: unknown, options?: CallOptions) =>
      Stream.unwrap(Effect.gen(function*() {
        const metadata = yield* start
        const call = yield* Effect.acquireRelease(
          Effect.sync(() =>
            transport.channel.makeServerStreamRequest(path, serialize, deserialize, fromPartial(request), metadata, {
              deadline: deadlineOf(options?.timeout)
            })
          ),
          cancelCall
        )
        return NodeStream.fromReadable<unknown, ContainerdError>({ evaluate: () => call, onError: fail })
      }))
  }
  return (request?: unknown, options?: CallOptions) =>
    Effect.flatMap(start, (metadata) =>
      Effect.callback<unknown, ContainerdError>((resume) => {
        const call = transport.channel.makeUnaryRequest(
          path,
          serialize,
          deserialize,
          fromPartial(request),
          metadata,
          { deadline: deadlineOf(options?.timeout ?? transport.defaultTimeout) },
          (error, response) => resume(error ? Effect.fail(fail(error)) : Effect.succeed(response))
        )
        // Interruption cancels the call on the wire; its late callback is ignored.
        return Effect.sync(() => call.cancel())
      }))
}

/** Builds the Effect client of one service over the transport's channel. */
export const makeServiceClient = <S extends ServiceDefinition>(transport: Transport, service: S): ServiceClient<S> =>
  Object.fromEntries(
    Object.entries(service.methods).map(([key, method]) => [key, makeMethod(transport, service, method)])
  ) as ServiceClient<S>
