/**
 * Docker's view of containerd's image records. containerd keeps one record per
 * full reference pointing at a manifest or index; Docker's image is the config
 * blob, identified by its digest (the image ID), with every reference to it as
 * a `RepoTag` and a `RepoDigest`. So an image here is the group of records that
 * resolve to one config digest, as in dockerd's containerd image store; a name
 * is a reference, a full image ID or an unambiguous ID prefix. Also the
 * summaries and filters of `GET /images/json`.
 */
import { Effect, Option, Result } from "effect"
import { parseReferenceResult, Reference } from "../../domain/Reference.ts"
import type { ContainerdError } from "../../domain/ContainerdError.ts"
import type { ImageRecord, Images, ResolvedImage } from "../../services/Images.ts"
import { badRequest, type DockerError, fromLibrary, notFound } from "../DockerError.ts"
import { globFilter, matchLabels, type Pattern } from "../Filters.ts"
import { familiarName, isDanglingName } from "./Names.ts"

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

/** Filters of `GET /images/json`: `reference` (globs), `dangling`, `label` (`key` or `key=value`). */
export type ImageFilters = Readonly<Record<string, ReadonlyArray<string>>>

/** The filters `GET /images/json` understands. */
export const IMAGE_FILTERS: ReadonlyArray<string> = ["reference", "dangling", "label"]

/** An image record with what it resolves to. */
export interface Entry {
  readonly record: ImageRecord
  /** The record's name as a reference; `undefined` for names that are not (`import-2024…`). */
  readonly reference: Reference | undefined
  readonly resolved: ResolvedImage
}

/** A Docker image: the records resolving to one config digest. */
export interface Group {
  /** The image ID: the config digest. */
  readonly id: string
  readonly entries: ReadonlyArray<Entry>
}

/** What a name found: the image, and the record when the name was a reference to one. */
export interface Found extends Group {
  readonly by: Entry | undefined
}

const FULL_ID = /^(?:sha256:)?([0-9a-f]{64})$/
const SHORT_ID = /^(?:sha256:)?([0-9a-f]{1,63})$/

/** `busybox:latest` (or `busybox@sha256:…`) for a record; its raw name if it is not a reference. */
export const displayName = (entry: Entry): string => entry.reference?.familiar ?? entry.record.name

export const repoTags = (group: Group): ReadonlyArray<string> =>
  group.entries.flatMap(({ reference }) =>
    reference?.tag === undefined ? [] : [new Reference(reference.domain, reference.path, reference.tag, undefined).familiar])

export const repoDigests = (group: Group): ReadonlyArray<string> => [
  ...new Set(group.entries.flatMap(({ record, reference }) =>
    reference === undefined ? [] : [`${familiarName(reference)}@${record.target.digest}`]))
]

export const groupEntries = (entries: ReadonlyArray<Entry>): ReadonlyArray<Group> => {
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
  if (!matchLabels(filters["label"], labels)) return Result.succeed({ keep: false, tags })
  const patterns = filters["reference"] ?? []
  if (patterns.length > 0) {
    const regExps: Array<Pattern> = []
    for (const pattern of patterns) {
      const compiled = globFilter("reference", pattern)
      if (Result.isFailure(compiled)) return Result.fail(compiled.failure)
      regExps.push(compiled.success)
    }
    // dockerd's FamiliarMatch: the pattern against `name:tag`, else against `name`; only matching tags are shown.
    shown = tags.filter((tag) => regExps.some((re) => re.test(tag) || re.test(tag.slice(0, tag.lastIndexOf(":")))))
    if (shown.length === 0) return Result.succeed({ keep: false, tags })
  }
  return Result.succeed({ keep: true, tags: shown })
}

/** Docker's size of an image: its config and its (compressed) layers, as the manifest lists them. */
export const imageSize = (resolved: ResolvedImage): number =>
  resolved.layers.reduce((sum, layer) => sum + layer.size, resolved.configSize)

/** The `GET /images/json` entry of an image, if it passes `filters`. */
export const summaryOf = (group: Group, filters: ImageFilters | undefined): Result.Result<Option.Option<ImageSummaryJson>, string> => {
  const { resolved } = group.entries[0]!
  const labels = resolved.config.config?.Labels ?? {}
  return Result.map(filterImage(filters, repoTags(group), labels), (filtered) => {
    if (!filtered.keep) return Option.none()
    const created = resolved.config.created === undefined ? Number.NaN : Date.parse(resolved.config.created)
    return Option.some({
      Id: group.id,
      ParentId: "",
      RepoTags: filtered.tags,
      RepoDigests: repoDigests(group),
      Created: Number.isNaN(created) ? 0 : Math.floor(created / 1000),
      Size: imageSize(resolved),
      SharedSize: -1,
      Labels: labels,
      Containers: -1
    })
  })
}

/** Every image record of the library with what it resolves to: what the daemon's image routes and create look names up in. */
export const listEntries = (images: Images["Service"]): Effect.Effect<ReadonlyArray<Entry>, DockerError> =>
  Effect.gen(function*() {
    const records = yield* images.list().pipe(Effect.mapError((error) => fromLibrary(error)))
    const resolved = yield* Effect.forEach(records, (record) =>
      images.resolve(record.name).pipe(
        Effect.map((resolved): Option.Option<Entry> =>
          Option.some({
            record,
            reference: isDanglingName(record.name) ? undefined : Result.getOrUndefined(parseReferenceResult(record.name)),
            resolved
          })),
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
export const find = (all: ReadonlyArray<Entry>, name: string): Effect.Effect<Found, DockerError> => {
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
