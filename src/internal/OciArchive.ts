/**
 * Reading an OCI image layout (image-spec `image-layout.md`): a directory, or a
 * tar of one as `skopeo copy … oci-archive:` and `docker save` write.
 *
 * A tar is not unpacked: one pass over its headers finds where each member's
 * bytes are, then documents are read and blobs streamed straight from the
 * file at those offsets. Only uncompressed tars are read (as `ctr import`);
 * ustar, pax and GNU long names are understood.
 */
import { NodeStream } from "@effect/platform-node"
import { Effect, Stream } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { ContainerdError, invalidArgument } from "../domain/ContainerdError.ts"

/** The files of a layout, by their path inside it (`index.json`, `blobs/sha256/…`). */
export interface OciLayout {
  /** The archive or directory it was opened from. */
  readonly source: string
  /** Reads a member whole (it must be at most `limit` bytes). */
  readonly read: (name: string, limit: number) => Effect.Effect<Uint8Array, ContainerdError>
  /** Streams a member from `offset`. */
  readonly stream: (name: string, offset: number) => Stream.Stream<Uint8Array, ContainerdError>
  /** The size of a member; fails if there is none of that name. */
  readonly size: (name: string) => Effect.Effect<number, ContainerdError>
  /** Whether there is a member of that name. */
  readonly has: (name: string) => Effect.Effect<boolean>
}

const METHOD = "Images.import"

interface Member {
  readonly offset: number
  readonly size: number
}

/** A tar block: headers and data come in these. */
export const BLOCK = 512

/** A NUL-terminated string field of a tar header. */
export const field = (header: Buffer, start: number, length: number): string => {
  const raw = header.subarray(start, start + length)
  const end = raw.indexOf(0)
  return raw.subarray(0, end === -1 ? length : end).toString("utf8")
}

/** A numeric field of a tar header: octal text, or base-256 when the high bit is set (GNU, for sizes ≥ 8 GiB). */
export const numeric = (header: Buffer, start: number, length: number): number => {
  const raw = header.subarray(start, start + length)
  if ((raw[0]! & 0x80) !== 0) {
    let value = raw[0]! & 0x7f
    for (let i = 1; i < length; i++) value = value * 256 + raw[i]!
    return value
  }
  const text = field(header, start, length).trim()
  return text === "" ? 0 : parseInt(text, 8)
}

/** A record (`path`, `linkpath`, `size`) of a pax extended header, if it has it. */
export const paxRecord = (records: Buffer, key: string): string | undefined => {
  let at = 0
  while (at < records.length) {
    const space = records.indexOf(0x20, at)
    if (space === -1) break
    const length = Number(records.subarray(at, space).toString("ascii"))
    if (!Number.isInteger(length) || length <= 0) break
    const record = records.subarray(space + 1, at + length - 1).toString("utf8")
    const equals = record.indexOf("=")
    if (record.slice(0, equals) === key) return record.slice(equals + 1)
    at += length
  }
  return undefined
}

const normalise = (name: string) => path.posix.normalize(name).replace(/^(\.\/)+|^\/+/, "").replace(/\/$/, "")

const readAt = (fd: number, position: number, length: number) =>
  Effect.callback<Buffer, NodeJS.ErrnoException>((resume) => {
    const buffer = Buffer.alloc(length)
    fs.read(fd, buffer, 0, length, position, (error, bytes) =>
      resume(error ? Effect.fail(error) : Effect.succeed(buffer.subarray(0, bytes))))
  })

