/**
 * `docker save` and `docker load` as the Docker API sees them: which images a
 * save's names select (and under which names they are written), the request
 * body of a load spooled to a file (the library reads archives from files: a
 * tar is indexed in one pass and its members read at their offsets), and the
 * lines a load answers with (`{"stream":"Loaded image: busybox:latest\n"}`).
 *
 * The spool file is under the daemon's data root, written one chunk at a time
 * (memory stays bounded whatever the size), and removed when the load ends,
 * failed or not; files a killed daemon left are removed at the next start.
 */
import { Effect, Stream } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import type { Reference } from "../../domain/Reference.ts"
import { removeFile } from "../../internal/Files.ts"
import type { PullProgress, ResolvedImage, SaveImage } from "../../services/Images.ts"
import { badRequest, type DockerError, internal, notFound } from "../DockerError.ts"
import { type Entry, find } from "./Listing.ts"
import { type JsonMessage, progressBar } from "./PullProgress.ts"

/** One line of a load's answer: a progress message, or the text the CLI prints. */
export type LoadMessage = JsonMessage | { readonly stream: string }

const SPOOL_PREFIX = "load-"

/**
 * The images `names` select, each once, with the names it is saved under: a
 * tagged reference saves that name; an ID (or a digest reference) saves the
 * image without one, as dockerd 20.10 (`RepoTags: null`).
 */
export const saveSelection = (all: ReadonlyArray<Entry>, names: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<SaveImage>, DockerError> =>
  Effect.gen(function*() {
    if (names.length === 0) return yield* badRequest("no images given: name at least one (names=…)")
    const byId = new Map<string, { image: ResolvedImage; names: Array<Reference> }>()
    for (const name of names) {
      // dockerd's save names the image as it was asked for, not normalised.
      const found = yield* find(all, name).pipe(
        Effect.catchIf((error) => error.status === 404, () => Effect.fail(notFound(`No such image: ${name}`)))
      )
      const selected = byId.get(found.id) ?? { image: found.entries[0]!.resolved, names: [] }
      byId.set(found.id, selected)
      const reference = found.by?.reference
      if (reference?.tag !== undefined && !selected.names.some((known) => known.toString() === reference.toString())) {
        selected.names.push(reference)
      }
    }
    return [...byId.values()]
  })

/** Writes `body` to a new file under `dir`, one chunk at a time; the file is removed when the scope closes. */
export const spoolBody = <E>(dir: string, body: Stream.Stream<Uint8Array, E>) =>
  Effect.gen(function*() {
    const file = path.join(dir, `${SPOOL_PREFIX}${crypto.randomBytes(8).toString("hex")}.tar`)
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => fs.promises.mkdir(dir, { recursive: true, mode: 0o700 }).then(() => fs.promises.open(file, "wx", 0o600)),
        catch: (cause) => internal(`cannot spool the archive: ${(cause as Error).message}`, cause)
      }),
      (handle) => Effect.promise(() => handle.close()).pipe(Effect.andThen(removeFile(file)))
    )
    yield* body.pipe(
      Stream.mapError(() => badRequest("the archive's upload broke off")),
      Stream.runForEach((chunk) =>
        Effect.tryPromise({
          try: () => handle.write(chunk),
          catch: (cause) => internal(`cannot spool the archive: ${(cause as Error).message}`, cause)
        })
      )
    )
    yield* Effect.promise(() => handle.close())
    return file
  })

/** Removes the spool files a daemon killed during a load left behind. */
export const cleanSpool = (dir: string): Effect.Effect<void> =>
  Effect.tryPromise(() => fs.promises.readdir(dir)).pipe(
    Effect.flatMap((files) =>
      Effect.forEach(files.filter((name) => name.startsWith(SPOOL_PREFIX)), (name) => removeFile(path.join(dir, name)), {
        discard: true
      })
    ),
    // Harmless: leftovers cost disk only and the next start tries again; no directory yet is no leftover.
    Effect.catch((error) =>
      (error.cause as NodeJS.ErrnoException | undefined)?.code === "ENOENT"
        ? Effect.void
        : Effect.logWarning(`could not list ${dir} for the spool files of interrupted loads`, error))
  )

/** What a load reports as it goes: the library's progress, then the images stored. */
export type LoadEvent =
  | { readonly _tag: "Progress"; readonly event: PullProgress }
  | {
    readonly _tag: "Loaded"
    readonly images: ReadonlyArray<{ readonly image: ResolvedImage; readonly name: Reference | undefined }>
  }

/**
 * A load's answer, as dockerd's: unless `quiet`, "Loading layer" progress per
 * layer as its bytes go into the content store; then "Loaded image: <name>"
 * per name ("Loaded image ID: <id>" for an image without one).
 */
export const toLoadMessages = (quiet: boolean) => {
  const totals = new Map<string, number>()
  const loading = (id: string, current: number, total: number): LoadMessage => ({
    status: "Loading layer",
    progressDetail: { current, total },
    progress: progressBar(current, total),
    id
  })
  return (event: LoadEvent): ReadonlyArray<LoadMessage> => {
    if (event._tag === "Loaded") {
      return event.images.map(({ image, name }) => ({
        stream: name === undefined ? `Loaded image ID: ${image.configDigest}\n` : `Loaded image: ${name.familiar}\n`
      }))
    }
    if (quiet) return []
    const progress = event.event
    switch (progress._tag) {
      case "Waiting":
        totals.set(progress.id, progress.size)
        return []
      case "Downloading":
        return [loading(progress.id, progress.current, progress.total)]
      case "Verifying": {
        const total = totals.get(progress.id) ?? 0
        return [loading(progress.id, total, total)]
      }
      default:
        return []
    }
  }
}
