/**
 * A counting gRPC proxy: a grpc-js server on its own unix socket that forwards
 * every call, bytes untouched, to containerd and counts the calls by method. It
 * sees what crosses the wire, independently of the client's own counter, so RPC
 * budgets are checked from both sides.
 *
 * It also injects faults, so failure paths are tested against the real
 * containerd: fail the next N calls of a method (without forwarding them), delay
 * every call of a method, hold one call — before it is forwarded, or after
 * containerd answered — until the test releases it, or cut the open streams of
 * a method. Methods are named by the end of their path, e.g. "Tasks/Get".
 */
import * as grpc from "@grpc/grpc-js"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Deferred, Effect, type Scope } from "effect"
import type { ServiceDefinition } from "../../src/internal/Grpc.ts"

const identity = (buffer: Buffer) => buffer

/** A call held by the proxy until the test releases it. */
export interface Hold {
  /** Completes once a call is being held. */
  readonly arrived: Effect.Effect<void>
  /** Lets the held call (and any later one) go on. */
  readonly release: Effect.Effect<void>
  /**
   * Answers a call held before forwarding with UNAVAILABLE, never forwarding it: as if the
   * connection died with its caller (a client killed meanwhile must not have its call made later).
   */
  readonly drop: Effect.Effect<void>
}

/** A running proxy. */
export interface GrpcProxy {
  /** Its socket path, to give the client. */
  readonly address: string
  /** Calls seen so far, by method path. */
  readonly counts: () => ReadonlyMap<string, number>
  /** Unary calls seen so far, in order, with when they started and ended (ms since the epoch). */
  readonly timeline: () => ReadonlyArray<TimedCall>
  /** Fails the next `count` calls of `method` with `code` (default UNAVAILABLE) without forwarding them. */
  readonly failNext: (method: string, count: number, code?: grpc.status) => Effect.Effect<void>
  /** Delays every later call of `method` by `millis` before forwarding it (0 to stop). */
  readonly delay: (method: string, millis: number) => Effect.Effect<void>
  /**
   * Holds the next call of `method`: before forwarding it ("request"), or once
   * containerd has answered and before the answer is passed on ("response").
   */
  readonly hold: (method: string, at: "request" | "response") => Effect.Effect<Hold>
  /** Ends every open server stream of `method` with UNAVAILABLE, as a dropped connection does. */
  readonly cut: (method: string) => Effect.Effect<void>
  /** How many calls of `method` were failed on purpose so far. */
  readonly injected: (method: string) => number
}

/** A unary call as the proxy saw it. */
export interface TimedCall {
  readonly method: string
  readonly start: number
  readonly end: number
}

const now = () => performance.timeOrigin + performance.now()

interface Faults {
  readonly failures: Map<string, { remaining: number; readonly code: grpc.status }>
  readonly injected: Map<string, number>
  readonly delays: Map<string, number>
  readonly holds: Map<string, { readonly at: "request" | "response"; readonly arrived: () => void; readonly released: Promise<boolean> }>
  /** Open server streams, by method path, with how to cut each. */
  readonly streams: Map<string, Set<() => void>>
}

const matching = <V>(map: Map<string, V>, methodPath: string): [string, V] | undefined => {
  for (const entry of map) if (methodPath.endsWith(`/${entry[0]}`) || methodPath.endsWith(`.${entry[0]}`)) return entry
  return undefined
}

/**
 * What happens to a call before it is forwarded: a failure to answer with, or
 * when to go on, and a gate for its answer.
 */
const intercept = (faults: Faults, methodPath: string) => {
  const failure = matching(faults.failures, methodPath)
  if (failure !== undefined && failure[1].remaining > 0) {
    failure[1].remaining--
    faults.injected.set(failure[0], (faults.injected.get(failure[0]) ?? 0) + 1)
    return {
      error: Object.assign(new Error(`injected by the test proxy`), {
        code: failure[1].code,
        details: `${methodPath} failed on purpose (test proxy)`
      }) as grpc.ServiceError
    }
  }
  const delay = matching(faults.delays, methodPath)?.[1] ?? 0
  const hold = matching(faults.holds, methodPath)
  /** Resolves with whether to forward the call. */
  let before: Promise<boolean> = delay > 0 ? new Promise((resolve) => setTimeout(() => resolve(true), delay)) : Promise.resolve(true)
  let after: Promise<unknown> = Promise.resolve()
  if (hold !== undefined) {
    faults.holds.delete(hold[0])
    const { arrived, at, released } = hold[1]
    if (at === "request") before = before.then(() => (arrived(), released))
    else after = released
    if (at === "response") return { before, after, onAnswer: arrived }
  }
  return { before, after, onAnswer: () => {} }
}

