/**
 * Reading a tar archive as it arrives: a push parser over a byte stream that
 * hands each member's header to the caller, then that member's bytes chunk by
 * chunk as they come, so an archive of any size passes through with at most a
 * header (or a pax/GNU long-name record) held. ustar, pax extended headers
 * (`path`, `linkpath`, `size`, `uid`, `gid`, `mtime`) and GNU long names
 * (`L`, `K`) are understood, as Go's `archive/tar`, which the Docker CLI writes
 * its `docker cp` archives with. What `TarWriter.ts` writes, this reads.
 */
import { Data, Effect, Stream } from "effect"
import { BLOCK, field, numeric, paxRecord } from "./OciArchive.ts"

/** What a member is; anything else (devices, fifos) is `Other`. */
export type TarEntryKind = "File" | "Directory" | "Symlink" | "Hardlink" | "Other"

/** One member's header, long names and pax records applied. */
export interface TarEntry {
  readonly name: string
  readonly kind: TarEntryKind
  /** The header's type flag, for the message about an `Other`. */
  readonly typeflag: string
  readonly size: number
  /** A link's target (a symlink's text, or the earlier member a hard link names). */
  readonly linkname: string
  /** Permission bits with setuid, setgid and sticky. */
  readonly mode: number
  readonly uid: number
  readonly gid: number
  /** Seconds since the epoch (fractional from a pax `mtime`). */
  readonly mtime: number
}

/** Where a member's bytes go: each chunk as it arrives, then its end. */
export interface TarEntrySink<E, R> {
  readonly write: (chunk: Uint8Array) => Effect.Effect<void, E, R>
  readonly end: Effect.Effect<void, E, R>
}

/** An archive that is not a tar, or one cut off. */
export class TarFormatError extends Data.TaggedError("TarFormatError")<{ readonly message: string }> {}

/** The most a pax or GNU long-name record may hold (Go's archive/tar allows 1 MiB of pax records too). */
const MAX_META = 1024 * 1024

const kindOf = (typeflag: string): TarEntryKind => {
  switch (typeflag) {
    case "0":
    case "\0":
    case "7":
      return "File"
    case "5":
      return "Directory"
    case "2":
      return "Symlink"
    case "1":
      return "Hardlink"
    default:
      return "Other"
  }
}

const checksumOk = (header: Buffer): boolean => {
  const stored = numeric(header, 148, 8)
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!
  return sum === stored
}

/** The pending records of a pax header or GNU long name, for the next member. */
interface Pending {
  path?: string | undefined
  linkpath?: string | undefined
  size?: number | undefined
  uid?: number | undefined
  gid?: number | undefined
  mtime?: number | undefined
}

const paxNumber = (records: Buffer, key: string): number | undefined => {
  const value = paxRecord(records, key)
  return value === undefined || value.trim() === "" || Number.isNaN(Number(value)) ? undefined : Number(value)
}

/**
 * Reads the archive `body`, calling `onEntry` for each member (in order) and
 * feeding the sink it returns that member's bytes. Ends at the archive's two
 * zero blocks (what follows is not read) or at the end of the stream between
 * members; fails with `TarFormatError` on a bad header or a member cut off.
 */
