/**
 * Reading a container's json-file log back, as dockerd's json-file `ReadLogs`:
 * rotated files oldest first, then `x.log`; `since`, `until` and `tail`; and
 * `follow`, which keeps reading what is appended, across rotations, until it is
 * interrupted, `until` passes, or `done` (the container exited) completes and
 * the rest of the file has been read. The format and how it is written are in
 * `JsonLog.ts`.
 *
 * Gotchas:
 * - With `maxFiles` 1 the file is truncated in place: a follower loses what it
 *   had not read yet, and notices the truncation only while the file is shorter
 *   than what it had read (as with dockerd).
 * - `done` must complete after the writer has closed: the follower reads to the
 *   end of the file once it sees `done`, then stops.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import {
  Array as Arr,
  Cause,
  Clock,
  Duration,
  Effect,
  Option,
  type Pull,
  Queue,
  Schema,
  Stream
} from "effect"
import { JsonLogError } from "./JsonLog.ts"
import { isNotFound, type LogStream } from "./JsonLogFile.ts"

/** One entry read back from the log. */
export interface LogEntry {
  readonly stream: LogStream
  /** The `time` field as stored (Go's RFC3339Nano, trailing zeros dropped). */
  readonly time: string
  readonly timeMs: number
  /** `time` in nanoseconds since the epoch (for `--timestamps`, with `formatDockerTimestamp`). */
  readonly timeNanos: bigint
  /** The output, with its `\n` unless it is a partial entry. */
  readonly log: Uint8Array
}

/** What `readLogs` reads, as `GET /containers/{id}/logs` asks for it. */
export interface ReadOptions {
  readonly path: string
  readonly stdout: boolean
  readonly stderr: boolean
  /** Only entries at or after this time (ms since the epoch). */
  readonly since?: number | undefined
  /** Only entries at or before this time (ms since the epoch); a follower stops once it passes. */
  readonly until?: number | undefined
  /** Only the last `tail` entries that pass the other filters; unset or negative: all. */
  readonly tail?: number | undefined
  /** Keep emitting entries as they are appended. */
  readonly follow?: boolean | undefined
  /** Completes when no more output will come (the container exited): the follower reads what is left and ends. */
  readonly done?: Effect.Effect<void> | undefined
}

const NEWLINE = 0x0a
const READ_CHUNK = 64 * 1024
const POLL_INTERVAL = Duration.millis(100)

const StoredEntry = Schema.fromJsonString(Schema.Struct({
  log: Schema.optionalKey(Schema.String),
  stream: Schema.Literals(["stdout", "stderr"]),
  time: Schema.String
}))
const decodeStored = Schema.decodeUnknownOption(StoredEntry)

// The last second parsed: neighbouring entries mostly share it, and Date.parse is the costly part of reading.
let lastSecond = { text: "", nanos: 0n }

const TIME = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/

/** Nanoseconds since the epoch of an RFC3339(Nano) time as json-file stores it; undefined if it is not one. */
export const parseLogTime = (time: string): bigint | undefined => {
  const match = TIME.exec(time)
  if (match === null) return undefined
  const second = `${match[1]}${match[3]}`
  if (second !== lastSecond.text) {
    const ms = Date.parse(second)
    if (Number.isNaN(ms)) return undefined
    lastSecond = { text: second, nanos: BigInt(ms) * 1_000_000n }
  }
  return lastSecond.nanos + BigInt((match[2] ?? "").padEnd(9, "0"))
}

// A line that is not a json-file entry (torn by a crash, or not ours) is skipped, as dockerd does;
// so is one of a stream not `wanted`, before its time is parsed and its text copied.
const decodeLine = (line: Buffer, wanted: (stream: LogStream) => boolean): LogEntry | undefined => {
  const stored = decodeStored(line.toString("utf8"))
  if (Option.isNone(stored) || !wanted(stored.value.stream)) return undefined
  const nanos = parseLogTime(stored.value.time)
  if (nanos === undefined) return undefined
  return {
    stream: stored.value.stream,
    time: stored.value.time,
    timeMs: Number(nanos / 1_000_000n),
    timeNanos: nanos,
    log: Buffer.from(stored.value.log ?? "", "utf8")
  }
}

