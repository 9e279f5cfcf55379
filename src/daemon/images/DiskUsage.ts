/**
 * The images' part of `docker system df` (moby's `daemon/disk_usage.go`):
 * each image with the containers using it, its size and the part of it shared
 * with other images (the layers more than one image lists), and the size of
 * all layers once each (`LayersSize`).
 *
 * Gotcha: sizes are the manifests' (compressed layers), as `docker images`
 * shows them here; dockerd counts unpacked layers.
 */
import { Effect, Option, Result } from "effect"
import { type Group, type ImageSummaryJson, summaryOf } from "./Listing.ts"

/** The images' disk usage. */
export interface ImagesUsage {
  readonly LayersSize: number
  readonly Images: ReadonlyArray<ImageSummaryJson>
}

/** The usage of `groups` (every image), with `usersOf` counting their containers. */
export const imagesUsage = (
  groups: ReadonlyArray<Group>,
  usersOf: (imageId: string) => Effect.Effect<ReadonlyArray<unknown>>
): Effect.Effect<ImagesUsage> =>
  Effect.gen(function*() {
    // Each layer digest: its size, and how many images list it.
    const layers = new Map<string, { readonly size: number; users: number }>()
    for (const group of groups) {
      // An image listing one layer twice counts once.
      for (const layer of new Map(group.entries[0]!.resolved.layers.map((l) => [l.digest, l])).values()) {
        const known = layers.get(layer.digest)
        if (known === undefined) layers.set(layer.digest, { size: layer.size, users: 1 })
        else known.users++
      }
    }
    const images = yield* Effect.forEach(groups, (group) =>
      Effect.map(usersOf(group.id), (users) => {
        // Without filters a summary always is (no filter to refuse, none to leave it out).
        const summary = Result.getOrUndefined(summaryOf(group, undefined))
        if (summary === undefined || Option.isNone(summary)) return []
        const shared = group.entries[0]!.resolved.layers
          .filter((layer) => (layers.get(layer.digest)?.users ?? 0) > 1)
          .reduce((sum, layer) => sum + layer.size, 0)
        return [{ ...summary.value, SharedSize: shared, Containers: users.length }]
      }))
    return { LayersSize: [...layers.values()].reduce((sum, layer) => sum + layer.size, 0), Images: images.flat() }
  })
