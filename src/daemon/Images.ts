/**
 * Docker's images over the library's `Images`: what `docker pull`, `docker
 * images`, `docker image inspect`, `docker rmi` and `docker tag` see.
 *
 * Docker and containerd name images differently. containerd keeps one record
 * per full reference (`docker.io/library/busybox:latest`) pointing at a
 * manifest or index; Docker's image is the config blob, identified by its digest
 * (the image ID), with every reference to it as a `RepoTag` (`busybox:latest`)
 * and a `RepoDigest` (`busybox@sha256:<manifest>`). So an image here is the group
 * of records that resolve to one config digest, as in dockerd's containerd image
 * store; a name is a reference (Docker's short forms, normalised as Docker
 * does), a full image ID or an unambiguous ID prefix.
 *
 * Pull progress is the JSON-lines stream dockerd writes, so the docker CLI draws
 * its usual progress bars. A pull that fails before the registry has resolved
 * the reference fails the request with dockerd's status and message; after that,
 * the failure is the stream's last line, as dockerd does once it has answered 200.
 */
import { Cache, Context, Duration, Effect, Exit, Layer, Option, Result, Schema, type Scope, Sink, Stream } from "effect"
import type { ContainerdError } from "../domain/ContainerdError.ts"
import { shortId } from "../domain/Identifier.ts"
import type { Platform } from "../domain/Image.ts"
import { parseReferenceResult, Reference } from "../domain/Reference.ts"
import { compositeKey, keyParts } from "../internal/Key.ts"
import { Containerd } from "../services/Containerd.ts"
import { type ImageRecord, Images, type PullError, type PullProgress, type ResolvedImage } from "../services/Images.ts"
import { badRequest, conflict, DockerError, fromLibrary, internal, notFound } from "./DockerError.ts"
import { Engine } from "./Engine.ts"
import { EventLog } from "./EventLog.ts"
import { ZERO_TIME } from "./Model.ts"

/** One line of Docker's JSON progress stream (`jsonmessage.JSONMessage`). */
export interface JsonMessage {
  readonly status?: string
  readonly id?: string
  readonly progressDetail?: { readonly current?: number; readonly total?: number }
  readonly progress?: string
  readonly error?: string
  readonly errorDetail?: { readonly message: string }
}

/** One entry of `GET /images/json`. */
export interface ImageSummaryJson {
  readonly Id: string
  readonly ParentId: string
  readonly RepoTags: ReadonlyArray<string>
  readonly RepoDigests: ReadonlyArray<string>
  readonly Created: number
  readonly Size: number
  readonly SharedSize: number
  readonly Labels: Readonly<Record<string, string>>
  readonly Containers: number
}

/** `GET /images/{name}/json`. */
export interface ImageInspectJson {
  readonly Id: string
  readonly RepoTags: ReadonlyArray<string>
  readonly RepoDigests: ReadonlyArray<string>
  readonly Parent: string
  readonly Comment: string
  readonly Created: string
  readonly DockerVersion: string
  readonly Author: string
  readonly Config: Readonly<Record<string, unknown>>
  readonly Architecture: string
  readonly Variant?: string
  readonly Os: string
  readonly Size: number
  readonly GraphDriver: { readonly Name: string; readonly Data: null }
  readonly RootFS: { readonly Type: "layers"; readonly Layers: ReadonlyArray<string> }
  readonly Metadata: { readonly LastTagTime: string }
  readonly Descriptor: { readonly mediaType: string; readonly digest: string; readonly size: number }
}

/** One entry of `DELETE /images/{name}`. */
export type ImageDeleteJson = { readonly Untagged: string } | { readonly Deleted: string }

/** Filters of `GET /images/json`: `reference` (globs), `dangling`, `label` (`key` or `key=value`). */
export type ImageFilters = Readonly<Record<string, ReadonlyArray<string>>>

/** The filters `GET /images/json` understands. */
export const IMAGE_FILTERS: ReadonlyArray<string> = ["reference", "dangling", "label"]

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
    options?: { readonly platform?: Platform | undefined }
  ) => Effect.Effect<Stream.Stream<JsonMessage>, DockerError, Scope.Scope>
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
}

// ---------------------------------------------------------------------------
// Names

/** `busybox` for `docker.io/library/busybox:latest`: the repository as Docker prints it. */
export const familiarName = (reference: Reference): string =>
  new Reference(reference.domain, reference.path, undefined, undefined).familiar

