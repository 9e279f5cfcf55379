/**
 * Docker's images over the library's `Images`: what `docker pull`, `docker
 * images`, `docker image inspect`, `docker rmi` and `docker tag` see.
 *
 * This module is the service and its assembly; the concepts are in `images/`:
 * `Names.ts` (references as the API composes them), `PullProgress.ts` (pull
 * progress as dockerd's JSON messages), `Listing.ts` (records grouped into
 * Docker images, names, filters, summaries), `Inspect.ts`, `History.ts`, and
 * `Archive.ts` (save's selection, load's spooled body and answer), `NewImages.ts`
 * and `Changes.ts` (import's and commit's names, configs and download). Everything shown
 * comes from the library's resolved images (cached by digest): this module
 * reads no content itself.
 *
 * A pull that fails before the registry has resolved the reference fails the
 * request with dockerd's status and message; after that, the failure is the
 * stream's last line, as dockerd does once it has answered 200.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { Context, Effect, Layer, Option, Queue, Result, type Scope, Sink, Stream } from "effect"
import { HttpClient } from "effect/http"
import * as os from "node:os"
import * as path from "node:path"
import type { ContainerdError } from "../domain/ContainerdError.ts"
import { shortId } from "../domain/Identifier.ts"
import type { ContainerDefaults, Platform } from "../domain/Image.ts"
import { parseReferenceResult, type Reference } from "../domain/Reference.ts"
import { Images, type PullProgress } from "../services/Images.ts"
import type { RequestCredentials } from "../services/Registry.ts"
import { badRequest, conflict, type DockerError, fromLibrary, orBadRequest } from "./DockerError.ts"
import { Engine } from "./Engine.ts"
import { EventLog } from "./EventLog.ts"
import { cleanSpool, type LoadEvent, type LoadMessage, saveSelection, spoolBody, toLoadMessages } from "./images/Archive.ts"
import { applyChanges } from "./images/Changes.ts"
import { type HistoryEntryJson, historyOf } from "./images/History.ts"
import { type ImageInspectJson, inspectJson } from "./images/Inspect.ts"
import {
  displayName,
  type Entry,
  find,
  groupEntries,
  listEntries,
  type ImageFilters,
  type ImageSummaryJson,
  repoTags,
  summaryOf
} from "./images/Listing.ts"
import { danglingName, familiarName, invalidReference, isDanglingName, pullReference, tagReference } from "./images/Names.ts"
import { removeFile } from "../internal/Files.ts"
import { download, IMPORT_TIMEOUT, importPlatform, importReference, importUrl, mergeCommitConfig } from "./images/NewImages.ts"
import { type ImagesUsage, imagesUsage } from "./images/DiskUsage.ts"
import { type ImagesPruneReport, pruneImages } from "./images/Prune.ts"
import { errorMessage, type JsonMessage, pullFailure, toPullMessages } from "./images/PullProgress.ts"

export type { LoadMessage } from "./images/Archive.ts"
export type { HistoryEntryJson } from "./images/History.ts"
export type { ImageInspectJson } from "./images/Inspect.ts"
export { IMAGE_FILTERS, type ImageFilters, type ImageSummaryJson } from "./images/Listing.ts"
export { familiarName, pullReference, tagReference } from "./images/Names.ts"
export { errorMessage, humanSize, type JsonMessage, progressBar, pullFailure, toPullMessages } from "./images/PullProgress.ts"

/** One entry of `DELETE /images/{name}`. */
export type ImageDeleteJson = { readonly Untagged: string } | { readonly Deleted: string }

