/**
 * The mechanics of a process's stdio as containerd's runc shim expects it
 * (the choice is a public `Stdio`): FIFOs in a private directory, a `file://`
 * log or `binary://` logger the shim runs itself, or nothing (/dev/null).
 *
 * How the FIFO ends must be opened follows from what the shim does (containerd
 * 1.6 `pkg/process`): during Create/Exec it opens each output FIFO for writing,
 * blocking until a reader exists, and keeps a reader of its own; it opens stdin
 * for reading and holds a writer until CloseIO. So, before the RPC:
 *
 * - stdout/stderr: we open the reader (non-blocking) and a placeholder writer, so
 *   the reader sees no end-of-file before the shim's writer exists. Once the RPC
 *   has returned the shim holds its writer and the placeholder is closed; the
 *   reader then ends exactly when the shim closes its writer, after the process's
 *   output is all copied.
 * - stdin: we open read-write, which never blocks and gives the shim's
 *   non-blocking open a peer. Ending stdin is closing ours plus CloseIO.
 *
 * Node has no mkfifo(3), and spawning `mkfifo` from a large process costs
 * 15-20 ms of its CPU (most of the daemon's CPU per `docker exec`). So a
 * `FifoPool` makes FIFOs in batches, one `mkfifo` for many, and each process's
 * are renamed into its directory: rename(2) moves a FIFO like any file.
 */
import { NodeSink, NodeStream } from "@effect/platform-node"
import { Deferred, Effect, Scope, Sink, Stream } from "effect"
import { execFile } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { type ContainerdError, GrpcCode, fromGrpcStatus } from "../domain/ContainerdError.ts"
import type { Stdio } from "../domain/Stdio.ts"
import { removeTree } from "./Files.ts"

/** Our ends of a process's stdio. */
export interface ProcessIo {
  /** What to pass to Tasks.Create / Tasks.Exec. */
  readonly request: { readonly stdin: string; readonly stdout: string; readonly stderr: string }
  /** The process's output; empty unless piped. Consume it once. */
  readonly stdout: Stream.Stream<Uint8Array, ContainerdError>
  /** The process's error output; empty unless piped without a terminal. */
  readonly stderr: Stream.Stream<Uint8Array, ContainerdError>
  /** Writes to the process's input; fails unless stdin was asked for. */
  readonly stdin: Sink.Sink<void, Uint8Array, never, ContainerdError>
  /** The shim has opened its ends (the RPC returned): drop the placeholder writers. */
  readonly connected: Effect.Effect<void>
  /** Closes our end of stdin. */
  readonly endStdin: Effect.Effect<void>
  /**
   * Every output stream being read has been read to its end. Once the shim has
   * closed its writers (the process is deleted), this is when no output is left
   * in the FIFOs, so releasing them then loses nothing.
   */
  readonly drained: Effect.Effect<void>
  /** Closes every descriptor and removes the directory; idempotent. */
  readonly release: Effect.Effect<void>
}

const ioError = (method: string, message: string, cause?: unknown): ContainerdError =>
  fromGrpcStatus({ code: GrpcCode.UNKNOWN, details: message }, { method, address: "", cause })

const mkfifo = (paths: ReadonlyArray<string>) =>
  Effect.callback<void, ContainerdError>((resume) => {
    execFile("mkfifo", ["-m", "600", ...paths], { timeout: 10_000 }, (error, _stdout, stderr) =>
      resume(error ? Effect.fail(ioError("mkfifo", `could not create FIFOs: ${stderr || error.message}`, error)) : Effect.void))
  })

/** FIFOs made ahead; `take` moves some to where a process wants them. */
export interface FifoPool {
  /** Renames fresh FIFOs (mode 0600) to `paths`, making a batch first if too few are left. */
  readonly take: (paths: ReadonlyArray<string>) => Effect.Effect<void, ContainerdError>
}

/** How many FIFOs one `mkfifo` makes: about twenty processes' worth. */
const POOL_BATCH = 64

