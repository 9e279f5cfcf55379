/**
 * Writing one blob into containerd's content store over `Content.Write`.
 *
 * The first message opens the ingest `ref` with the expected digest and size.
 * containerd answers it with the ingest's offset, so a download that broke off
 * earlier is resumed from there rather than from zero; if the blob already
 * exists it fails with AlreadyExists instead, and (when a lease is set) adds the
 * blob to the lease, so the caller's claim on it is recorded in the same round
 * trip. If the store already has the bytes in another namespace, the offset is
 * the full size and the blob is committed without sending any data.
 *
 * The commit carries the expected digest and size, so containerd checks the
 * whole blob (including any part written before a resume) before it appears
 * under its digest. An ingest whose data is wrong is aborted; one that was cut
 * off is kept for the next attempt to resume.
 */
import { Deferred, Duration, Effect, Stream } from "effect"
import * as crypto from "node:crypto"
import { ContainerdError } from "../domain/ContainerdError.ts"
import type { Descriptor } from "../domain/Image.ts"
import { WriteAction } from "../gen/containerd/services/content/v1/content.ts"
import type { ContainerdClient } from "../services/Containerd.ts"

/** What to write. */
export interface WriteContent<E> {
  /** The ingest's name, shared by everyone writing the same blob: `layer-sha256:…`. */
  readonly ref: string
  readonly descriptor: Descriptor
  /** Labels of the committed blob (GC references, uncompressed digest, source). */
  readonly labels: Readonly<Record<string, string>>
  /** The blob's bytes from `offset` on. */
  readonly source: (offset: number) => Stream.Stream<Uint8Array, E>
  /** Whether a failure of the source leaves an ingest worth resuming (a cut, not bad data). */
  readonly resumable: (error: E) => boolean
  /** Told how many bytes containerd holds, after the first answer and after each write. */
  readonly onProgress?: ((offset: number) => Effect.Effect<void>) | undefined
}

/** Whether the blob was written now or was already there. */
export type WriteOutcome = "written" | "exists"

/** The deadline of a write: a minute, plus the blob's size at 100 KiB/s. */
const writeTimeout = (size: number) => Duration.sum(Duration.minutes(1), Duration.millis(size / 100))

/** Writes one blob; see the module header. */
export const writeContent = <E>(
  client: ContainerdClient,
  write: WriteContent<E>
): Effect.Effect<WriteOutcome, ContainerdError | E> =>
  Effect.gen(function*() {
    const { descriptor, ref } = write
    const opened = yield* Deferred.make<number>()
    let offset = 0
    const data = Stream.unwrap(Effect.map(Deferred.await(opened), (from) => {
      offset = from
      const rest = from >= descriptor.size ? Stream.empty : write.source(from)
      return rest.pipe(
        Stream.map((chunk) => {
          const request = {
            action: WriteAction.WRITE,
            ref,
            offset,
            data: Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
          }
          offset += chunk.byteLength
          return request
        }),
        // The commit must name the current offset: an offset of 0 would truncate the ingest.
        Stream.concat(Stream.sync(() => ({
          action: WriteAction.COMMIT,
          ref,
          offset,
          total: descriptor.size,
          expected: descriptor.digest,
          labels: write.labels
        })))
      )
    }))
    const requests = Stream.concat(
      Stream.make({ action: WriteAction.STAT, ref, total: descriptor.size, expected: descriptor.digest }),
      data
    )
    let first = true
    return yield* client.content.write(requests, { timeout: writeTimeout(descriptor.size) }).pipe(
      Stream.runForEach((response) => {
        const report = write.onProgress?.(response.offset) ?? Effect.void
        if (!first) return report
        first = false
        return Effect.andThen(Deferred.succeed(opened, response.offset), report)
      }),
      Effect.as<WriteOutcome>("written"),
      Effect.catchIf(
        (error) => error instanceof ContainerdError && error.reason._tag === "AlreadyExists",
        () => Effect.succeed<WriteOutcome>("exists")
      ),
      Effect.tapError((error: ContainerdError | E) => {
        // containerd refuses a commit whose digest or size is wrong: those bytes are no use.
        const bad = error instanceof ContainerdError
          ? error.reason._tag === "FailedPrecondition"
          : !write.resumable(error as E)
        return bad ? abort(client, ref) : Effect.void
      })
    )
  })

/** Drops an ingest whose bytes cannot become the blob (wrong digest or size). */
const abort = (client: ContainerdClient, ref: string) => Effect.ignore(client.content.abort({ ref }))

/** What to write when the blob's digest and size are known only once all of it has passed. */
export interface WriteStream<E> {
  /** The ingest's name: unique to this write (nobody else can resume a blob no one can name). */
  readonly ref: string
  readonly mediaType: string
  readonly labels: Readonly<Record<string, string>>
  readonly source: Stream.Stream<Uint8Array, E>
  /** The write's deadline; default 30 minutes. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * Writes a stream of unknown digest and size (an upload, a body): the digest is
 * computed as the bytes pass, and the commit names it and the size, so
 * containerd checks them as for any other blob. A blob that already exists is
 * as good as written. Any failure aborts the ingest: it has no name to be
 * resumed by.
 */
export const writeStream = <E>(client: ContainerdClient, write: WriteStream<E>): Effect.Effect<Descriptor, ContainerdError | E> =>
  Effect.gen(function*() {
    const { ref } = write
    const hash = crypto.createHash("sha256")
    let offset = 0
    const described = (): Descriptor => ({ mediaType: write.mediaType, digest: `sha256:${hash.copy().digest("hex")}`, size: offset })
    const data = write.source.pipe(
      Stream.map((chunk) => {
        hash.update(chunk)
        const request = { action: WriteAction.WRITE, ref, offset, data: Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) }
        offset += chunk.byteLength
        return request
      }),
      Stream.concat(Stream.sync(() => {
        const descriptor = described()
        return { action: WriteAction.COMMIT, ref, offset, total: descriptor.size, expected: descriptor.digest, labels: write.labels }
      }))
    )
    const requests = Stream.concat(Stream.make({ action: WriteAction.STAT, ref }), data)
    yield* client.content.write(requests, { timeout: write.timeout ?? Duration.minutes(30) }).pipe(
      Stream.runDrain,
      Effect.catchIf(
        (error) => error instanceof ContainerdError && error.reason._tag === "AlreadyExists",
        () => Effect.void
      ),
      Effect.tapError(() => abort(client, ref))
    )
    return described()
  })