const forward = (
  upstream: grpc.Client,
  methodPath: string,
  faults: Faults,
  count: () => void,
  timed: (call: TimedCall) => void,
  method: { requestStream: boolean; responseStream: boolean }
) => {
  const options = (call: { getDeadline(): grpc.Deadline }) => ({ deadline: call.getDeadline() })
  if (!method.requestStream && !method.responseStream) {
    return (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      count()
      const start = now()
      const fault = intercept(faults, methodPath)
      if ("error" in fault) return callback(fault.error)
      const dropped = Object.assign(new Error("dropped by the test proxy"), {
        code: grpc.status.UNAVAILABLE,
        details: `${methodPath} dropped by the test proxy`
      }) as grpc.ServiceError
      void fault.before.then((forwarded) =>
        !forwarded ? callback(dropped) : upstream.makeUnaryRequest(methodPath, identity, identity, call.request, call.metadata, options(call), (error, value) => {
          fault.onAnswer()
          void fault.after.then(() => {
            timed({ method: methodPath, start, end: now() })
            callback(error, value)
          })
        })
      )
    }
  }
  if (!method.requestStream) {
    return (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      count()
      const fault = intercept(faults, methodPath)
      if ("error" in fault) return call.emit("error", fault.error)
      void fault.before.then((forwarded) => {
        if (!forwarded) return call.emit("error", Object.assign(new Error("dropped by the test proxy"), { code: grpc.status.UNAVAILABLE }))
        const up = upstream.makeServerStreamRequest(methodPath, identity, identity, call.request, call.metadata, options(call))
        const open = faults.streams.get(methodPath) ?? new Set()
        faults.streams.set(methodPath, open)
        let ended = false
        const end = (finish: () => void) => {
          open.delete(cut)
          if (!ended) finish()
          ended = true
        }
        const cut = () =>
          end(() => {
            call.emit("error", Object.assign(new Error("cut by the test proxy"), {
              code: grpc.status.UNAVAILABLE,
              details: "cut by the test proxy"
            }))
            up.cancel()
          })
        open.add(cut)
        up.on("data", (chunk: Buffer) => call.write(chunk))
        up.on("end", () => end(() => call.end()))
        up.on("error", (error) => end(() => call.emit("error", error)))
        call.on("cancelled", () => end(() => up.cancel()))
      })
    }
  }
  return (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    count()
    const up = upstream.makeBidiStreamRequest(methodPath, identity, identity, call.metadata, options(call))
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
    Effect.callback<{ proxy: GrpcProxy; server: grpc.Server; upstream: grpc.Client; dir: string; release: () => void }>(
      (resume) => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-proxy-"))
        const address = path.join(dir, "proxy.sock")
        const upstream = new grpc.Client(`unix://${target}`, grpc.credentials.createInsecure(), {
          "grpc.max_receive_message_length": 16 * 1024 * 1024,
          "grpc.max_send_message_length": 16 * 1024 * 1024
        })
        const counts = new Map<string, number>()
        const calls: Array<TimedCall> = []
        const faults: Faults = { failures: new Map(), injected: new Map(), delays: new Map(), holds: new Map(), streams: new Map() }
        /** Releases of every hold made, so none outlives the proxy. */
        const releases: Array<() => void> = []
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
              faults,
              () => counts.set(methodPath, (counts.get(methodPath) ?? 0) + 1),
              (call) => calls.push(call),
              method
            ) as grpc.UntypedHandleCall
          }
          server.addService(definition, handlers)
        }
        const proxy: GrpcProxy = {
          address,
          counts: () => new Map(counts),
          timeline: () => [...calls],
          failNext: (method, count, code = grpc.status.UNAVAILABLE) =>
            Effect.sync(() => void faults.failures.set(method, { remaining: count, code })),
          delay: (method, millis) => Effect.sync(() => void faults.delays.set(method, millis)),
          hold: (method, at) =>
            Effect.gen(function*() {
              const arrived = yield* Deferred.make<void>()
              let settle!: (forward: boolean) => void
              const released = new Promise<boolean>((resolve) => (settle = resolve))
              const release = () => settle(true)
              releases.push(release)
              faults.holds.set(method, { at, arrived: () => Deferred.doneUnsafe(arrived, Effect.void), released })
              return {
                arrived: Deferred.await(arrived),
                release: Effect.sync(() => {
                  faults.holds.delete(method)
                  release()
                }),
                drop: Effect.sync(() => {
                  faults.holds.delete(method)
                  settle(false)
                })
              }
            }),
          cut: (method) =>
            Effect.sync(() => {
              for (const [methodPath, open] of faults.streams) {
                if (methodPath.endsWith(`/${method}`) || methodPath.endsWith(`.${method}`)) [...open].forEach((cut) => cut())
              }
            }),
          injected: (method) => faults.injected.get(method) ?? 0
        }
        server.bindAsync(`unix://${address}`, grpc.ServerCredentials.createInsecure(), (error) =>
          resume(error ? Effect.die(error) : Effect.succeed({
            proxy,
            server,
            upstream,
            dir,
            release: () => releases.forEach((r) => r())
          })))
      }
    ),
    ({ dir, release, server, upstream }) =>
      Effect.sync(() => {
        release()
        server.forceShutdown()
        upstream.close()
        fs.rmSync(dir, { recursive: true, force: true })
      })
  ).pipe(Effect.map(({ proxy }) => proxy))
