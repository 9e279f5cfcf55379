/**
 * `docker image prune`, as moby's `daemon/images/image_prune.go`: the images
 * no container uses (in any state) that the filters select — only dangling
 * ones (no tag) unless `dangling=false` — are deleted as `docker rmi` would,
 * name by name (the last name deletes the image), never forced: an image that
 * a container took meanwhile stays, and the failure is logged and skipped, as
 * dockerd does.
 *
 * Gotcha: `SpaceReclaimed` is the deleted images' size as `docker images`
 * shows it (config and compressed layers); dockerd counts the unpacked size of
 * the layers it removed.
 */
import { Effect, Result } from "effect"
import type { DockerError } from "../DockerError.ts"
import type { Filters } from "../api/Query.ts"
import { type Entry, groupEntries, imageSize, repoTags } from "./Listing.ts"
import { isDanglingName } from "./Names.ts"

/** The filters `POST /images/prune` takes. */
export const IMAGE_PRUNE_FILTERS: ReadonlyArray<string> = ["dangling", "until", "label", "label!"]

/** What a prune deleted, in dockerd's shape (`ImagesDeleted` is null when nothing was). */
export interface ImagesPruneReport {
  readonly ImagesDeleted: ReadonlyArray<{ readonly Untagged: string } | { readonly Deleted: string }> | null
  readonly SpaceReclaimed: number
}

/** `dangling=` as moby reads it: true unless `false`/`0`; anything but those and `true`/`1` is refused. */
export const danglingOnly = (filters: Filters | undefined): Result.Result<boolean, string> => {
  const values = filters?.["dangling"]
  if (values === undefined) return Result.succeed(true)
  if (values.some((v) => v === "false" || v === "0")) return Result.succeed(false)
  if (values.some((v) => v === "true" || v === "1")) return Result.succeed(true)
  return Result.fail(`invalid filter 'dangling=[${values.join(" ")}]'`)
}

/** What the prune needs of the images service. */
export interface PruneDeps {
  readonly entries: Effect.Effect<ReadonlyArray<Entry>, DockerError>
  readonly usersOf: (imageId: string) => Effect.Effect<ReadonlyArray<unknown>>
  readonly remove: (name: string) => Effect.Effect<ReadonlyArray<{ readonly Untagged: string } | { readonly Deleted: string }>, DockerError>
}

/** Deletes the unused images `select` takes (by creation time in ms and config labels); dangling ones only if `onlyDangling`. */
export const pruneImages = (
  deps: PruneDeps,
  onlyDangling: boolean,
  select: (created: number, labels: Readonly<Record<string, string>>) => boolean
) =>
  Effect.gen(function*() {
    const deleted: Array<{ readonly Untagged: string } | { readonly Deleted: string }> = []
    let reclaimed = 0
    for (const group of groupEntries(yield* deps.entries)) {
      if (onlyDangling && repoTags(group).length > 0) continue
      const { resolved } = group.entries[0]!
      const created = resolved.config.created === undefined ? 0 : Date.parse(resolved.config.created)
      if (!select(Number.isNaN(created) ? 0 : created, resolved.config.config?.Labels ?? {})) continue
      if ((yield* deps.usersOf(group.id)).length > 0) continue
      // Each name in turn, then the nameless records by ID (only they are left by then).
      const names = group.entries.map((entry) => entry.record.name).filter((name) => !isDanglingName(name))
      const targets = group.entries.length > names.length ? [...names, group.id] : names
      for (const target of targets) {
        const items = yield* deps.remove(target).pipe(
          Effect.catch((error) => Effect.as(Effect.logWarning(`failed to prune image ${target}: ${error.message}`), undefined))
        )
        if (items === undefined) break
        deleted.push(...items)
        if (items.some((item) => "Deleted" in item)) reclaimed += imageSize(resolved)
      }
    }
    return { ImagesDeleted: deleted.length === 0 ? null : deleted, SpaceReclaimed: reclaimed } satisfies ImagesPruneReport
  })