/**
 * The reference `POST /images/create` pulls: `fromImage`, with `tag` (a tag or
 * a digest) in place of its own when given, as dockerd's `postImagesCreate`.
 */
export const pullReference = (fromImage: string, tag: string | undefined): Result.Result<Reference, string> =>
  Result.flatMap(parseReferenceResult(fromImage), (reference) =>
    tag === undefined || tag === ""
      ? Result.succeed(reference)
      : parseReferenceResult(tag.includes(":") ? `${reference.name}@${tag}` : `${reference.name}:${tag}`))

/** The reference `POST /images/{name}/tag?repo=&tag=` creates. */
export const tagReference = (repo: string, tag: string | undefined): Result.Result<Reference, string> =>
  Result.flatMap(parseReferenceResult(repo), (reference) => {
    if (reference.digest !== undefined) return Result.fail("refusing to create a tag with a digest reference")
    return tag === undefined || tag === "" ? Result.succeed(reference) : parseReferenceResult(`${reference.name}:${tag}`)
  })

/** Go's `path.Match` pattern as a RegExp: `*` and `?` stop at `/`, `[...]` is a class. */
const globRegExp = (pattern: string): Result.Result<RegExp, string> =>
  Result.try({
    try: () => new RegExp(`^${pattern.replace(/[.+${}()|]/g, "\\$&").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]")}$`),
    catch: () => `invalid reference filter ${JSON.stringify(pattern)}`
  })

// ---------------------------------------------------------------------------
// Pull progress

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

// ---------------------------------------------------------------------------
// The images

/** What an image's config says, with the fields of its `config` Docker shows. */
const StoredConfig = Schema.Struct({
  created: Schema.optional(Schema.String),
  author: Schema.optional(Schema.String),
  architecture: Schema.String,
  os: Schema.String,
  variant: Schema.optional(Schema.String),
  config: Schema.optional(Schema.NullOr(Schema.Struct({
    User: Schema.optional(Schema.String),
    ExposedPorts: Schema.optional(Schema.NullOr(Schema.Record(Schema.String, Schema.Unknown))),
    Env: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
    Entrypoint: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
    Cmd: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
    Volumes: Schema.optional(Schema.NullOr(Schema.Record(Schema.String, Schema.Unknown))),
    WorkingDir: Schema.optional(Schema.String),
    Labels: Schema.optional(Schema.NullOr(Schema.Record(Schema.String, Schema.String))),
    StopSignal: Schema.optional(Schema.String),
    ArgsEscaped: Schema.optional(Schema.Boolean),
    Healthcheck: Schema.optional(Schema.Unknown),
    OnBuild: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
    Shell: Schema.optional(Schema.NullOr(Schema.Array(Schema.String)))
  }))),
  rootfs: Schema.Struct({ type: Schema.String, diff_ids: Schema.Array(Schema.String) })
})
type StoredConfig = typeof StoredConfig.Type

/** The sizes a manifest lists. */
const ManifestSizes = Schema.Struct({
  config: Schema.Struct({ size: Schema.Number }),
  layers: Schema.Array(Schema.Struct({ size: Schema.Number }))
})

/** An image record with what it resolves to. */
interface Entry {
  readonly record: ImageRecord
  /** The record's name as a reference; `undefined` for names that are not (`import-2024…`). */
  readonly reference: Reference | undefined
  readonly resolved: ResolvedImage
}

/** A Docker image: the records resolving to one config digest. */
interface Group {
  /** The image ID: the config digest. */
  readonly id: string
  readonly entries: ReadonlyArray<Entry>
}

/** What a name found: the image, and the record when the name was a reference to one. */
interface Found extends Group {
  readonly by: Entry | undefined
}

const FULL_ID = /^(?:sha256:)?([0-9a-f]{64})$/
const SHORT_ID = /^(?:sha256:)?([0-9a-f]{1,63})$/

/** `busybox:latest` (or `busybox@sha256:…`) for a record; its raw name if it is not a reference. */
const displayName = (entry: Entry): string => entry.reference?.familiar ?? entry.record.name

const repoTags = (group: Group): ReadonlyArray<string> =>
  group.entries.flatMap(({ reference }) =>
    reference?.tag === undefined ? [] : [new Reference(reference.domain, reference.path, reference.tag, undefined).familiar])

const repoDigests = (group: Group): ReadonlyArray<string> => [
  ...new Set(group.entries.flatMap(({ record, reference }) =>
    reference === undefined ? [] : [`${familiarName(reference)}@${record.target.digest}`]))
]

