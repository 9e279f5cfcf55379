/**
 * The daemon's shim logger: the program containerd's runc shim starts for a
 * container logged with `binary://` (nerdctl does the same). The shim hands it
 * the container's stdout and stderr as fds 3 and 4, waits for fd 5 to close
 * before it starts the container, and closes the pipes when the task is
 * deleted. The logger appends json-file entries until both streams end. It is
 * the shim's child, not the daemon's, so a container keeps writing — and never
 * blocks on a full pipe — while the daemon is down.
 *
 * Node's own modules only (no Effect): the shim waits for it to start, and every
 * container start pays for that. SIGTERM, which the shim sends when the task is
 * deleted, is no reason to drop output: the streams are read to their end (the
 * shim waits 12 s before SIGKILL).
 *
 * Usage (through the script the engine writes): `logger <log root>`; the
 * container is `$CONTAINER_ID`, its options `<root>/<id>/log-config.json`.
 */
import * as fs from "node:fs"
import * as net from "node:net"
import { Appender, type LogStream, nowNanos } from "./JsonLogFile.ts"
import { logConfigPath, logPath, parseLogConfig } from "./LogFiles.ts"

const fail = (message: string): never => {
  process.stderr.write(`effect-containerd logger: ${message}\n`)
  process.exit(1)
}

const root = process.argv[2]
const id = process.env.CONTAINER_ID
if (root === undefined || id === undefined || id === "") fail("usage: logger <log root>, with CONTAINER_ID set (the shim sets it)")

let config = {}
try {
  config = parseLogConfig(fs.readFileSync(logConfigPath(root!, id!), "utf8"))
} catch {
  // No options file: the defaults (one file, no rotation).
}
const { maxFiles = 1, maxSize = -1 } = config as { maxFiles?: number; maxSize?: number }
const appender = new Appender(logPath(root!, id!), maxSize, maxFiles)
let failing = false
/** Runs one append; a failure is reported once per run of failures and the output dropped, as dockerd's copier does. */
const attempt = (run: () => void) => {
  try {
    run()
    failing = false
  } catch (error) {
    if (!failing) process.stderr.write(`effect-containerd logger: ${String(error)}\n`)
    failing = true
  }
}
attempt(() => appender.open())

process.on("SIGTERM", () => {
  // Read to the end; see the header.
})

// Ready: the shim starts the container once this closes.
try {
  fs.closeSync(5)
} catch {
  // Not started by a shim: nothing to tell.
}

let open = 2
const copy = (fd: number, stream: LogStream) => {
  const socket = new net.Socket({ fd, readable: true, writable: false })
  socket.on("data", (chunk: Buffer) => attempt(() => appender.write(stream, chunk, nowNanos())))
  const done = () => {
    if (--open > 0) return
    attempt(() => appender.flushPartials(nowNanos()))
    attempt(() => appender.closeFile())
    process.exit(0)
  }
  socket.once("end", done)
  socket.once("error", () => socket.destroy())
  socket.once("close", () => socket.readableEnded || done())
}
copy(3, "stdout")
copy(4, "stderr")
