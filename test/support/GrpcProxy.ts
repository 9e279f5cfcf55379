/**
 * A counting gRPC proxy: a grpc-js server on its own unix socket that forwards
 * every call, bytes untouched, to containerd and counts the calls by method. It
 * sees what crosses the wire, independently of the client's own counter, so RPC
 * budgets are checked from both sides.
 */
import * as grpc from "@grpc/grpc-js"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, type Scope } from "effect"
import type { ServiceDefinition } from "../../src/internal/Grpc.ts"

const identity = (buffer: Buffer) => buffer

/** A running proxy. */
export interface GrpcProxy {
  /** Its socket path, to give the client. */
  readonly address: string
  /** Calls seen so far, by method path. */
  readonly counts: () => ReadonlyMap<string, number>
  /** Unary calls seen so far, in order, with when they started and ended (ms since the epoch). */
  readonly timeline: () => ReadonlyArray<TimedCall>
}

/** A unary call as the proxy saw it. */
export interface TimedCall {
  readonly method: string
  readonly start: number
  readonly end: number
}

const now = () => performance.timeOrigin + performance.now()


const forward = (
  upstream: grpc.Client,
  path: string,
  count: () => void,
  timed: (call: TimedCall) => void,
  method: { requestStream: boolean; responseStream: boolean }
) => {
  const options = (call: { getDeadline(): grpc.Deadline }) => ({ deadline: call.getDeadline() })
  if (!method.requestStream && !method.responseStream) {
    return (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      count()
      const start = now()
      upstream.makeUnaryRequest(path, identity, identity, call.request, call.metadata, options(call), (error, value) => {
        timed({ method: path, start, end: now() })
        callback(error, value)
      })
    }
  }
  if (!method.requestStream) {
    return (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      count()
      const up = upstream.makeServerStreamRequest(path, identity, identity, call.request, call.metadata, options(call))
      up.on("data", (chunk: Buffer) => call.write(chunk))
      up.on("end", () => call.end())
      up.on("error", (error) => call.emit("error", error))
      call.on("cancelled", () => up.cancel())
    }
  }
  return (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    count()
    const up = upstream.makeBidiStreamRequest(path, identity, identity, call.metadata, options(call))
    call.on("data", (chunk: Buffer) => up.write(chunk))
    call.on("end", () => up.end())
    call.on("cancelled", () => up.cancel())
    up.on("data", (chunk: Buffer) => call.write(chunk))
    up.on("end", () => call.end())
    up.on("error", (error) => call.emit("error", error))
  }
}

/** Starts a proxy for `services` in front of the containerd at `target` (a socket path). */
export const startGrpcProxy = (
  target: string,
  services: ReadonlyArray<ServiceDefinition>
): Effect.Effect<GrpcProxy, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<{ proxy: GrpcProxy; server: grpc.Server; upstream: grpc.Client; dir: string }>((resume) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-proxy-"))
      const address = path.join(dir, "proxy.sock")
      const upstream = new grpc.Client(`unix://${target}`, grpc.credentials.createInsecure(), {
        "grpc.max_receive_message_length": 16 * 1024 * 1024,
        "grpc.max_send_message_length": 16 * 1024 * 1024
      })
      const counts = new Map<string, number>()
      const calls: Array<TimedCall> = []
      const server = new grpc.Server({
        "grpc.max_receive_message_length": 16 * 1024 * 1024,
        "grpc.max_send_message_length": 16 * 1024 * 1024
      })
      for (const service of services) {
        const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {}
        const handlers: grpc.UntypedServiceImplementation = {}
        for (const [key, method] of Object.entries(service.methods)) {
          const methodPath = `/${service.fullName}/${method.name}`
          definition[key] = {
            path: methodPath,
            originalName: method.name,
            requestStream: method.requestStream,
            responseStream: method.responseStream,
            requestSerialize: identity,
            requestDeserialize: identity,
            responseSerialize: identity,
            responseDeserialize: identity
          }
          handlers[key] = forward(
            upstream,
            methodPath,
            () => counts.set(methodPath, (counts.get(methodPath) ?? 0) + 1),
            (call) => calls.push(call),
            method
          ) as grpc.UntypedHandleCall
        }
        server.addService(definition, handlers)
      }
      server.bindAsync(`unix://${address}`, grpc.ServerCredentials.createInsecure(), (error) =>
        resume(error ? Effect.die(error) : Effect.succeed({
          proxy: { address, counts: () => new Map(counts), timeline: () => [...calls] },
          server,
          upstream,
          dir
        })))
    }),
    ({ dir, server, upstream }) =>
      Effect.sync(() => {
        server.forceShutdown()
        upstream.close()
        fs.rmSync(dir, { recursive: true, force: true })
      })
  ).pipe(Effect.map(({ proxy }) => proxy))