export const readTar = <E, R, E2, R2>(
  body: Stream.Stream<Uint8Array, E, R>,
  onEntry: (entry: TarEntry) => Effect.Effect<TarEntrySink<E2, R2>, E2, R2>
): Effect.Effect<void, E | E2 | TarFormatError, R | R2> =>
  Effect.suspend(() => {
    let header = Buffer.alloc(BLOCK)
    let headerFill = 0
    let zeroBlocks = 0
    let done = false
    let pending: Pending = {}
    /** The member being read: its sink (undefined for a record or skipped bytes), what is left of its bytes, then its padding. */
    let sink: TarEntrySink<E2, R2> | undefined
    let meta: { readonly type: string; readonly chunks: Array<Buffer> } | undefined
    let remaining = 0
    let padding = 0

    const bad = (message: string): Effect.Effect<never, TarFormatError> => Effect.fail(new TarFormatError({ message }))

    const endMember: Effect.Effect<void, E2, R2> = Effect.suspend(() => {
      const ended = sink?.end ?? Effect.void
      sink = undefined
      if (meta !== undefined) {
        const records = Buffer.concat(meta.chunks)
        if (meta.type === "L") pending.path = field(records, 0, records.length)
        else if (meta.type === "K") pending.linkpath = field(records, 0, records.length)
        else if (meta.type === "x") {
          pending = {
            ...pending,
            ...Object.fromEntries(
              [
                ["path", paxRecord(records, "path")],
                ["linkpath", paxRecord(records, "linkpath")],
                ["size", paxNumber(records, "size")],
                ["uid", paxNumber(records, "uid")],
                ["gid", paxNumber(records, "gid")],
                ["mtime", paxNumber(records, "mtime")]
              ].filter(([, value]) => value !== undefined)
            )
          }
        }
        meta = undefined
      }
      return ended
    })

    /** A whole header block: a record to collect, a member to hand over, or an end block. */
    const onHeader = (block: Buffer): Effect.Effect<void, E2 | TarFormatError, R2> =>
      Effect.suspend((): Effect.Effect<void, E2 | TarFormatError, R2> => {
        if (block.every((byte) => byte === 0)) {
          zeroBlocks++
          if (zeroBlocks === 2) done = true
          return Effect.void
        }
        zeroBlocks = 0
        if (!checksumOk(block)) return bad("archive/tar: invalid tar header")
        const typeflag = String.fromCharCode(block[156]!)
        const size = pending.size ?? numeric(block, 124, 12)
        if (!Number.isSafeInteger(size) || size < 0) return bad("archive/tar: invalid tar header")
        remaining = size
        padding = (BLOCK - (size % BLOCK)) % BLOCK
        if (typeflag === "x" || typeflag === "L" || typeflag === "K" || typeflag === "g") {
          if (size > MAX_META) return bad(`archive/tar: a ${typeflag} record of ${size} bytes is over ${MAX_META}`)
          // A global pax header is read and dropped: Go's writer never emits one for docker cp.
          meta = { type: typeflag, chunks: [] }
          if (typeflag !== "g") pending.size = undefined
          return remaining === 0 ? endMember : Effect.void
        }
        const magic = field(block, 257, 6)
        const prefix = magic === "ustar" ? field(block, 345, 155) : ""
        const plain = field(block, 0, 100)
        const entry: TarEntry = {
          name: pending.path ?? (prefix === "" ? plain : `${prefix}/${plain}`),
          kind: kindOf(typeflag),
          typeflag,
          size,
          linkname: pending.linkpath ?? field(block, 157, 100),
          mode: numeric(block, 100, 8) & 0o7777,
          uid: pending.uid ?? numeric(block, 108, 8),
          gid: pending.gid ?? numeric(block, 116, 8),
          mtime: pending.mtime ?? numeric(block, 136, 12)
        }
        pending = {}
        return Effect.flatMap(onEntry(entry), (given) => {
          sink = given
          return remaining === 0 ? endMember : Effect.void
        })
      })

    const push = (chunk: Uint8Array): Effect.Effect<void, E2 | TarFormatError, R2> =>
      Effect.gen(function*() {
        let at = 0
        while (at < chunk.byteLength && !done) {
          if (remaining > 0) {
            const take = Math.min(remaining, chunk.byteLength - at)
            const piece = chunk.subarray(at, at + take)
            at += take
            remaining -= take
            if (meta !== undefined) meta.chunks.push(Buffer.from(piece))
            else if (sink !== undefined) yield* sink.write(piece)
            if (remaining === 0) yield* endMember
          } else if (padding > 0) {
            const take = Math.min(padding, chunk.byteLength - at)
            at += take
            padding -= take
          } else {
            const take = Math.min(BLOCK - headerFill, chunk.byteLength - at)
            header.set(chunk.subarray(at, at + take), headerFill)
            headerFill += take
            at += take
            if (headerFill === BLOCK) {
              const block = header
              header = Buffer.alloc(BLOCK)
              headerFill = 0
              yield* onHeader(block)
            }
          }
        }
      })

    return Stream.runForEach(body, (chunk) => (done ? Effect.void : push(chunk))).pipe(
      Effect.andThen(Effect.suspend(() =>
        done || (remaining === 0 && padding === 0 && headerFill === 0 && meta === undefined)
          ? Effect.void
          : bad("unexpected EOF")
      ))
    )
  })
