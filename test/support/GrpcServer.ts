/**
 * A grpc-js server on a temporary unix socket, serving handlers for our generated
 * service definitions. Used where a test must observe the wire itself (a call
 * cancelled by interruption, a server that never answers), which containerd does
 * not expose.
 */
import * as grpc from "@grpc/grpc-js"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, type Scope } from "effect"
import type { ServiceDefinition } from "../../src/internal/Grpc.ts"

const toGrpcDefinition = (service: ServiceDefinition): grpc.ServiceDefinition =>
  Object.fromEntries(
    Object.entries(service.methods).map(([key, method]) => [key, {
      path: `/${service.fullName}/${method.name}`,
      originalName: method.name,
      requestStream: method.requestStream,
      responseStream: method.responseStream,
      requestSerialize: (value: unknown) => Buffer.from(method.requestType.encode(value).finish()),
      requestDeserialize: (bytes: Buffer) => method.requestType.decode(bytes),
      responseSerialize: (value: unknown) =>
        Buffer.from(method.responseType.encode(method.responseType.fromPartial(value as never)).finish()),
      responseDeserialize: (bytes: Buffer) => method.responseType.decode(bytes)
    }])
  )

/** Serves `handlers` for `service` on a fresh unix socket; returns its path. */
export const serveGrpc = (
  service: ServiceDefinition,
  handlers: grpc.UntypedServiceImplementation
): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<{ server: grpc.Server; dir: string; socket: string }>((resume) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-grpc-"))
      const socket = path.join(dir, "s.sock")
      const server = new grpc.Server()
      server.addService(toGrpcDefinition(service), handlers)
      server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (error) =>
        resume(error ? Effect.die(error) : Effect.succeed({ server, dir, socket })))
    }),
    ({ server, dir }) =>
      Effect.sync(() => {
        server.forceShutdown()
        fs.rmSync(dir, { recursive: true, force: true })
      })
  ).pipe(Effect.map(({ socket }) => socket))