/**
 * A pool in a private directory of `root` (the `take` destinations must be on
 * its filesystem), removed with the scope. At most one batch is made at a time,
 * by the first taker that finds too few, uninterruptibly (one short `mkfifo`,
 * under a timeout) so that it always settles the batch the others wait for.
 */
export const makeFifoPool = Effect.fnUntraced(function*(root: string) {
  const scope = yield* Effect.scope
  const dir = path.join(root, `.pool-${crypto.randomBytes(6).toString("hex")}`)
  const free: Array<string> = []
  let made = 0
  let batch: Deferred.Deferred<void, ContainerdError> | undefined
  yield* Scope.addFinalizer(scope, removeTree(dir))

  const makeBatch = Effect.suspend(() => {
    const names = Array.from({ length: POOL_BATCH }, () => path.join(dir, String(made++)))
    return Effect.try({
      try: () => fs.mkdirSync(dir, { recursive: true, mode: 0o700 }),
      catch: (cause) => ioError("FifoPool", `could not create ${dir}`, cause)
    }).pipe(
      Effect.andThen(mkfifo(names)),
      Effect.andThen(Effect.sync(() => void free.push(...names)))
    )
  })

  const refill = Effect.uninterruptibleMask((restore) =>
    Effect.suspend(() => {
      if (batch !== undefined) return restore(Deferred.await(batch))
      const done = Deferred.makeUnsafe<void, ContainerdError>()
      batch = done
      return makeBatch.pipe(
        Effect.ensuring(Effect.sync(() => void (batch = undefined))),
        Deferred.into(done),
        Effect.andThen(Deferred.await(done))
      )
    })
  )

  const take = (paths: ReadonlyArray<string>): Effect.Effect<void, ContainerdError> =>
    Effect.suspend(() => {
      if (free.length < paths.length) return Effect.andThen(refill, take(paths))
      const fifos = free.splice(0, paths.length)
      return Effect.try({
        try: () => fifos.forEach((fifo, i) => fs.renameSync(fifo, paths[i]!)),
        catch: (cause) => {
          // The pool's directory may be gone too: make a fresh batch next time.
          free.length = 0
          return ioError("FifoPool", `could not move FIFOs to ${path.dirname(paths[0]!)}`, cause)
        }
      })
    })

  return { take } satisfies FifoPool
})

const { O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY } = fs.constants

/**
 * Opens the stdio of one process in a fresh directory `<dir>/<name>-<random>`
 * (`dir` under the pool's root), which the process owns alone and removes on
 * release. Closing the scope releases it if `release` was not called first.
 */