// An open log file being read forward. `end` caps a read that must not see later appends.
interface Cursor {
  readonly fd: number
  readonly ino: bigint
  position: number
  leftover: Buffer | undefined
  end: number | undefined
}

const closeQuietly = (fd: number): void => fs.close(fd, () => {})

const openCursor = (file: string): Effect.Effect<Cursor | undefined, JsonLogError> =>
  Effect.try({
    try: (): Cursor => {
      const fd = fs.openSync(file, "r")
      return { fd, ino: fs.fstatSync(fd, { bigint: true }).ino, position: 0, leftover: undefined, end: undefined }
    },
    catch: (cause) => cause
  }).pipe(Effect.catch((cause) =>
    isNotFound(cause)
      ? Effect.succeed(undefined)
      : Effect.fail(new JsonLogError({ message: `could not open ${file}`, cause }))
  ))

const statFile = (file: string) =>
  Effect.try({
    try: () => fs.statSync(file, { bigint: true, throwIfNoEntry: false }),
    catch: (cause) => new JsonLogError({ message: `could not stat ${file}`, cause })
  })

// `x.log.1`, `x.log.2`, ... as they are now, newest first.
const rotatedNames = (file: string): Effect.Effect<ReadonlyArray<string>, JsonLogError> => {
  const base = path.basename(file)
  return Effect.try({ try: () => fs.readdirSync(path.dirname(file)), catch: (cause) => cause }).pipe(
    Effect.catch((cause) =>
      isNotFound(cause)
        ? Effect.succeed<Array<string>>([])
        : Effect.fail(new JsonLogError({ message: `could not list ${path.dirname(file)}`, cause }))
    ),
    Effect.map((names) =>
      names.flatMap((name) => {
        const suffix = name.startsWith(`${base}.`) ? name.slice(base.length + 1) : ""
        return /^[1-9]\d*$/.test(suffix) ? [{ name, n: Number(suffix) }] : []
      }).sort((a, b) => a.n - b.n).map(({ name }) => path.join(path.dirname(file), name))
    )
  )
}

// The offset just past the last newline: a torn last line is not read (a follower reads it once it is whole).
const lineAlignedEnd = (fd: number, size: number): number => {
  for (let pos = size; pos > 0;) {
    const start = Math.max(0, pos - READ_CHUNK)
    const block = readAt(fd, start, pos)
    const newline = block.lastIndexOf(NEWLINE)
    if (newline !== -1) return start + newline + 1
    pos = start
  }
  return 0
}

const readAt = (fd: number, start: number, end: number): Buffer => {
  const block = Buffer.allocUnsafe(end - start)
  let filled = 0
  while (filled < block.length) {
    const n = fs.readSync(fd, block, filled, block.length - filled, start + filled)
    if (n === 0) break
    filled += n
  }
  return block.subarray(0, filled)
}

// Visits the whole lines before `end` (a line boundary) last first, as dockerd's tail reader;
// stops when `visit` says so and returns false then.
const scanBackward = (fd: number, end: number, visit: (line: Buffer) => boolean): boolean => {
  let carry: Buffer | undefined
  for (let pos = end; pos > 0;) {
    const start = Math.max(0, pos - READ_CHUNK)
    const block = readAt(fd, start, pos)
    const data = carry === undefined ? block : Buffer.concat([block, carry])
    // data ends with a newline; every line after the first one in data is whole.
    let lineEnd = data.length
    for (let prev = lineEnd >= 2 ? data.lastIndexOf(NEWLINE, lineEnd - 2) : -1; prev !== -1;) {
      if (!visit(data.subarray(prev + 1, lineEnd - 1))) return false
      lineEnd = prev + 1
      prev = lineEnd >= 2 ? data.lastIndexOf(NEWLINE, lineEnd - 2) : -1
    }
    if (start === 0) return lineEnd === 0 || visit(data.subarray(0, lineEnd - 1))
    carry = data.subarray(0, lineEnd)
    pos = start
  }
  return true
}