const groupEntries = (entries: ReadonlyArray<Entry>): ReadonlyArray<Group> => {
  const groups = new Map<string, Array<Entry>>()
  for (const entry of entries) {
    const id = entry.resolved.configDigest
    const group = groups.get(id)
    if (group === undefined) groups.set(id, [entry])
    else group.push(entry)
  }
  return [...groups].map(([id, members]) => ({ id, entries: members }))
}

/** Whether an image passes `filters` (each key: any value; all keys). */
const filterImage = (
  filters: ImageFilters | undefined,
  tags: ReadonlyArray<string>,
  labels: Readonly<Record<string, string>>
): Result.Result<{ readonly keep: boolean; readonly tags: ReadonlyArray<string> }, string> => {
  if (filters === undefined) return Result.succeed({ keep: true, tags })
  let shown = tags
  for (const value of filters["dangling"] ?? []) {
    if (value !== "true" && value !== "false") return Result.fail(`invalid filter 'dangling=${value}'`)
    if ((value === "true") !== (tags.length === 0)) return Result.succeed({ keep: false, tags })
  }
  const labelFilters = filters["label"] ?? []
  if (labelFilters.length > 0 && !labelFilters.some((filter) => {
    const eq = filter.indexOf("=")
    return eq === -1 ? filter in labels : labels[filter.slice(0, eq)] === filter.slice(eq + 1)
  })) {
    return Result.succeed({ keep: false, tags })
  }
  const patterns = filters["reference"] ?? []
  if (patterns.length > 0) {
    const regExps: Array<RegExp> = []
    for (const pattern of patterns) {
      const compiled = globRegExp(pattern)
      if (Result.isFailure(compiled)) return Result.fail(compiled.failure)
      regExps.push(compiled.success)
    }
    // dockerd's FamiliarMatch: the pattern against `name:tag`, else against `name`; only matching tags are shown.
    shown = tags.filter((tag) => regExps.some((re) => re.test(tag) || re.test(tag.slice(0, tag.lastIndexOf(":")))))
    if (shown.length === 0) return Result.succeed({ keep: false, tags })
  }
  return Result.succeed({ keep: true, tags: shown })
}