/** The daemon's images service. */
export interface DockerImagesShape {
  /**
   * `POST /images/create`: starts pulling `fromImage` (with `tag`, a tag or a
   * digest, if given) and returns Docker's progress messages once the registry
   * has resolved it; the stream ends with an error message if the pull fails
   * later. The pull runs in the caller's scope.
   */
  readonly pull: (
    fromImage: string,
    tag: string | undefined,
    options?: {
      readonly platform?: Platform | undefined
      /** The client's credentials (`X-Registry-Auth`), for this pull only. */
      readonly auth?: RequestCredentials | undefined
    }
  ) => Effect.Effect<Stream.Stream<JsonMessage>, DockerError, Scope.Scope>
  /** `POST /images/prune`: the unused images (dangling ones only, unless `onlyDangling` is false) `select` takes. */
  readonly prune: (
    onlyDangling: boolean,
    select: (created: number, labels: Readonly<Record<string, string>>) => boolean
  ) => Effect.Effect<ImagesPruneReport, DockerError>
  /** The images' part of `GET /system/df`. */
  readonly diskUsage: Effect.Effect<ImagesUsage, DockerError>
  /** `GET /images/json`, newest first. */
  readonly list: (filters?: ImageFilters | undefined) => Effect.Effect<ReadonlyArray<ImageSummaryJson>, DockerError>
  /** `GET /images/{name}/json`. */
  readonly inspect: (name: string) => Effect.Effect<ImageInspectJson, DockerError>
  /** `DELETE /images/{name}`: untags the name, and deletes the image when no name is left. */
  readonly remove: (
    name: string,
    options?: { readonly force?: boolean | undefined }
  ) => Effect.Effect<ReadonlyArray<ImageDeleteJson>, DockerError>
  /** `POST /images/{name}/tag`: names the image `repo:tag` too. */
  readonly tag: (name: string, repo: string, tag: string | undefined) => Effect.Effect<void, DockerError>
  /** How many images there are (`Images` of `GET /info`). */
  readonly count: Effect.Effect<number, DockerError>
  /** `GET /images/{name}/history`, newest step first. */
  readonly history: (name: string) => Effect.Effect<ReadonlyArray<HistoryEntryJson>, DockerError>
  /**
   * `GET /images/get`, `GET /images/{name}/get`: the named images as one tar
   * (Docker's archive and an OCI layout). An unknown name fails before the
   * first byte.
   */
  readonly save: (names: ReadonlyArray<string>) => Effect.Effect<Stream.Stream<Uint8Array, DockerError>, DockerError>
  /**
   * `POST /images/load`: spools the archive in `body` (Docker's or OCI's),
   * reads and checks all of it (a broken archive fails the request, a 400,
   * with nothing stored), then returns its answer, which streams the store's
   * progress; a failure while storing is its last line and leaves no name.
   * The spool file and the load live in the caller's scope.
   */
  readonly load: <E>(
    body: Stream.Stream<Uint8Array, E>,
    options: { readonly quiet: boolean }
  ) => Effect.Effect<Stream.Stream<LoadMessage>, DockerError, Scope.Scope>
  /**
   * `POST /images/create?fromSrc=`: a root filesystem tar (plain or gzip) as a
   * new image of one layer, its config made by `changes`. Everything is read,
   * checked and stored before the answer, dockerd's lines (for a URL, its
   * download's progress; then `{"status":"sha256:…"}`): bad input fails the
   * request with a 400 and stores nothing.
   */
  readonly importImage: (source: ImportSource, options: ImportImageOptions) => Effect.Effect<ReadonlyArray<JsonMessage>, DockerError>
  /**
   * `POST /commit?container=`: the container's root filesystem changes over
   * its image as a new image, paused meanwhile if asked and it runs; its ID.
   */
  readonly commit: (container: string, options: CommitImageOptions) => Effect.Effect<{ readonly Id: string }, DockerError>
}

/** What `POST /images/create?fromSrc=` imports: the request's body (`-`) or what a URL answers. */
export type ImportSource =
  | { readonly _tag: "Body"; readonly body: Stream.Stream<Uint8Array, unknown> }
  | { readonly _tag: "Url"; readonly url: string }

/** The rest of an import's query: `repo`, `tag`, `message`, the repeated `changes`, `platform`. */
export interface ImportImageOptions {
  readonly repo?: string | undefined
  readonly tag?: string | undefined
  readonly message?: string | undefined
  readonly changes: ReadonlyArray<string>
  readonly platform?: Platform | undefined
}

/** A commit's query and body: `repo`, `tag`, `comment`, `author`, `pause`, the repeated `changes`, the body's config. */
export interface CommitImageOptions {
  readonly repo?: string | undefined
  readonly tag?: string | undefined
  readonly comment?: string | undefined
  readonly author?: string | undefined
  readonly pause: boolean
  readonly changes: ReadonlyArray<string>
  /** The body's config, in place of the container's (which completes it). */
  readonly config?: ContainerDefaults | undefined
}

/** Where the daemon's images service keeps its temporary files. */
export interface DockerImagesOptions {
  /** The directory load's bodies are spooled to (the daemon's `<data-root>/tmp`). */
  readonly spoolDir: string
}