// Reads the next chunk: whole lines (maybe none), or undefined at the end of the file.
const readForward = (cursor: Cursor): Array<Buffer> | undefined => {
  const want = cursor.end === undefined ? READ_CHUNK : Math.min(READ_CHUNK, cursor.end - cursor.position)
  if (want <= 0) return undefined
  const buffer = Buffer.allocUnsafe(want)
  const n = fs.readSync(cursor.fd, buffer, 0, want, cursor.position)
  if (n === 0) return undefined
  cursor.position += n
  const data = cursor.leftover === undefined ? buffer.subarray(0, n) : Buffer.concat([cursor.leftover, buffer.subarray(0, n)])
  const lines: Array<Buffer> = []
  let start = 0
  for (let newline = data.indexOf(NEWLINE); newline !== -1; newline = data.indexOf(NEWLINE, start)) {
    if (newline > start) lines.push(data.subarray(start, newline))
    start = newline + 1
  }
  cursor.leftover = start < data.length ? Buffer.from(data.subarray(start)) : undefined
  return lines
}

/**
 * A container's log entries, as dockerd's json-file `ReadLogs`: filtered by stream, `since` and
 * `until`, the last `tail` of them, then (with `follow`) what is appended until `done`.
 */
export const readLogs = (options: ReadOptions): Stream.Stream<LogEntry, JsonLogError> =>
  Stream.unwrap(Effect.gen(function*() {
    const file = options.path
    const follow = options.follow === true
    const { since, until } = options
    const wanted = (stream: LogStream) => stream === "stdout" ? options.stdout : options.stderr

    const opened = new Set<Cursor>()
    yield* Effect.addFinalizer(() => Effect.sync(() => opened.forEach((cursor) => closeQuietly(cursor.fd))))
    const track = (cursor: Cursor | undefined) => {
      if (cursor !== undefined) opened.add(cursor)
      return cursor
    }
    const release = (cursor: Cursor) => {
      opened.delete(cursor)
      closeQuietly(cursor.fd)
    }

    // The rotated files newest first, skipping `skip` and stopping at `stopAt` (the one a follower
    // has read): a rotation racing with us can neither duplicate a file nor make us read one twice.
    const openRotated = Effect.fnUntraced(function*(skip: bigint | undefined, stopAt: bigint | undefined) {
      const found: Array<Cursor> = []
      for (const name of yield* rotatedNames(file)) {
        const cursor = track(yield* openCursor(name))
        if (cursor === undefined) continue
        if (cursor.ino === stopAt) {
          release(cursor)
          break
        }
        if (cursor.ino === skip || found.some((other) => other.ino === cursor.ino)) release(cursor)
        else found.push(cursor)
      }
      return found
    })

    // x.log first: a rotation after this moves it to x.log.1, where the inode check finds it.
    let current = track(yield* openCursor(file))
    const newestFirst = yield* openRotated(current?.ino, undefined)
    let rotated: Array<Cursor> = newestFirst.slice().reverse()
    let pending: Array<LogEntry> = []
    let ended = false

    if (!follow && current !== undefined) {
      const size = yield* Effect.try({
        try: () => fs.fstatSync(current!.fd).size,
        catch: (cause) => new JsonLogError({ message: `could not stat ${file}`, cause })
      })
      current.end = size
    }

    const tail = options.tail
    if (tail !== undefined && tail >= 0) {
      const collected: Array<LogEntry> = []
      const visit = (line: Buffer): boolean => {
        const entry = decodeLine(line, wanted)
        if (entry === undefined) return true
        if (since !== undefined && entry.timeMs < since) return false
        if (until !== undefined && entry.timeMs > until) return true
        collected.push(entry)
        return collected.length < tail
      }
      yield* Effect.try({
        try: () => {
          let more = tail > 0
          for (const cursor of current === undefined ? newestFirst : [current, ...newestFirst]) {
            // Rotated files are looked at only while the tail wants more; the current one always, for its end.
            if (!more && cursor !== current) break
            const end = lineAlignedEnd(cursor.fd, cursor.end ?? fs.fstatSync(cursor.fd).size)
            // A follower goes on from the end of what the tail read.
            if (cursor === current) cursor.position = end
            if (more) more = scanBackward(cursor.fd, end, visit)
          }
        },
        catch: (cause) => new JsonLogError({ message: `could not read ${file}`, cause })
      })
      rotated.forEach(release)
      rotated = []
      if (!follow && current !== undefined) {
        release(current)
        current = undefined
      }
      pending = collected.reverse()
    }

    // Following: woken by fs.watch on the directory (it sees x.log replaced, not only written),
    // and every POLL_INTERVAL in case the watch misses events or cannot be set up.
    const wake = yield* Queue.sliding<void>(1)
    let finished = false
    if (follow) {
      const base = path.basename(file)
      yield* Effect.acquireRelease(
        Effect.option(Effect.try({
          try: () => {
            const watcher = fs.watch(path.dirname(file), { persistent: false }, (_event, name) => {
              if (name === null || name.startsWith(base)) Queue.offerUnsafe(wake, undefined)
            })
            watcher.on("error", () => watcher.close())
            return watcher
          },
          catch: (cause) => cause
        })),
        (watcher) => Effect.sync(() => Option.map(watcher, (w) => w.close()))
      )
      if (options.done !== undefined) {
        yield* Effect.forkScoped(Effect.andThen(
          options.done,
          Effect.sync(() => {
            finished = true
            Queue.offerUnsafe(wake, undefined)
          })
        ))
      }
    }

    const select = (lines: ReadonlyArray<Buffer>): Array<LogEntry> => {
      const out: Array<LogEntry> = []
      for (const line of lines) {
        const entry = decodeLine(line, wanted)
        if (entry === undefined) continue
        if (since !== undefined && entry.timeMs < since) continue
        if (until !== undefined && entry.timeMs > until) {
          ended = true
          break
        }
        out.push(entry)
      }
      return out
    }

    // At the end of x.log: has it been replaced by a rotation (or truncated in place)?
    const followRotation = Effect.gen(function*() {
      const stat = yield* statFile(file)
      if (stat === undefined) return false
      if (current !== undefined && stat.ino === current.ino) {
        if (stat.size >= BigInt(current.position)) return false
        current.position = 0
        current.leftover = undefined
        return true
      }
      const next = track(yield* openCursor(file))
      if (next === undefined) return false
      if (current !== undefined) {
        // The old file is read to its end first (it was renamed after its last write), then any
        // file rotated after it and before the new x.log.
        const between = yield* openRotated(next.ino, current.ino)
        rotated.push(current, ...between.reverse())
      }
      current = next
      return true
    })

    const pull: Pull.Pull<Arr.NonEmptyReadonlyArray<LogEntry>, JsonLogError> = Effect.gen(function*() {
      while (true) {
        if (pending.length > 0) {
          const out = pending
          pending = []
          if (Arr.isReadonlyArrayNonEmpty(out)) return out
        }
        if (ended) return yield* Cause.done()
        const cursor = rotated[0] ?? current
        // Seen before the read: everything written before `done` is then read before stopping.
        const finishedBeforeRead = finished
        if (cursor !== undefined) {
          const lines = yield* Effect.try({
            try: () => readForward(cursor),
            catch: (cause) => new JsonLogError({ message: `could not read ${file}`, cause })
          })
          if (lines !== undefined) {
            const out = select(lines)
            if (Arr.isReadonlyArrayNonEmpty(out)) return out
            continue
          }
          if (cursor !== current) {
            release(cursor)
            rotated.shift()
            continue
          }
        }
        if (!follow) {
          ended = true
          continue
        }
        if (yield* followRotation) continue
        if (finishedBeforeRead || (until !== undefined && (yield* Clock.currentTimeMillis) > until)) {
          ended = true
          continue
        }
        yield* Effect.timeoutOption(Queue.take(wake), POLL_INTERVAL)
      }
    })
    return Stream.fromPull(Effect.succeed(pull))
  }))