export const openProcessIo = (
  pool: FifoPool,
  root: string,
  name: string,
  stdio: Stdio,
  terminal: boolean
): Effect.Effect<ProcessIo, ContainerdError, Scope.Scope> => {
  if (stdio._tag !== "Pipe") {
    const uri = stdio._tag === "LogFile"
      ? `file://${stdio.path}`
      : stdio._tag === "Binary"
      ? `binary://${stdio.path}${stdio.argument === undefined ? "" : `?${encodeURIComponent(stdio.argument)}`}`
      : ""
    return Effect.succeed({
      request: { stdin: "", stdout: uri, stderr: uri },
      stdout: Stream.empty,
      stderr: Stream.empty,
      stdin: noStdin,
      connected: Effect.void,
      endStdin: Effect.void,
      drained: Effect.void,
      release: Effect.void
    })
  }
  return Effect.acquireRelease(
    Effect.gen(function*() {
      const dir = path.join(root, `${name}-${crypto.randomBytes(8).toString("hex")}`)
      yield* Effect.try({
        try: () => fs.mkdirSync(dir, { recursive: true, mode: 0o700 }),
        catch: (cause) => ioError("openProcessIo", `could not create ${dir}`, cause)
      })
      const names = ["stdout", ...(terminal ? [] : ["stderr"]), ...(stdio.stdin ? ["stdin"] : [])]
      yield* pool.take(names.map((name) => path.join(dir, name))).pipe(
        Effect.onError(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
      )
      return yield* Effect.try({
        try: () => openEnds(dir, terminal, stdio.stdin),
        catch: (cause) => {
          fs.rmSync(dir, { recursive: true, force: true })
          return ioError("openProcessIo", `could not open the FIFOs in ${dir}`, cause)
        }
      })
    }),
    (io) => io.release
  )
}

const noStdin: Sink.Sink<void, Uint8Array, never, ContainerdError> = Sink.fail(
  ioError("stdin", "stdin was not opened: create the process with Stdio.pipe({ stdin: true })")
)

/** Opens our ends of the FIFOs in `dir` (all synchronous, none blocking). */
const openEnds = (dir: string, terminal: boolean, withStdin: boolean): ProcessIo => {
  const opened: Array<number> = []
  const open = (file: string, flags: number) => {
    const fd = fs.openSync(path.join(dir, file), flags)
    opened.push(fd)
    return fd
  }
  try {
    const output = (name: "stdout" | "stderr") => {
      const reader = new net.Socket({ fd: open(name, O_RDONLY | O_NONBLOCK), readable: true, writable: false })
      const placeholder = open(name, O_WRONLY | O_NONBLOCK)
      return { reader, placeholder }
    }
    const stdout = output("stdout")
    const stderr = terminal ? undefined : output("stderr")
    const stdin = withStdin ? new net.Socket({ fd: open("stdin", O_RDWR), readable: false, writable: true }) : undefined
    const sockets = [stdout.reader, stderr?.reader, stdin].filter((s) => s !== undefined)
    const placeholders = [stdout.placeholder, stderr?.placeholder].filter((fd) => fd !== undefined)
    const closePlaceholders = () => {
      for (const fd of placeholders.splice(0)) fs.closeSync(fd)
    }
    let released = false
    /** The readers someone reads: only those can be waited on to end. */
    const reading = new Set<net.Socket>()
    const ended = (socket: net.Socket) =>
      Effect.callback<void>((resume) => {
        if (socket.readableEnded || socket.destroyed) return resume(Effect.void)
        const done = () => resume(Effect.void)
        socket.once("end", done).once("close", done)
        return Effect.sync(() => void socket.off("end", done).off("close", done))
      })
    const toStream = (name: string, socket: net.Socket | undefined) =>
      socket === undefined ? Stream.empty : NodeStream.fromReadable<Uint8Array, ContainerdError>({
        evaluate: () => {
          reading.add(socket)
          return socket
        },
        onError: (cause) => ioError(name, `reading ${name} failed`, cause),
        closeOnDone: false
      }).pipe(
        // A reader that stopped (ended, or interrupted) is no longer one to wait for.
        Stream.ensuring(Effect.sync(() => void reading.delete(socket)))
      )
    return {
      request: {
        stdin: withStdin ? path.join(dir, "stdin") : "",
        stdout: path.join(dir, "stdout"),
        stderr: terminal ? "" : path.join(dir, "stderr")
      },
      stdout: toStream("stdout", stdout.reader),
      stderr: toStream("stderr", stderr?.reader),
      stdin: stdin === undefined ? noStdin : NodeSink.fromWritable({
        evaluate: () => stdin,
        onError: (cause) => ioError("stdin", "writing stdin failed", cause),
        endOnDone: false
      }),
      connected: Effect.sync(closePlaceholders),
      endStdin: Effect.sync(() => stdin?.end()),
      drained: Effect.suspend(() => Effect.forEach(reading, ended, { concurrency: "unbounded", discard: true })),
      release: Effect.sync(() => {
        if (released) return
        released = true
        closePlaceholders()
        for (const socket of sockets) socket.destroy()
        fs.rmSync(dir, { recursive: true, force: true })
      })
    }
  } catch (error) {
    for (const fd of opened) fs.closeSync(fd)
    throw error
  }
}
