/**
 * A layer's tar stream, checked and measured as it passes: the diff ID (the
 * sha256 of the uncompressed tar) and whether it is a tar at all, read with the
 * rules of Go's `archive/tar` that containerd's differ and dockerd apply, so a
 * layer we accept is one they unpack, and a broken one is refused before any
 * image names it. The bytes flow through in chunks; nothing is kept but one
 * header block.
 *
 * The compression is told by its magic bytes, as moby's `DecompressStream`:
 * gzip is inflated here (Node's zlib); bzip2, xz and zstd are named and refused.
 */
import { NodeStream } from "@effect/platform-node"
import { Effect, Sink, Stream } from "effect"
import * as crypto from "node:crypto"
import * as zlib from "node:zlib"
import { type ContainerdError, invalidArgument } from "../domain/ContainerdError.ts"
import { BLOCK, field } from "./OciArchive.ts"

/** How a layer's bytes are compressed. */
export type Compression = "none" | "gzip" | "bzip2" | "xz" | "zstd"

const MAGIC: ReadonlyArray<readonly [Compression, ReadonlyArray<number>]> = [
  ["gzip", [0x1f, 0x8b, 0x08]],
  ["bzip2", [0x42, 0x5a, 0x68]],
  ["xz", [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ["zstd", [0x28, 0xb5, 0x2f, 0xfd]]
]

/** The compression the first bytes of a stream announce (moby's `DetectCompression`). */
export const detectCompression = (head: Uint8Array): Compression =>
  MAGIC.find(([, magic]) => magic.length <= head.length && magic.every((byte, i) => head[i] === byte))?.[0] ?? "none"

/** What the tar reader says of a stream that is not a tar (Go's `archive/tar` errors, with where). */
type TarProblem = string

/**
 * A tar reader that only checks: each header's checksum and size field, that
 * every member's data is there, and that nothing follows the end marker's
 * first zero block but a second one. An empty stream is an empty tar, as Go's
 * reader has it.
 */
const makeTarChecker = () => {
  const header = Buffer.alloc(BLOCK)
  let filled = 0
  /** Bytes of member data and padding still to come. */
  let skip = 0
  let position = 0
  let zeroBlocks = 0
  let ended = false

  const checkHeader = (): TarProblem | undefined => {
    const at = position - BLOCK
    if (header.every((byte) => byte === 0)) {
      zeroBlocks++
      if (zeroBlocks === 2) ended = true
      return undefined
    }
    if (zeroBlocks > 0) return `archive/tar: invalid tar header (at byte ${at})`
    const given = field(header, 148, 8).trim()
    let unsigned = 0
    let signed = 0
    for (let i = 0; i < BLOCK; i++) {
      const byte = i >= 148 && i < 156 ? 0x20 : header[i]!
      unsigned += byte
      signed += byte > 127 ? byte - 256 : byte
    }
    if (!/^[0-7]+$/.test(given) || (parseInt(given, 8) !== unsigned && parseInt(given, 8) !== signed)) {
      return `archive/tar: invalid tar header (at byte ${at})`
    }
    let size: number
    if ((header[124]! & 0x80) !== 0) {
      size = header[124]! & 0x7f
      for (let i = 125; i < 136; i++) size = size * 256 + header[i]!
    } else {
      const text = field(header, 124, 12).trim()
      if (!/^[0-7]*$/.test(text)) return `archive/tar: invalid tar header (at byte ${at}: size ${JSON.stringify(text)})`
      size = text === "" ? 0 : parseInt(text, 8)
    }
    // Links, directories, devices and FIFOs carry no data whatever their size field says (Go's reader).
    const type = String.fromCharCode(header[156]!)
    if (["1", "2", "3", "4", "5", "6"].includes(type)) size = 0
    skip = Math.ceil(size / BLOCK) * BLOCK
    return undefined
  }

  return {
    /** Reads a chunk; a problem ends the reading. */
    feed: (chunk: Uint8Array): TarProblem | undefined => {
      let at = 0
      while (at < chunk.length && !ended) {
        if (skip > 0) {
          const n = Math.min(skip, chunk.length - at)
          skip -= n
          at += n
          position += n
          continue
        }
        const n = Math.min(BLOCK - filled, chunk.length - at)
        header.set(chunk.subarray(at, at + n), filled)
        filled += n
        at += n
        position += n
        if (filled === BLOCK) {
          filled = 0
          const problem = checkHeader()
          if (problem !== undefined) return problem
        }
      }
      return undefined
    },
    /** The stream ended: a header or member cut short is Go's `unexpected EOF`. */
    end: (): TarProblem | undefined => (filled > 0 || skip > 0 ? `unexpected EOF (the tar ends at byte ${position})` : undefined)
  }
}

const METHOD = "Images.import"

/** What a layer stream turned out to be. */
export interface MeasuredLayer {
  readonly compression: Compression
  /** sha256 of the uncompressed tar. */
  readonly diffId: string
}

/**
 * Reads a layer stream to its end: its compression, its diff ID, and whether
 * the tar in it is whole. A broken tar, a broken gzip stream or a compression
 * we cannot read fails with InvalidArgument, saying so as dockerd's import does
 * ("Error processing tar file: ...").
 */
export const measureLayer = <E>(bytes: Stream.Stream<Uint8Array, E>): Effect.Effect<MeasuredLayer, E | ContainerdError> =>
  Effect.gen(function*() {
    const problem = (message: string) => invalidArgument(METHOD, `Error processing tar file: ${message}`)
    const [head, rest] = yield* Stream.peel(bytes, sinkHead)
    const compression = detectCompression(head)
    if (compression !== "none" && compression !== "gzip") {
      return yield* Effect.fail(problem(`${compression} compression is not supported (use a tar or a gzip-compressed tar)`))
    }
    const whole = Stream.concat(Stream.make(head), rest)
    const tar: Stream.Stream<Uint8Array, E | ContainerdError> = compression === "gzip"
      ? NodeStream.pipeThroughDuplex(whole, {
        evaluate: () => zlib.createGunzip(),
        onError: (error) => problem(`gzip: ${error instanceof Error ? error.message : String(error)}`)
      })
      : whole
    const hash = crypto.createHash("sha256")
    const checker = makeTarChecker()
    yield* Stream.runForEach(tar, (chunk) => {
      hash.update(chunk)
      const found = checker.feed(chunk)
      return found === undefined ? Effect.void : Effect.fail(problem(found))
    })
    const found = checker.end()
    if (found !== undefined) return yield* Effect.fail(problem(found))
    return { compression, diffId: `sha256:${hash.digest("hex")}` }
  }).pipe(Effect.scoped)

/** The first bytes of a stream, enough to tell its compression (fewer if it is shorter). */
const sinkHead = Sink.fold(
  (): Uint8Array => new Uint8Array(0),
  (acc) => acc.length < 6,
  (acc, chunk: Uint8Array) => Effect.succeed<Uint8Array>(Buffer.concat([acc, chunk]))
)
