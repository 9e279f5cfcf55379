/**
 * `docker history`: an image's build steps from its config's `history`, newest
 * first, as dockerd answers for a pulled image: only the newest step has an ID
 * (the image's) and the image's tags, the others `<missing>`; each step that
 * added a layer has that layer's size, the others 0.
 */
import type { ResolvedImage } from "../../services/Images.ts"

/** One entry of `GET /images/{name}/history`. */
export interface HistoryEntryJson {
  readonly Comment: string
  readonly Created: number
  readonly CreatedBy: string
  readonly Id: string
  readonly Size: number
  readonly Tags: ReadonlyArray<string> | null
}

/** Go's zero `time.Time` in Unix seconds: what dockerd shows for a step without a date. */
const ZERO_TIME = -62135596800

const unixSeconds = (created: string | undefined): number => {
  const ms = created === undefined ? Number.NaN : Date.parse(created)
  return Number.isNaN(ms) ? ZERO_TIME : Math.floor(ms / 1000)
}

/**
 * The history of `image` (ID `id`, tagged `tags`), with `sizes[i]` the size of
 * its i-th layer as Docker counts it.
 */
export const historyOf = (
  id: string,
  image: ResolvedImage,
  tags: ReadonlyArray<string>,
  sizes: ReadonlyArray<number>
): ReadonlyArray<HistoryEntryJson> => {
  let layer = 0
  const steps = (image.config.history ?? []).map((step) => {
    const empty = step.empty_layer === true
    const size = empty ? 0 : sizes[layer] ?? 0
    if (!empty) layer++
    return { step, size }
  })
  // In dockerd's key order (its struct's), so the answer is the same bytes.
  return steps.reverse().map(({ size, step }, i) => ({
    Comment: step.comment ?? "",
    Created: unixSeconds(step.created),
    CreatedBy: step.created_by ?? "",
    Id: i === 0 ? id : "<missing>",
    Size: size,
    Tags: i === 0 && tags.length > 0 ? tags : null
  }))
}
