/**
 * What is at a unix socket path: what a server that owns a socket path (our
 * daemon's API socket, the embedded containerd's) checks before it starts, so
 * a socket left by a crash is cleaned up (`Files.removeFile`) but a live one,
 * or a file that is not a socket, is never taken over. And a lock for the life
 * of a process, on an abstract socket.
 */
import { Effect, type Scope } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"

/** Nothing there; a socket nobody accepts on (left by a crash); a live one; or not a socket at all. */
export type SocketState = "absent" | "stale" | "listening" | "other"

/** What is at `socket`. */
export const probeSocket = (socket: string): Effect.Effect<SocketState> =>
  Effect.callback<SocketState>((resume) => {
    const stat = fs.lstatSync(socket, { throwIfNoEntry: false })
    if (stat === undefined) return resume(Effect.succeed("absent"))
    if (!stat.isSocket()) return resume(Effect.succeed("other"))
    const connection = net.connect(socket)
    connection.once("connect", () => {
      connection.destroy()
      resume(Effect.succeed("listening"))
    })
    connection.once("error", () => {
      connection.destroy()
      resume(Effect.succeed("stale"))
    })
    return Effect.sync(() => connection.destroy())
  }).pipe(
    // A listener too busy to accept within a second is still a listener.
    Effect.timeoutOrElse({ duration: "1 second", orElse: () => Effect.succeed("listening" as const) })
  )


/**
 * Holds a process-wide lock on `key` (a path, say) for the scope: `false` if
 * another process holds it. The lock is a listener on a Linux abstract unix
 * socket named after the key's hash: binding it is atomic, and the kernel
 * releases it when the process dies, so a crash leaves nothing stale behind and
 * there is no check-then-remove race, unlike a pid file. Connections to it are
 * accepted and closed at once. Abstract names belong to the network namespace
 * and carry no permissions: daemons in different network namespaces do not see
 * each other's locks, and a local user could take a name first (a denial of
 * start, never a takeover).
 */
export const holdLock = (purpose: string, key: string): Effect.Effect<boolean, NodeJS.ErrnoException, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<net.Server | undefined, NodeJS.ErrnoException>((resume) => {
      const name = `\0effect-containerd/${purpose}/${crypto.createHash("sha256").update(key).digest("hex")}`
      const server = net.createServer((connection) => connection.destroy())
      server.once("error", (error: NodeJS.ErrnoException) =>
        resume(error.code === "EADDRINUSE" ? Effect.succeed(undefined) : Effect.fail(error)))
      server.listen(name, () => {
        // It must not keep the process alive, nor crash it on a later accept error.
        server.unref()
        server.on("error", () => {})
        resume(Effect.succeed(server))
      })
    }),
    (server) => server === undefined ? Effect.void : Effect.sync(() => void server.close())
  ).pipe(Effect.map((server) => server !== undefined))