/** Builds the daemon's images service. */
const makeDockerImages = Effect.gen(function*() {
  const client = yield* Containerd
  const images = yield* Images
  const engine = yield* Engine
  const events = yield* EventLog

  const readJson = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S, what: string, digest: string) =>
    client.content.read({ digest }).pipe(
      Stream.runCollect,
      Effect.mapError((error) => fromLibrary(error, `reading the ${what} ${digest}`)),
      Effect.map((chunks) => Buffer.concat(chunks.map((chunk) => chunk.data)).toString("utf8")),
      Effect.flatMap((text) =>
        Schema.decodeUnknownEffect(Schema.fromJsonString(schema))(text).pipe(
          Effect.mapError((error) => internal(`the ${what} ${digest} is malformed: ${error.message}`, error))
        )
      )
    )

  // Content is immutable: what a config and a manifest say is kept (successes only).
  const details = yield* Cache.makeWith(
    (key: string) => {
      const [manifestDigest = "", configDigest = ""] = keyParts(key)
      return Effect.all({
        config: readJson(StoredConfig, "image config", configDigest),
        manifest: readJson(ManifestSizes, "manifest", manifestDigest)
      }, { concurrency: 2 }).pipe(
        Effect.map(({ config, manifest }) => ({
          config,
          size: manifest.layers.reduce((sum, layer) => sum + layer.size, manifest.config.size)
        }))
      )
    },
    {
      capacity: 1024,
      timeToLive: (exit) => Exit.isSuccess(exit) ? Duration.infinity : Duration.zero
    }
  )

  const detailsOf = (group: Group) => {
    const { resolved } = group.entries[0]!
    return Cache.get(details, compositeKey(resolved.manifestDigest, resolved.configDigest))
  }

  /** Every record with what it resolves to. */
  const entries: Effect.Effect<ReadonlyArray<Entry>, DockerError> = Effect.gen(function*() {
    const records = yield* images.list().pipe(Effect.mapError((error) => fromLibrary(error)))
    const resolved = yield* Effect.forEach(records, (record) =>
      images.resolve(record.name).pipe(
        Effect.map((resolved): Option.Option<Entry> =>
          Option.some({ record, reference: Result.getOrUndefined(parseReferenceResult(record.name)), resolved })),
        // A record whose content is not all here (another platform, a foreign client's half-done pull) is not an
        // image Docker could run: dockerd's containerd store leaves it out too.
        Effect.catchIf(
          (error: ContainerdError) => error.reason._tag === "NotFound" || error.reason._tag === "InvalidArgument",
          () => Effect.succeed(Option.none<Entry>())
        ),
        Effect.mapError((error) => fromLibrary(error))
      ), { concurrency: 8 })
    return resolved.flatMap((entry) => Option.isSome(entry) ? [entry.value] : [])
  })

  /** The image a name means: a full ID, a reference, or an ID prefix, in that order. */
  const find = (all: ReadonlyArray<Entry>, name: string): Effect.Effect<Found, DockerError> => {
    const groups = groupEntries(all)
    const groupOf = (id: string) => groups.find((group) => group.id === id)
    const fullId = FULL_ID.exec(name)
    if (fullId !== null) {
      const group = groupOf(`sha256:${fullId[1]}`)
      return group === undefined ? Effect.fail(notFound(`No such image: ${name}`)) : Effect.succeed({ ...group, by: undefined })
    }
    const parsed = parseReferenceResult(name)
    if (Result.isSuccess(parsed)) {
      const reference = parsed.success
      const exact = all.find((entry) => entry.record.name === reference.toString()) ??
        // `repo@sha256:…` names the manifest of a record pulled by tag too.
        (reference.digest === undefined
          ? undefined
          : all.find((entry) => entry.reference?.name === reference.name && entry.record.target.digest === reference.digest))
      if (exact !== undefined) return Effect.succeed({ ...groupOf(exact.resolved.configDigest)!, by: exact })
    }
    const prefix = SHORT_ID.exec(name)
    if (prefix !== null) {
      const matches = groups.filter((group) => group.id.startsWith(`sha256:${prefix[1]}`))
      if (matches.length === 1) return Effect.succeed({ ...matches[0]!, by: undefined })
      if (matches.length > 1) return Effect.fail(badRequest(`multiple IDs found with provided prefix: ${name}`))
    }
    return Effect.fail(notFound(`No such image: ${Result.isSuccess(parsed) ? parsed.success.familiar : name}`))
  }

  const pull = Effect.fn("DockerImages.pull")(function*(
    fromImage: string,
    tag: string | undefined,
    options?: { readonly platform?: Platform | undefined }
  ) {
    const reference = yield* Result.match(pullReference(fromImage, tag), {
      onSuccess: Effect.succeed,
      onFailure: (problem) => Effect.fail(badRequest(`invalid reference format: ${problem}`))
    })
    const previous = yield* images.get(reference.toString()).pipe(
      Effect.map((record): string | undefined => record.target.digest),
      Effect.catchIf((error) => error.reason._tag === "NotFound", () => Effect.succeed(undefined)),
      Effect.mapError((error) => fromLibrary(error))
    )
    const failure = pullFailure(reference)
    // Until the registry has resolved the reference, a failure is the request's (dockerd answers only then).
    const [head, rest] = yield* Stream.peel(
      images.pullWithProgress(reference.toString(), { platform: options?.platform }),
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

  const summaryOf = (group: Group, filters: ImageFilters | undefined) =>
    Effect.gen(function*() {
      const { config, size } = yield* detailsOf(group)
      const labels = config.config?.Labels ?? {}
      const filtered = yield* Result.match(filterImage(filters, repoTags(group), labels), {
        onSuccess: Effect.succeed,
        onFailure: (problem) => Effect.fail(badRequest(problem))
      })
      if (!filtered.keep) return Option.none<ImageSummaryJson>()
      const created = config.created === undefined ? Number.NaN : Date.parse(config.created)
      return Option.some<ImageSummaryJson>({
        Id: group.id,
        ParentId: "",
        RepoTags: filtered.tags,
        RepoDigests: repoDigests(group),
        Created: Number.isNaN(created) ? 0 : Math.floor(created / 1000),
        Size: size,
        SharedSize: -1,
        Labels: labels,
        Containers: -1
      })
    })

  const list = Effect.fn("DockerImages.list")(function*(filters?: ImageFilters | undefined) {
    const groups = groupEntries(yield* entries)
    const summaries = yield* Effect.forEach(groups, (group) => summaryOf(group, filters), { concurrency: 8 })
    return summaries
      .flatMap((summary) => Option.isSome(summary) ? [summary.value] : [])
      .sort((a, b) => b.Created - a.Created)
  })

  const inspectJson = (group: Group, config: StoredConfig, size: number): ImageInspectJson => {
    const defaults = config.config ?? {}
    const target = group.entries[0]!.record.target
    return {
      Id: group.id,
      RepoTags: repoTags(group),
      RepoDigests: repoDigests(group),
      Parent: "",
      Comment: "",
      Created: config.created ?? ZERO_TIME,
      DockerVersion: "",
      Author: config.author ?? "",
      Config: {
        ...defaults,
        Cmd: defaults.Cmd ?? null,
        Entrypoint: defaults.Entrypoint ?? null,
        Env: defaults.Env ?? null,
        WorkingDir: defaults.WorkingDir ?? "",
        User: defaults.User ?? "",
        Labels: defaults.Labels ?? null,
        ExposedPorts: defaults.ExposedPorts ?? null,
        Volumes: defaults.Volumes ?? null,
        StopSignal: defaults.StopSignal ?? ""
      },
      Architecture: config.architecture,
      ...(config.variant === undefined ? {} : { Variant: config.variant }),
      Os: config.os,
      Size: size,
      GraphDriver: { Name: "overlayfs", Data: null },
      RootFS: { Type: "layers", Layers: config.rootfs.diff_ids },
      Metadata: { LastTagTime: ZERO_TIME },
      Descriptor: { mediaType: target.mediaType, digest: target.digest, size: target.size }
    }
  }

  const inspect = Effect.fn("DockerImages.inspect")(function*(name: string) {
    const found = yield* find(yield* entries, name)
    const { config, size } = yield* detailsOf(found)
    return inspectJson(found, config, size)
  })

  const untag = (id: string, removed: ReadonlyArray<Entry>) =>
    Effect.forEach(removed, (entry) =>
      images.remove(entry.record.name).pipe(
        Effect.mapError((error) => fromLibrary(error)),
        Effect.andThen(events.publish({ type: "image", action: "untag", id, attributes: { name: id } })),
        Effect.as<ImageDeleteJson>({ Untagged: displayName(entry) })
      ))

  /** As dockerd's `ImageDelete`: a name among several is untagged; the last name, or the ID, deletes the image. */
  const remove = Effect.fn("DockerImages.remove")(function*(name: string, options?: { readonly force?: boolean | undefined }) {
    const force = options?.force ?? false
    const found = yield* find(yield* entries, name)
    if (found.by !== undefined && found.entries.length > 1) return yield* untag(found.id, [found.by])

    const users = (yield* engine.list({ all: true })).filter((container) => container.ImageID === found.id)
    const running = users.find((container) => container.State === "running" || container.State === "paused" || container.State === "restarting")
    const short = shortId(found.id)
    if (found.by === undefined) {
      if (found.entries.length > 1 && !force) {
        return yield* conflict(`conflict: unable to delete ${short} (must be forced) - image is referenced in multiple repositories`)
      }
      if (running !== undefined) {
        return yield* conflict(`conflict: unable to delete ${short} (cannot be forced) - image is being used by running container ${shortId(running.Id)}`)
      }
      if (users.length > 0 && !force) {
        return yield* conflict(`conflict: unable to delete ${short} (must be forced) - image is being used by stopped container ${shortId(users[0]!.Id)}`)
      }
    } else if (users.length > 0 && !force) {
      return yield* conflict(
        `conflict: unable to remove repository reference "${name}" (must force) - container ${shortId(users[0]!.Id)} is using its referenced image ${short}`
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
      onFailure: (problem) => Effect.fail(badRequest(`invalid reference format: ${problem}`))
    })
    const found = yield* find(yield* entries, name)
    yield* images.tag(found.entries[0]!.record.name, target.toString()).pipe(Effect.mapError((error) => fromLibrary(error)))
    yield* events.publish({ type: "image", action: "tag", id: found.id, attributes: { name: target.familiar } })
  })

  const count = Effect.map(entries, (all) => new Set(all.map((entry) => entry.resolved.configDigest)).size)

  return DockerImages.of({ pull, list, inspect, remove, tag, count })
})

/** The daemon's images service. */
export class DockerImages extends Context.Service<DockerImages, DockerImagesShape>()("effect-containerd/daemon/DockerImages") {
  /** Images of the library's `Images`, in the client's namespace. */
  static readonly layer: Layer.Layer<DockerImages, never, Containerd | Images | Engine | EventLog> = Layer.effect(
    DockerImages,
    makeDockerImages
  )
}
