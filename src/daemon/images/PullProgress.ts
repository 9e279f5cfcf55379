/**
 * Pull progress as dockerd writes it: the library's `PullProgress` events as
 * Docker's JSON-lines messages (`jsonmessage.JSONMessage`), from which the
 * docker CLI draws its usual progress bars, and a failed pull as dockerd
 * reports it.
 */
import { Stream } from "effect"
import type { Reference } from "../../domain/Reference.ts"
import type { PullError, PullProgress } from "../../services/Images.ts"
import { DockerError, fromLibrary } from "../DockerError.ts"
import { familiarName } from "./Names.ts"

/** One line of Docker's JSON progress stream (`jsonmessage.JSONMessage`). */
export interface JsonMessage {
  readonly status?: string
  readonly id?: string
  readonly progressDetail?: { readonly current?: number; readonly total?: number }
  readonly progress?: string
  readonly error?: string
  readonly errorDetail?: { readonly message: string }
}

const SIZE_UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"] as const

/** go-units' `HumanSize`: decimal units, 4 significant digits (`2.15MB`, `759.9kB`). */
export const humanSize = (bytes: number): string => {
  let size = bytes
  let unit = 0
  while (size >= 1000 && unit < SIZE_UNITS.length - 1) {
    size /= 1000
    unit++
  }
  return `${Number(size.toPrecision(4))}${SIZE_UNITS[unit]}`
}

/** Docker's progress bar (`JSONProgress.String` at the server's width): `[==>    ]  1.2MB/3.4MB`. */
export const progressBar = (current: number, total: number): string => {
  if (total <= 0) return current <= 0 ? "" : humanSize(current).padStart(8)
  const done = Math.min(50, Math.trunc(Math.trunc((current / total) * 100) / 2))
  const numbers = current > total ? humanSize(current).padStart(8) : `${humanSize(current).padStart(8)}/${humanSize(total)}`
  return `[${"=".repeat(done)}>${" ".repeat(50 - done)}] ${numbers}`
}

/** A message that ends a progress stream with a failure. */
export const errorMessage = (message: string): JsonMessage => ({ errorDetail: { message }, error: message })

const layerMessage = (id: string, status: string, progressDetail: JsonMessage["progressDetail"] = {}): JsonMessage => ({
  status,
  progressDetail,
  id
})

interface PullState {
  /** The manifest or index digest the registry resolved the reference to. */
  readonly digest: string | undefined
  /** The name already pointed at that digest: per-layer lines are left out, as dockerd's "up to date" pull. */
  readonly upToDate: boolean
  /** Some layer was fetched. */
  readonly downloaded: boolean
}

/**
 * The library's pull progress as dockerd's messages for `reference`, whose
 * record pointed at `previousDigest` before the pull. The last line says
 * "Downloaded newer image" when a layer was fetched or the name moved, else
 * "Image is up to date" (dockerd's `writeStatus`).
 */
export const toPullMessages = (reference: Reference, previousDigest: string | undefined) =>
<E, R>(progress: Stream.Stream<PullProgress, E, R>): Stream.Stream<JsonMessage, E, R> =>
  progress.pipe(
    Stream.mapAccum(
      (): PullState => ({ digest: undefined, upToDate: false, downloaded: false }),
      (state, event): readonly [PullState, ReadonlyArray<JsonMessage>] => {
        switch (event._tag) {
          case "Resolving":
            return [state, []]
          case "Resolved":
            return [
              { ...state, digest: event.digest, upToDate: event.digest === previousDigest },
              [{ status: `Pulling from ${reference.path}`, id: reference.digest ?? reference.tag ?? "latest" }]
            ]
          case "Waiting":
            return [state, state.upToDate ? [] : [layerMessage(event.id, "Pulling fs layer")]]
          case "AlreadyExists":
            return [state, state.upToDate ? [] : [layerMessage(event.id, "Already exists")]]
          case "Downloading":
            return [{ ...state, downloaded: true }, [{
              ...layerMessage(event.id, "Downloading", { current: event.current, total: event.total }),
              progress: progressBar(event.current, event.total)
            }]]
          case "Verifying":
            return [state, [layerMessage(event.id, "Verifying Checksum")]]
          case "DownloadComplete":
            return [{ ...state, downloaded: true }, [layerMessage(event.id, "Download complete")]]
          case "Extracting":
            return [state, [layerMessage(event.id, "Extracting")]]
          case "PullComplete":
            return [state, [layerMessage(event.id, "Pull complete")]]
          case "Pulled": {
            const newer = state.downloaded || previousDigest !== event.image.target.digest
            return [state, [
              { status: `Digest: ${state.digest ?? event.image.target.digest}` },
              { status: `Status: ${newer ? "Downloaded newer image" : "Image is up to date"} for ${reference.familiar}` }
            ]]
          }
        }
      }
    )
  )

/** A failed pull as dockerd reports it: a repository nobody may pull is "pull access denied" (404). */
export const pullFailure = (reference: Reference) => (error: PullError): DockerError => {
  if (error._tag === "RegistryError") {
    const reason = error.reason
    if (reason._tag === "Unauthorized" || (reason._tag === "NotFound" && /NAME_UNKNOWN/i.test(reason.message))) {
      return new DockerError({
        status: 404,
        message: `pull access denied for ${familiarName(reference)}, repository does not exist or may require 'docker login': ${reason.message}`,
        cause: error
      })
    }
    if (reason._tag === "NotFound") {
      return new DockerError({ status: 404, message: `manifest for ${reference.familiar} not found: ${reason.message}`, cause: error })
    }
  }
  return fromLibrary(error)
}
