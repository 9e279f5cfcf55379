/**
 * The size of a layer as Docker shows it (`docker history`, dockerd 20.10's
 * `DiffSize` of an overlay2 layer: moby's `directory.Size`): the bytes of its
 * regular files, each hard-linked file once, plus the length of each symbolic
 * link's target; directories count nothing. Read from the layer's tar in one
 * streamed pass over its headers (decompressed as it streams), without holding
 * any member, so it needs nothing unpacked and matches dockerd exactly where a
 * snapshot's disk usage (counted in blocks) does not.
 */
import { NodeStream } from "@effect/platform-node"
import { Effect, Stream } from "effect"
import * as zlib from "node:zlib"
import { type ContainerdError, invalidArgument } from "../domain/ContainerdError.ts"
import { BLOCK, field, numeric, paxRecord } from "./OciArchive.ts"

/** pax and GNU long-name bodies are kept to read them; larger ones are not headers any tool writes. */
const MAX_META = 1024 * 1024

/** A counter of the sizes in a tar, fed chunk by chunk. */
const tarCounter = () => {
  let total = 0
  let header = Buffer.alloc(0)
  let skip = 0
  let meta: { type: string; size: number; chunks: Array<Buffer>; got: number } | undefined
  let pax: Buffer | undefined
  let longLink: string | undefined
  let ended = false

  const onHeader = (block: Buffer) => {
    if (block.every((byte) => byte === 0)) {
      ended = true
      return
    }
    const type = String.fromCharCode(block[156]!)
    const size = numeric(block, 124, 12)
    const padded = Math.ceil(size / BLOCK) * BLOCK
    if (type === "x" || type === "K" || type === "L") {
      if (size > MAX_META) return void (skip = padded)
      meta = { type, size, chunks: [], got: 0 }
      skip = padded
      return
    }
    skip = padded
    if (type === "g") return
    const paxSize = pax === undefined ? undefined : paxRecord(pax, "size")
    const link = (pax === undefined ? undefined : paxRecord(pax, "linkpath")) ?? longLink ?? field(block, 157, 100)
    pax = undefined
    longLink = undefined
    if (type === "0" || type === "\0" || type === "7") total += paxSize === undefined ? size : Number(paxSize)
    else if (type === "2") total += Buffer.byteLength(link)
  }

  const feed = (chunk: Uint8Array) => {
    let data = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    while (data.length > 0 && !ended) {
      if (skip > 0) {
        const take = Math.min(skip, data.length)
        if (meta !== undefined && meta.got < meta.size) {
          const keep = data.subarray(0, Math.min(take, meta.size - meta.got))
          meta.chunks.push(Buffer.from(keep))
          meta.got += keep.length
        }
        skip -= take
        data = data.subarray(take)
        if (skip === 0 && meta !== undefined) {
          const body = Buffer.concat(meta.chunks)
          if (meta.type === "x") pax = body
          else if (meta.type === "K") longLink = field(body, 0, body.length)
          meta = undefined
        }
        continue
      }
      const need = BLOCK - header.length
      header = Buffer.concat([header, data.subarray(0, need)])
      data = data.subarray(need)
      if (header.length === BLOCK) {
        const block = header
        header = Buffer.alloc(0)
        onHeader(block)
      }
    }
  }
  return { feed, total: () => total }
}

/** The decompressed bytes of a layer blob of `mediaType`. */
const decompressed = <E>(mediaType: string, bytes: Stream.Stream<Uint8Array, E>): Stream.Stream<Uint8Array, E | ContainerdError> => {
  const failed = (error: unknown) => invalidArgument("Images.layerSize", `cannot decompress the layer: ${String(error)}`)
  if (/gzip$/.test(mediaType)) return NodeStream.pipeThroughDuplex(bytes, { evaluate: () => zlib.createGunzip(), onError: failed })
  if (/zstd$/.test(mediaType)) {
    return NodeStream.pipeThroughDuplex(bytes, { evaluate: () => zlib.createZstdDecompress(), onError: failed })
  }
  return bytes
}

/** Docker's size of a layer from its blob (see the module header). */
export const layerSize = <E>(mediaType: string, bytes: Stream.Stream<Uint8Array, E>): Effect.Effect<number, E | ContainerdError> =>
  Effect.suspend(() => {
    const counter = tarCounter()
    return decompressed(mediaType, bytes).pipe(
      Stream.runForEach((chunk) => Effect.sync(() => counter.feed(chunk))),
      Effect.map(counter.total)
    )
  })
