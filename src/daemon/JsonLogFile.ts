/**
 * The json-file log's format and its appender, plain and synchronous: what
 * `JsonLog.ts` wraps in Effect for the logs the daemon writes itself. The shim
 * logger (`logger.c`) writes the same bytes for the same output;
 * `test/daemon/ShimLogger.test.ts` holds the two to it.
 */
import { Predicate } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"

/** A container's output streams. */
export type LogStream = "stdout" | "stderr"

/** The longest entry without a newline, as dockerd's copier buffer (16 KiB); longer lines are cut. */
export const MAX_LINE = 16 * 1024

const NEWLINE = 0x0a
// dockerd creates log files 0640.
const FILE_MODE = 0o640


const secondsPart = (nanos: bigint): string =>
  new Date(Number(nanos / 1_000_000_000n) * 1000).toISOString().slice(0, 19)

const fractionPart = (nanos: bigint): string => (nanos % 1_000_000_000n).toString().padStart(9, "0")

/** `nanos` since the epoch as `docker logs --timestamps` prints it (RFC3339Nano with all nine digits, UTC). */
export const formatDockerTimestamp = (nanos: bigint): string => {
  const at = nanos < 0n ? 0n : nanos
  return `${secondsPart(at)}.${fractionPart(at)}Z`
}

// Go's time.RFC3339Nano, which json-file stores: trailing zeros of the fraction are dropped.
const formatStoredTime = (nanos: bigint): string => {
  const at = nanos < 0n ? 0n : nanos
  const fraction = fractionPart(at).replace(/0+$/, "")
  return fraction === "" ? `${secondsPart(at)}Z` : `${secondsPart(at)}.${fraction}Z`
}

// The characters dockerd's ffjsonWriteJSONBytesAsString escapes; JSON.stringify would leave `<>&` and
// U+2028/9 as they are and write `\t` where Go writes `\u0009`.
const ESCAPED = /[\u0000-\u001f"\\<>&\u2028\u2029]/g

const escapeChar = (char: string): string => {
  switch (char) {
    case "\"":
      return "\\\""
    case "\\":
      return "\\\\"
    case "\n":
      return "\\n"
    case "\r":
      return "\\r"
    default:
      return `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`
  }
}

/** Whether a file-system failure is "no such file". */
export const isNotFound = (cause: unknown): boolean => Predicate.hasProperty(cause, "code") && cause.code === "ENOENT"

/** Renames `from` unless it is not there (as logger.c does): one system call, and no window between a check and the rename. */
const renameIfThere = (from: string, to: string): void => {
  try {
    fs.renameSync(from, to)
  } catch (cause) {
    if (!isNotFound(cause)) throw cause
  }
}

// Invalid UTF-8 becomes U+FFFD, as dockerd writes `\ufffd` for it. Encoded once, here: its length
// decides rotation, and the bytes are what is written.
const entryLine = (stream: LogStream, bytes: Buffer, time: string): Buffer =>
  Buffer.from(`{"log":"${bytes.toString("utf8").replace(ESCAPED, escapeChar)}","stream":"${stream}","time":"${time}"}\n`, "utf8")

/**
 * A container's log file and its partial lines, appended synchronously, so one
 * chunk's entries are never interleaved with another's. Only the fs calls throw.
 */
export class Appender {
  private fd: number | undefined
  private size = 0
  private readonly partial: Record<LogStream, Buffer | undefined> = { stdout: undefined, stderr: undefined }
  closed = false

  readonly file: string
  readonly maxSize: number
  readonly maxFiles: number

  constructor(file: string, maxSize: number, maxFiles: number) {
    this.file = file
    this.maxSize = maxSize
    this.maxFiles = maxFiles
  }

  open(): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true })
    this.fd = fs.openSync(this.file, "a", FILE_MODE)
    this.size = fs.fstatSync(this.fd).size
  }

  // Cuts as dockerd's copier: at each newline, and every MAX_LINE bytes of a line without one.
  write(stream: LogStream, chunk: Uint8Array, nanos: bigint): void {
    if (this.closed || chunk.byteLength === 0) return
    const previous = this.partial[stream]
    const bytes = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    const data = previous === undefined ? bytes : Buffer.concat([previous, bytes])
    const time = formatStoredTime(nanos)
    const lines: Array<Buffer> = []
    let start = 0
    for (let newline = data.indexOf(NEWLINE); newline !== -1; newline = data.indexOf(NEWLINE, start)) {
      for (; newline - start >= MAX_LINE; start += MAX_LINE) {
        lines.push(entryLine(stream, data.subarray(start, start + MAX_LINE), time))
      }
      lines.push(entryLine(stream, data.subarray(start, newline + 1), time))
      start = newline + 1
    }
    for (; data.length - start >= MAX_LINE; start += MAX_LINE) {
      lines.push(entryLine(stream, data.subarray(start, start + MAX_LINE), time))
    }
    // Copied: the caller may reuse its chunk. Kept before any I/O, so a failed write loses
    // only this chunk's entries, never the line being assembled.
    this.partial[stream] = start < data.length ? Buffer.from(data.subarray(start)) : undefined
    this.append(lines)
  }

  // What is left of each stream's last line, written without a newline (dockerd's copier at EOF).
  flushPartials(nanos: bigint): void {
    if (this.closed) return
    this.closed = true
    const time = formatStoredTime(nanos)
    const lines: Array<Buffer> = []
    for (const stream of ["stdout", "stderr"] as const) {
      const rest = this.partial[stream]
      if (rest !== undefined) lines.push(entryLine(stream, rest, time))
      this.partial[stream] = undefined
    }
    this.append(lines)
  }

  closeFile(): void {
    const fd = this.fd
    this.fd = undefined
    if (fd !== undefined) fs.closeSync(fd)
  }

  // One write for the entries that fit; rotation between entries where the next would not.
  private append(lines: ReadonlyArray<Buffer>): void {
    let batch: Array<Buffer> = []
    let batchBytes = 0
    for (const line of lines) {
      const used = this.size + batchBytes
      if (this.maxSize > 0 && used > 0 && used + line.length > this.maxSize) {
        this.writeOut(batch)
        batch = []
        batchBytes = 0
        this.rotate()
      }
      batch.push(line)
      batchBytes += line.length
    }
    this.writeOut(batch)
  }

  private writeOut(lines: ReadonlyArray<Buffer>): void {
    if (lines.length === 0) return
    if (this.fd === undefined) this.open()
    const fd = this.fd!
    const data = lines.length === 1 ? lines[0]! : Buffer.concat(lines)
    for (let offset = 0; offset < data.length;) {
      const written = fs.writeSync(fd, data, offset, data.length - offset)
      offset += written
      this.size += written
    }
  }

  // dockerd's loggerutils rotate(): drop the oldest, shift the others up, begin a new x.log.
  private rotate(): void {
    this.closeFile()
    if (this.maxFiles > 1) {
      fs.rmSync(`${this.file}.${this.maxFiles - 1}`, { force: true })
      for (let i = this.maxFiles - 1; i > 1; i--) renameIfThere(`${this.file}.${i - 1}`, `${this.file}.${i}`)
      renameIfThere(this.file, `${this.file}.1`)
    }
    const { O_APPEND, O_CREAT, O_TRUNC, O_WRONLY } = fs.constants
    this.fd = fs.openSync(this.file, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC, FILE_MODE)
    this.size = 0
  }
}

