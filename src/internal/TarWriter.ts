/**
 * Writing a tar archive as a stream: one header per member (a pax extended
 * header first for a name or link over ustar's 100 bytes, as Go's
 * `archive/tar` writes them), its bytes, the padding to the next 512-byte
 * block, and the two zero blocks that end the archive. The writer never holds
 * a member: the caller gives each member's size up front (as a header needs it)
 * and its bytes as a stream, which is checked against that size so a short or
 * long member fails instead of shifting every member after it. What
 * `OciArchive.ts` and `TarReader.ts` read, this writes.
 */
import { Data, Effect, Stream } from "effect"
import { BLOCK } from "./OciArchive.ts"

/** Who owns a member, its permission bits and its modification time; images' members have none (0644/0755, root, epoch). */
export interface TarMeta {
  /** Permission bits with setuid, setgid and sticky (`07777`). */
  readonly mode: number
  readonly uid: number
  readonly gid: number
  /** Seconds since the epoch. */
  readonly mtime: number
}

/** One member of an archive: a directory, a file whose bytes are streamed, or a link. */
export type TarMember<E> =
  | { readonly _tag: "Directory"; readonly name: string; readonly meta?: TarMeta | undefined }
  | {
    readonly _tag: "File"
    readonly name: string
    readonly size: number
    readonly data: Stream.Stream<Uint8Array, E>
    readonly meta?: TarMeta | undefined
  }
  | { readonly _tag: "Symlink"; readonly name: string; readonly target: string; readonly meta?: TarMeta | undefined }
  /** A hard link to an earlier member, `target` being that member's name. */
  | { readonly _tag: "Hardlink"; readonly name: string; readonly target: string; readonly meta?: TarMeta | undefined }

/** A member that cannot be written: its bytes differ from the size its header gives. */
export class TarError extends Data.TaggedError("TarError")<{ readonly member: string; readonly message: string }> {}

const sizeMismatch = (member: string, expected: number, actual: number) =>
  new TarError({ member, message: `${member}: expected ${expected} bytes, got ${actual}` })

/**
 * A numeric field: octal digits and a NUL, or base-256 (the high bit set) when
 * the value does not fit, as GNU tar and Go's archive/tar write large sizes and ids.
 */
const writeNumber = (header: Buffer, value: number, offset: number, length: number) => {
  if (value < 8 ** (length - 1)) {
    header.write(value.toString(8).padStart(length - 1, "0") + "\0", offset, "ascii")
    return
  }
  let rest = value
  for (let i = offset + length - 1; i > offset; i--) {
    header[i] = rest % 256
    rest = Math.floor(rest / 256)
  }
  header[offset] = 0x80
}

const DEFAULT_FILE: TarMeta = { mode: 0o644, uid: 0, gid: 0, mtime: 0 }
const DEFAULT_DIRECTORY: TarMeta = { mode: 0o755, uid: 0, gid: 0, mtime: 0 }

/** The ustar header of one member; `name` and `linkname` are cut to their fields (a pax header carries them whole). */
const ustarHeader = (name: string, size: number, type: string, meta: TarMeta, linkname = ""): Uint8Array => {
  const header = Buffer.alloc(BLOCK, 0)
  header.write(name, 0, 100, "utf8")
  writeNumber(header, meta.mode & 0o7777, 100, 8)
  writeNumber(header, meta.uid, 108, 8)
  writeNumber(header, meta.gid, 116, 8)
  writeNumber(header, size, 124, 12)
  writeNumber(header, Math.max(0, Math.floor(meta.mtime)), 136, 12)
  header.write("        ", 148, "ascii")
  header.write(type, 156, "ascii")
  header.write(linkname, 157, 100, "utf8")
  header.write("ustar\0", 257, "ascii")
  header.write("00", 263, "ascii")
  let sum = 0
  for (const byte of header) sum += byte
  header.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "ascii")
  return header
}

/** One pax record, `"<length> <key>=<value>\n"`, whose length counts its own digits. */
const paxRecord = (key: string, value: string): string => {
  const body = ` ${key}=${value}\n`
  const bodyLength = Buffer.byteLength(body)
  let length = bodyLength + String(bodyLength).length
  if (String(length).length !== String(bodyLength).length) length = bodyLength + String(length).length
  return `${length}${body}`
}

const padding = (size: number): Uint8Array => new Uint8Array((BLOCK - (size % BLOCK)) % BLOCK)

/** The headers of a member: a pax header first when its name or link target is over 100 bytes. */
const headersOf = (name: string, size: number, type: string, meta: TarMeta, linkname = ""): Uint8Array => {
  const records = (Buffer.byteLength(name) > 100 ? paxRecord("path", name) : "") +
    (Buffer.byteLength(linkname) > 100 ? paxRecord("linkpath", linkname) : "")
  const ustar = ustarHeader(name, size, type, meta, linkname)
  if (records === "") return ustar
  const data = Buffer.from(records, "utf8")
  const paxName = `PaxHeaders.0/${name.split("/").filter((c) => c !== "").pop() ?? ""}`.slice(0, 100)
  return Buffer.concat([ustarHeader(paxName, data.length, "x", meta), data, padding(data.length), ustar])
}

/** One member as the bytes of the archive; a file's stream fails with `TarError` if it is not `size` bytes. */
const memberBytes = <E>(member: TarMember<E>): Stream.Stream<Uint8Array, E | TarError> => {
  switch (member._tag) {
    case "Directory": {
      const name = member.name.endsWith("/") ? member.name : `${member.name}/`
      return Stream.sync(() => headersOf(name, 0, "5", member.meta ?? DEFAULT_DIRECTORY))
    }
    case "Symlink":
      return Stream.sync(() => headersOf(member.name, 0, "2", member.meta ?? DEFAULT_FILE, member.target))
    case "Hardlink":
      return Stream.sync(() => headersOf(member.name, 0, "1", member.meta ?? DEFAULT_FILE, member.target))
    case "File": {
      let written = 0
      const checked = member.data.pipe(
        Stream.mapEffect((chunk) => {
          written += chunk.byteLength
          return written > member.size
            ? Effect.fail(sizeMismatch(member.name, member.size, written))
            : Effect.succeed(chunk)
        }),
        Stream.concat(Stream.suspend(() =>
          written === member.size
            ? Stream.succeed(padding(member.size))
            : Stream.fail(sizeMismatch(member.name, member.size, written))
        ))
      )
      return Stream.concat(Stream.sync(() => headersOf(member.name, member.size, "0", member.meta ?? DEFAULT_FILE)), checked)
    }
  }
}

/** The archive of `members`, in order, ended by two zero blocks. */
export const tarStream = <E, R>(members: Stream.Stream<TarMember<E>, E, R>): Stream.Stream<Uint8Array, E | TarError, R> =>
  members.pipe(
    Stream.flatMap(memberBytes, { concurrency: 1 }),
    Stream.concat(Stream.sync(() => new Uint8Array(2 * BLOCK)))
  )
