/**
 * Docker's json-file log driver for one container: what the container writes to
 * stdout and stderr, kept as dockerd's `daemon/logger/jsonfilelog` keeps it, so
 * `docker logs` through our API — and any tool that reads `<id>-json.log` files
 * directly — sees what it would see with dockerd.
 *
 * The file holds one JSON object a line, byte for byte as dockerd writes it:
 * `{"log":"hello\n","stream":"stdout","time":"2026-12-02T03:04:05.123456789Z"}`
 * (Go's string escaping, `<` `>` `&` U+2028 U+2029 included; `time` in Go's
 * RFC3339Nano, UTC, trailing zeros of the fraction dropped). Output is cut into
 * entries as dockerd's `logger.Copier` cuts it: a line keeps its `\n`; a line
 * that reaches 16 KiB without one is written as an entry of its own with no
 * `\n` (a partial entry; the rest follows in the next), and what is left of a
 * line when the writer closes is written the same way.
 *
 * Rotation is dockerd's `loggerutils.LogFile`: with `maxSize` set, before an
 * entry that would take `x.log` past it, `x.log.{maxFiles-1}` is dropped, each
 * `x.log.i` becomes `x.log.{i+1}`, `x.log` becomes `x.log.1` and a new `x.log`
 * is begun, so at most `maxFiles` files exist. With `maxFiles` 1 (the default)
 * `x.log` is truncated in place. Without `maxSize` the file grows without limit
 * (dockerd's default too).
 *
 * Reading it back is `JsonLogReader.ts`.
 *
 * Gotcha: dockerd rotates once a file has reached `max-size`, so its files pass
 * it by up to one entry; here the check comes before the write, so a file
 * exceeds `maxSize` only when one entry alone does.
 */
import { Clock, Effect, Schema, type Scope } from "effect"
import { Appender, type LogStream } from "./JsonLogFile.ts"


/** The log file could not be opened, written, rotated or read, or the options are invalid. */
export class JsonLogError extends Schema.TaggedError<JsonLogError>()("JsonLogError", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}


/** How a container's log file is written. */
export interface WriterOptions {
  /** The log file, e.g. `<container dir>/<id>-json.log`. */
  readonly path: string
  /** Rotate before the file would pass this many bytes; unset or -1: never (dockerd's `max-size`). */
  readonly maxSize?: number | undefined
  /** The most files kept, `x.log` included; default 1 (dockerd's `max-file`). */
  readonly maxFiles?: number | undefined
}

/** Appends a container's output to its log file. */
export interface JsonLogWriter {
  /** Adds a chunk of output; complete lines are written now, the rest kept for the next chunk. Failures are logged, as dockerd's copier does. */
  readonly write: (stream: LogStream, chunk: Uint8Array) => Effect.Effect<void>
  /** Writes what is left of each stream's last line and closes the file; later writes are dropped. */
  readonly close: Effect.Effect<void>
}

/** Opens (creates or appends to) a container's json-file log; the scope closes it, writing what is left. */
export const makeWriter = Effect.fn("JsonLog.makeWriter")(
  function*(options: WriterOptions): Effect.fn.Return<JsonLogWriter, JsonLogError, Scope.Scope> {
    const maxSize = options.maxSize ?? -1
    const maxFiles = options.maxFiles ?? 1
    if (maxSize !== -1 && !(maxSize > 0)) {
      return yield* new JsonLogError({ message: `maxSize must be a positive number of bytes or -1, got ${maxSize}` })
    }
    if (!Number.isInteger(maxFiles) || maxFiles < 1) {
      return yield* new JsonLogError({ message: `maxFiles must be an integer of at least 1, got ${maxFiles}` })
    }
    const appender = new Appender(options.path, maxSize, maxFiles)
    yield* Effect.try({
      try: () => appender.open(),
      catch: (cause) => new JsonLogError({ message: `could not open ${options.path}`, cause })
    })

    // As dockerd's copier, a failed write is logged and the output dropped: the container must not
    // stop because its log cannot be written. Logged once per run of failures.
    let failing = false
    const attempt = (what: string, run: (nanos: bigint) => void): Effect.Effect<void> =>
      Clock.clockWith((clock) =>
        Effect.try({
          // The time is read in the same synchronous step as the write, so entries are in time order.
          try: () => {
            run(clock.currentTimeNanosUnsafe())
            failing = false
          },
          catch: (cause) => new JsonLogError({ message: `could not ${what} ${options.path}`, cause })
        })
      ).pipe(
        Effect.catch((error) => {
          if (failing) return Effect.void
          failing = true
          return Effect.logWarning(error.message, error.cause)
        })
      )

    const close = Effect.andThen(
      attempt("write", (nanos) => appender.flushPartials(nanos)),
      attempt("close", () => appender.closeFile())
    )
    yield* Effect.addFinalizer(() => close)
    return {
      write: (stream, chunk) => attempt("write", (nanos) => appender.write(stream, chunk, nanos)),
      close
    }
  }
)

// ---------------------------------------------------------------------------
