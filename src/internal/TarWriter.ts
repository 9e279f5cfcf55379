/**
 * Writing a tar archive as a stream: one ustar header per member, its bytes,
 * the padding to the next 512-byte block, and the two zero blocks that end the
 * archive. The writer never holds a member: the caller gives each member's size
 * up front (as a header needs it) and its bytes as a stream, which is checked
 * against that size so a short or long member fails instead of shifting every
 * member after it. What `OciArchive.ts` reads, this writes.
 */
import { Data, Effect, Stream } from "effect"
import { BLOCK } from "./OciArchive.ts"

/** The largest size an octal field of 11 digits holds; larger sizes are written base-256, as GNU tar and Go's archive/tar. */
const MAX_OCTAL = 0o77777777777

/** One member of an archive: a directory, or a file whose bytes are streamed. */
export type TarMember<E> =
  | { readonly _tag: "Directory"; readonly name: string }
  | { readonly _tag: "File"; readonly name: string; readonly size: number; readonly data: Stream.Stream<Uint8Array, E> }

/** A member that cannot be written: its bytes differ from the size its header gives, or its name does not fit. */
export class TarError extends Data.TaggedError("TarError")<{ readonly member: string; readonly message: string }> {}

const sizeMismatch = (member: string, expected: number, actual: number) =>
  new TarError({ member, message: `${member}: expected ${expected} bytes, got ${actual}` })

const octal = (value: number, length: number) => value.toString(8).padStart(length - 1, "0") + "\0"

/** Whether a name fits a ustar header's 100-byte name field (every name an image archive has does). */
const fits = (name: string) => Buffer.byteLength(name) <= 100

/** The ustar header of a member whose name `fits`. */
export const tarHeader = (name: string, size: number, type: "0" | "5"): Uint8Array => {
  const header = Buffer.alloc(BLOCK, 0)
  header.write(name, 0, 100, "utf8")
  header.write(octal(type === "5" ? 0o755 : 0o644, 8), 100, "ascii")
  header.write(octal(0, 8), 108, "ascii")
  header.write(octal(0, 8), 116, "ascii")
  if (size <= MAX_OCTAL) {
    header.write(octal(size, 12), 124, "ascii")
  } else {
    header[124] = 0x80
    let rest = size
    for (let i = 135; i > 124; i--) {
      header[i] = rest % 256
      rest = Math.floor(rest / 256)
    }
  }
  header.write(octal(0, 12), 136, "ascii")
  header.write("        ", 148, "ascii")
  header.write(type, 156, "ascii")
  header.write("ustar\0", 257, "ascii")
  header.write("00", 263, "ascii")
  let sum = 0
  for (const byte of header) sum += byte
  header.write(octal(sum, 7) + " ", 148, "ascii")
  return header
}

const padding = (size: number): Uint8Array => new Uint8Array((BLOCK - (size % BLOCK)) % BLOCK)

/** One member as the bytes of the archive; a file's stream fails with `TarError` if it is not `size` bytes. */
const memberBytes = <E>(member: TarMember<E>): Stream.Stream<Uint8Array, E | TarError> => {
  if (!fits(member.name)) return Stream.fail(new TarError({ member: member.name, message: `${member.name}: name over 100 bytes` }))
  if (member._tag === "Directory") {
    const name = member.name.endsWith("/") ? member.name : `${member.name}/`
    return Stream.succeed(tarHeader(name, 0, "5"))
  }
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
  return Stream.concat(Stream.sync(() => tarHeader(member.name, member.size, "0")), checked)
}

/** The archive of `members`, in order, ended by two zero blocks. */
export const tarStream = <E>(members: Stream.Stream<TarMember<E>, E>): Stream.Stream<Uint8Array, E | TarError> =>
  members.pipe(
    Stream.flatMap(memberBytes, { concurrency: 1 }),
    Stream.concat(Stream.sync(() => new Uint8Array(2 * BLOCK)))
  )