/** Finds every regular file of a tar and where its bytes are. */
const indexTar = (file: string, fd: number, size: number) =>
  Effect.gen(function*() {
    const members = new Map<string, Member>()
    let position = 0
    let longName: string | undefined
    while (position + BLOCK <= size) {
      const header = yield* readAt(fd, position, BLOCK)
      if (header.length < BLOCK) break
      if (header.every((byte) => byte === 0)) break
      const magic = field(header, 257, 6)
      if (magic !== "ustar" && magic !== "ustar ") {
        return yield* Effect.fail(invalidArgument(METHOD, `${file} is not an uncompressed tar archive (no ustar header at byte ${position})`))
      }
      const length = numeric(header, 124, 12)
      const type = String.fromCharCode(header[156]!)
      const data = position + BLOCK
      position = data + Math.ceil(length / BLOCK) * BLOCK
      // A cut-off archive (an upload that broke off) must not pass for a shorter member.
      if (data + length > size) {
        return yield* Effect.fail(invalidArgument(METHOD, `${file} is truncated: its member at byte ${data - BLOCK} ends after the end of the file`))
      }
      if (type === "x" || type === "L") {
        const body = yield* readAt(fd, data, length)
        longName = type === "L" ? field(body, 0, body.length) : paxRecord(body, "path") ?? longName
        continue
      }
      if (type === "g") continue
      const prefix = field(header, 345, 155)
      const name = longName ?? (prefix === "" ? field(header, 0, 100) : `${prefix}/${field(header, 0, 100)}`)
      longName = undefined
      if (type === "0" || type === "\0" || type === "7") members.set(normalise(name), { offset: data, size: length })
    }
    return members
  })

/** Opens a layout directory or archive; the file is closed when the scope closes. */
export const openOciLayout = (source: string) =>
  Effect.gen(function*() {
    const stat = yield* Effect.tryPromise({
      try: () => fs.promises.stat(source),
      catch: (cause) => invalidArgument(METHOD, `cannot read ${source}: ${(cause as Error).message}`)
    })
    const readFailed = (name: string) => (cause: unknown) =>
      invalidArgument(METHOD, `cannot read ${name} in ${source}: ${(cause as Error).message ?? String(cause)}`)
    const missing = (name: string) => invalidArgument(METHOD, `${source} has no ${name}: it is not an OCI image layout`)
    const tooLarge = (name: string, limit: number) => invalidArgument(METHOD, `${name} in ${source} is over ${limit} bytes`)

    if (stat.isDirectory()) {
      const resolve = (name: string) => path.join(source, ...normalise(name).split("/"))
      const layout: OciLayout = {
        source,
        read: (name, limit) =>
          Effect.tryPromise({ try: () => fs.promises.stat(resolve(name)), catch: () => missing(name) }).pipe(
            Effect.filterOrFail((s) => s.size <= limit, () => tooLarge(name, limit)),
            Effect.andThen(Effect.tryPromise({ try: () => fs.promises.readFile(resolve(name)), catch: readFailed(name) }))
          ),
        stream: (name, offset) =>
          NodeStream.fromReadable({ evaluate: () => fs.createReadStream(resolve(name), { start: offset }), onError: readFailed(name) }),
        size: (name) => Effect.tryPromise({ try: () => fs.promises.stat(resolve(name)), catch: () => missing(name) }).pipe(Effect.map((s) => s.size)),
        has: (name) =>
          Effect.tryPromise(() => fs.promises.stat(resolve(name))).pipe(
            Effect.map((s) => s.isFile()),
            Effect.orElseSucceed(() => false)
          )
      }
      return layout
    }

    const fd = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => fs.promises.open(source, "r"), catch: readFailed(source) }),
      (handle) => Effect.promise(() => handle.close())
    )
    const members = yield* indexTar(source, fd.fd, stat.size).pipe(
      Effect.mapError((error) => error instanceof ContainerdError ? error : readFailed(source)(error))
    )
    const member = (name: string): Effect.Effect<Member, ContainerdError> => {
      const found = members.get(normalise(name))
      return found === undefined ? Effect.fail(missing(name)) : Effect.succeed(found)
    }
    const layout: OciLayout = {
      source,
      read: (name, limit) =>
        member(name).pipe(
          Effect.filterOrFail((m) => m.size <= limit, () => tooLarge(name, limit)),
          Effect.flatMap((m) => readAt(fd.fd, m.offset, m.size).pipe(Effect.mapError(readFailed(name))))
        ),
      stream: (name, offset) =>
        Stream.unwrap(Effect.map(member(name), (m) =>
          m.size <= offset
            ? Stream.empty
            : NodeStream.fromReadable({
              evaluate: () =>
                fs.createReadStream(source, { start: m.offset + offset, end: m.offset + m.size - 1 }),
              onError: readFailed(name)
            }))),
      size: (name) => Effect.map(member(name), (m) => m.size),
      has: (name) => Effect.sync(() => members.has(normalise(name)))
    }
    return layout
  })
