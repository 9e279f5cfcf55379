/**
 * Removing what we own on disk from finalizers and clean-ups: a failure is
 * logged, never raised, and what is already gone is no failure.
 */
import { Effect } from "effect"
import * as fs from "node:fs"

const remove = (target: string, recursive: boolean): Effect.Effect<void> =>
  Effect.try({ try: () => fs.rmSync(target, { force: true, recursive }), catch: (cause) => cause }).pipe(
    Effect.catch((cause) => Effect.logWarning(`could not remove ${target}`, cause))
  )

/** Removes a file if it is there; a directory in the way is left alone (and logged). */
export const removeFile = (file: string): Effect.Effect<void> => remove(file, false)

/** Removes a directory and everything in it, if it is there. */
export const removeTree = (dir: string): Effect.Effect<void> => remove(dir, true)
