/**
 * What is at a unix socket path, and removing one: what a server that owns a
 * socket path (our daemon's API socket, the embedded containerd's) checks
 * before it starts, so a socket left by a crash is cleaned up but a live one,
 * or a file that is not a socket, is never taken over.
 */
import { Effect } from "effect"
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

/** Removes a file if it is there; a failure (a directory in the way) is logged, not raised: finalizers use it. */
export const removeFile = (file: string): Effect.Effect<void> =>
  Effect.try({ try: () => fs.rmSync(file, { force: true }), catch: (cause) => cause }).pipe(
    Effect.catch((cause) => Effect.logWarning(`could not remove ${file}`, cause))
  )
