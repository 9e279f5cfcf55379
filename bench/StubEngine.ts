/**
 * An engine that answers the docker CLI at once and does nothing: the requests
 * of `docker run -d`, `docker wait`, `docker rm`, `docker run --rm` and
 * `docker exec` get canned replies (an attach or exec start its 101 and an
 * immediate end). A CLI workload
 * timed against it is what the docker CLI costs on its own, the floor under
 * the same workload on any real engine.
 */
import { Effect, type Scope } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"

const ID = "0".repeat(64)

const reply = (res: http.ServerResponse, status: number, body?: unknown) => {
  res.writeHead(status, { "Api-Version": "1.47", "Content-Type": "application/json" })
  res.end(body === undefined ? undefined : JSON.stringify(body))
}

/** Serves the stub on a socket of a temporary directory; closed with the scope. */
export const startStubEngine: Effect.Effect<{ readonly socket: string }, never, Scope.Scope> = Effect.acquireRelease(
  Effect.callback<{ socket: string; server: http.Server; dir: string }>((resume) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-stub-"))
    const socket = path.join(dir, "docker.sock")
    const server = http.createServer((req, res) => {
      req.resume()
      const url = req.url ?? ""
      if (url.endsWith("/_ping")) return reply(res, 200)
      if (url.includes("/containers/create") || url.endsWith("/exec")) return reply(res, 201, { Id: ID, Warnings: [] })
      if (url.includes("/containers/") && url.endsWith("/json")) {
        return reply(res, 200, { Id: ID, State: { Status: "running", Running: true }, Config: { Tty: false } })
      }
      if (url.includes("/exec/") && url.endsWith("/json")) return reply(res, 200, { ID, Running: false, ExitCode: 0, Pid: 1 })
      if (url.includes("/wait")) return reply(res, 200, { StatusCode: 0 })
      if (req.method === "POST" || req.method === "DELETE") return reply(res, 204)
      return reply(res, 404, { message: `the stub does not serve ${req.method} ${url}` })
    })
    server.on("upgrade", (_req, conn: import("node:net").Socket) => {
      conn.end("HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    })
    server.once("error", (error) => {
      fs.rmSync(dir, { recursive: true, force: true })
      resume(Effect.die(error))
    })
    server.listen(socket, () => resume(Effect.succeed({ socket, server, dir })))
  }),
  ({ dir, server }) =>
    Effect.sync(() => {
      server.close()
      server.closeAllConnections()
      fs.rmSync(dir, { recursive: true, force: true })
    })
).pipe(Effect.map(({ socket }) => ({ socket })))