/** Builds the daemon's images service. */
const makeDockerImages = Effect.fnUntraced(function*(options: DockerImagesOptions) {
  const images = yield* Images
  yield* cleanSpool(options.spoolDir)
  const engine = yield* Engine
  const events = yield* EventLog
  const http = yield* HttpClient.HttpClient

  const entries = listEntries(images)

  const pull = Effect.fn("DockerImages.pull")(function*(
    fromImage: string,
    tag: string | undefined,
    options?: { readonly platform?: Platform | undefined; readonly auth?: RequestCredentials | undefined }
  ) {
    const reference = yield* Result.match(pullReference(fromImage, tag), {
      onSuccess: Effect.succeed,
      onFailure: (problem) => Effect.fail(badRequest(invalidReference(problem)))
    })
    const previous = yield* images.get(reference.toString()).pipe(
      Effect.map((record): string | undefined => record.target.digest),
      Effect.catchIf((error) => error.reason._tag === "NotFound", () => Effect.succeed(undefined)),
      Effect.mapError((error) => fromLibrary(error))
    )
    const failure = pullFailure(reference)
    // Until the registry has resolved the reference, a failure is the request's (dockerd answers only then).
    const [head, rest] = yield* Stream.peel(
      images.pullWithProgress(reference.toString(), { platform: options?.platform, auth: options?.auth }),
      Sink.takeUntil((event: PullProgress) => event._tag === "Resolved")
    ).pipe(Effect.mapError(failure))
    return Stream.concat(Stream.fromIterable(head), rest).pipe(
      Stream.tap((event) =>
        event._tag === "Pulled"
          ? events.publish({ type: "image", action: "pull", id: reference.familiar, attributes: { name: familiarName(reference) } })
          : Effect.void
      ),
      toPullMessages(reference, previous),
      Stream.catch((error) => Stream.make(errorMessage(failure(error).message)))
    )
  })

  const list = Effect.fn("DockerImages.list")(function*(filters?: ImageFilters | undefined) {
    const groups = groupEntries(yield* entries)
    const summaries = yield* Effect.forEach(groups, (group) =>
      Result.match(summaryOf(group, filters), {
        onSuccess: Effect.succeed,
        onFailure: (problem) => Effect.fail(badRequest(problem))
      }))
    return summaries
      .flatMap((summary) => Option.isSome(summary) ? [summary.value] : [])
      .sort((a, b) => b.Created - a.Created)
  })

  const inspect = Effect.fn("DockerImages.inspect")(function*(name: string) {
    return inspectJson(yield* find(yield* entries, name))
  })

  const untag = (id: string, removed: ReadonlyArray<Entry>) =>
    Effect.map(
      Effect.forEach(removed, (entry) =>
        images.remove(entry.record.name).pipe(
          Effect.mapError((error) => fromLibrary(error)),
          // A nameless image's record is no tag: removing it untags nothing (dockerd says only "Deleted").
          Effect.andThen(isDanglingName(entry.record.name)
            ? Effect.succeed([])
            : Effect.as(events.publish({ type: "image", action: "untag", id, attributes: { name: id } }), [
              { Untagged: displayName(entry) } satisfies ImageDeleteJson
            ]))
        )),
      (untagged): ReadonlyArray<ImageDeleteJson> => untagged.flat()
    )

  /** As dockerd's `ImageDelete`: a name among several is untagged; the last name, or the ID, deletes the image. */
  const remove = Effect.fn("DockerImages.remove")(function*(name: string, options?: { readonly force?: boolean | undefined }) {
    const force = options?.force ?? false
    const found = yield* find(yield* entries, name)
    if (found.by !== undefined && found.entries.length > 1) return yield* untag(found.id, [found.by])

    const users = yield* engine.usersOf(found.id)
    const running = users.find((container) => container.running)
    const short = shortId(found.id)
    if (found.by === undefined) {
      if (found.entries.length > 1 && !force) {
        return yield* conflict(`conflict: unable to delete ${short} (must be forced) - image is referenced in multiple repositories`)
      }
      if (running !== undefined) {
        return yield* conflict(`conflict: unable to delete ${short} (cannot be forced) - image is being used by running container ${shortId(running.id)}`)
      }
      if (users.length > 0 && !force) {
        return yield* conflict(`conflict: unable to delete ${short} (must be forced) - image is being used by stopped container ${shortId(users[0]!.id)}`)
      }
    } else if (users.length > 0 && !force) {
      return yield* conflict(
        `conflict: unable to remove repository reference "${name}" (must force) - container ${shortId(users[0]!.id)} is using its referenced image ${short}`
      )
    }
    const untagged = yield* untag(found.id, found.entries)
    // A running container keeps the image it runs: with force its names go, the image stays (dockerd's hard conflict).
    if (running !== undefined) return untagged
    yield* events.publish({ type: "image", action: "delete", id: found.id, attributes: { name: found.id } })
    return [...untagged, { Deleted: found.id }]
  })

  const tag = Effect.fn("DockerImages.tag")(function*(name: string, repo: string, tagName: string | undefined) {
    const target = yield* Result.match(tagReference(repo, tagName), {
      onSuccess: Effect.succeed,
      onFailure: (problem) => Effect.fail(badRequest(invalidReference(problem)))
    })
    const found = yield* find(yield* entries, name)
    yield* images.tag(found.entries[0]!.record.name, target.toString()).pipe(Effect.mapError((error) => fromLibrary(error)))
    yield* events.publish({ type: "image", action: "tag", id: found.id, attributes: { name: target.familiar } })
  })

  const count = Effect.map(entries, (all) => new Set(all.map((entry) => entry.resolved.configDigest)).size)

  const history = Effect.fn("DockerImages.history")(function*(name: string) {
    const found = yield* find(yield* entries, name)
    const image = found.entries[0]!.resolved
    const sizes = yield* images.layerSizes(image).pipe(Effect.mapError((error) => fromLibrary(error)))
    return historyOf(found.id, image, repoTags(found), sizes)
  })

  const save = Effect.fn("DockerImages.save")(function*(names: ReadonlyArray<string>) {
    const selected = yield* saveSelection(yield* entries, names)
    const archive = yield* images.save(selected).pipe(Effect.mapError((error) => fromLibrary(error)))
    return Stream.mapError(archive, (error) => fromLibrary(error))
  })

  const load = Effect.fn("DockerImages.load")(function*<E>(body: Stream.Stream<Uint8Array, E>, options: { readonly quiet: boolean }) {
    const file = yield* spoolBody(spoolDir, body)
    const failure = (error: ContainerdError) =>
      error.reason._tag === "InvalidArgument" || error.reason._tag === "NotFound"
        ? badRequest(error.reason.message.replaceAll(file, "the archive"))
        : fromLibrary(error)
    const run = Stream.callback<LoadEvent, DockerError>((queue) =>
      images.importArchive(file, {
        unnamed: danglingName,
        onProgress: (event) => void Queue.offerUnsafe(queue, { _tag: "Progress", event })
      }).pipe(
        // Gone once read, before the answer's last line (the spool's scope removes it too if the import never ran).
        Effect.ensuring(removeFile(file)),
        Effect.mapError(failure),
        Effect.flatMap((loaded) =>
          Effect.gen(function*() {
            const named = loaded.map((image) => ({
              image,
              name: isDanglingName(image.name) ? undefined : Result.getOrUndefined(parseReferenceResult(image.name))
            }))
            yield* Effect.forEach(named, ({ image, name }) => {
              const id = name?.familiar ?? image.configDigest
              return events.publish({ type: "image", action: "load", id, attributes: { name: id } })
            }, { discard: true })
            Queue.offerUnsafe(queue, { _tag: "Loaded", images: named })
            Queue.endUnsafe(queue)
          })
        )
      )
    )
    // Every image is read and checked before the first event: until then a failure is the request's (a 400, nothing
    // stored); after it, the stream's last line, as dockerd's once it has answered 200 (the names made are removed).
    const [head, rest] = yield* Stream.peel(run, Sink.take(1))
    const toMessages = toLoadMessages(options.quiet)
    return Stream.concat(Stream.fromIterable(head), rest).pipe(
      Stream.flatMap((event) => Stream.fromIterable(toMessages(event))),
      Stream.catch((error: DockerError) => Stream.make<ReadonlyArray<LoadMessage>>(errorMessage(error.message)))
    )
  })
  const spoolDir = options.spoolDir

  /** A failure of the library's import or commit: its refusals of the input are 400s. */
  const madeFailure = (error: ContainerdError | DockerError): DockerError =>
    error._tag === "DockerError" ? error : error.reason._tag === "InvalidArgument" ? badRequest(error.reason.message) : fromLibrary(error)

  /** The events of a new image's name, as dockerd's `TagImageWithReference`. */
  const tagged = (id: string, name: Reference | undefined) =>
    name === undefined ? Effect.void : events.publish({ type: "image", action: "tag", id, attributes: { name: name.familiar } })

  const importImage = Effect.fn("DockerImages.importImage")(function*(source: ImportSource, importOptions: ImportImageOptions) {
    const name = yield* orBadRequest(importReference(importOptions.repo, importOptions.tag))
    const platform = yield* orBadRequest(importPlatform(importOptions.platform))
    const config = yield* orBadRequest(applyChanges({}, importOptions.changes))
    const url = source._tag === "Url" ? yield* importUrl(source.url) : undefined
    const lines: Array<JsonMessage> = []
    const tar = url === undefined
      ? Stream.mapError((source as Extract<ImportSource, { _tag: "Body" }>).body, () => badRequest("the upload broke off"))
      : yield* download(url, (line) => void lines.push(line)).pipe(Effect.provideService(HttpClient.HttpClient, http))
    const image = yield* images.importRootfs(tar, {
      platform,
      name: name?.toString(),
      config,
      comment: importOptions.message || `Imported from ${url?.toString() ?? "-"}`
    }).pipe(
      Effect.mapError(madeFailure),
      url === undefined ? (effect) => effect : Effect.timeoutOrElse({
        duration: IMPORT_TIMEOUT,
        orElse: () => Effect.fail(badRequest(`the import from ${url} did not end within an hour`))
      })
    )
    yield* tagged(image.configDigest, name)
    yield* events.publish({ type: "image", action: "import", id: image.configDigest, attributes: { name: image.configDigest } })
    return [...lines, { status: image.configDigest }]
  })

  const commit = Effect.fn("DockerImages.commit")(function*(container: string, commitOptions: CommitImageOptions) {
    // As dockerd: the container first (its lookup's answers), then the name, then the changes.
    if (container === "") return yield* badRequest("invalid name or ID supplied: \"\"")
    const source = yield* engine.commitSource(container)
    const name = commitOptions.repo === undefined
      ? undefined
      : yield* Result.match(tagReference(commitOptions.repo, commitOptions.tag), {
        onSuccess: Effect.succeed,
        onFailure: (problem) => Effect.fail(badRequest(`invalid reference format: ${problem}`))
      })
    // Everything is checked before the container is paused or anything stored.
    const changed = yield* orBadRequest(applyChanges(commitOptions.config ?? source.config, commitOptions.changes))
    const config = mergeCommitConfig(changed, source.config)
    const make = images.commit(source.target, {
      name: name?.toString(),
      config,
      author: commitOptions.author,
      comment: commitOptions.comment,
      createdBy: (source.config.Cmd ?? []).join(" ")
    }).pipe(
      Effect.mapError(madeFailure),
      Effect.tap((image) =>
        Effect.andThen(
          tagged(image.configDigest, name),
          source.published({ comment: commitOptions.comment ?? "", imageID: image.configDigest, imageRef: name?.familiar ?? "" })
        )
      )
    )
    const image = commitOptions.pause ? yield* engine.whilePaused(source.id, make) : yield* make
    return { Id: image.configDigest }
  })

  const prune = Effect.fn("DockerImages.prune")(function*(
    onlyDangling: boolean,
    select: (created: number, labels: Readonly<Record<string, string>>) => boolean
  ) {
    const report = yield* pruneImages({ entries, usersOf: engine.usersOf, remove: (name) => remove(name) }, onlyDangling, select)
    yield* events.publish({ type: "image", action: "prune", id: "", attributes: { reclaimed: String(report.SpaceReclaimed) } })
    return report
  })

  const diskUsage = Effect.flatMap(entries, (all) => imagesUsage(groupEntries(all), engine.usersOf)).pipe(
    Effect.withSpan("DockerImages.diskUsage")
  )

  return DockerImages.of({ pull, prune, diskUsage, list, inspect, remove, tag, count, history, save, load, importImage, commit })
})

/** The daemon's images service. */
export class DockerImages extends Context.Service<DockerImages, DockerImagesShape>()("effect-containerd/daemon/DockerImages") {
  /** Images of the library's `Images`, in the client's namespace; loads are spooled under `spoolDir`. */
  static readonly layerWith = (options: DockerImagesOptions): Layer.Layer<DockerImages, never, Images | Engine | EventLog> =>
    Layer.effect(DockerImages, makeDockerImages(options)).pipe(Layer.provide(NodeHttpClient.layerUndici))

  /** Images of the library's `Images`, in the client's namespace; loads are spooled under the system's temporary directory. */
  static readonly layer: Layer.Layer<DockerImages, never, Images | Engine | EventLog> = DockerImages.layerWith({
    spoolDir: path.join(os.tmpdir(), "effect-containerd-load")
  })
}
