/**
 * Network namespaces pinned to a file, as CRI's `pkg/netns` keeps a sandbox's:
 * the namespace lives as long as the file is a bind mount of it, whether or not
 * any process is in it, so CNI can ADD before the task exists and DEL after it
 * is gone. Node can neither unshare nor mount, so `unshare --net=<file> true`
 * makes and pins one (~9 ms) and `umount -l` unpins it.
 *
 * Both are idempotent: creating a pinned file does nothing, removing a missing
 * one is done.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { ContainerdError } from "../domain/ContainerdError.ts"
import { commandFailure as failure, runCommand } from "./Command.ts"

const run = (method: string, command: string, args: ReadonlyArray<string>) =>
  Effect.asVoid(runCommand(method, command, args))

/** Whether `file` is a namespace bind mount: it then lives on nsfs, another device than its directory. */
export const isPinned = (file: string): boolean => {
  const pin = fs.statSync(file, { throwIfNoEntry: false })
  const dir = fs.statSync(path.dirname(file), { throwIfNoEntry: false })
  return pin !== undefined && dir !== undefined && pin.dev !== dir.dev
}

/** Makes a new network namespace pinned at `file` (its directory is made); nothing if one is pinned there. */
export const create = (file: string): Effect.Effect<void, ContainerdError> =>
  Effect.suspend(() => {
    if (isPinned(file)) return Effect.void
    return Effect.try({
      try: () => {
        fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 })
        fs.closeSync(fs.openSync(file, "a"))
      },
      catch: (cause) => failure("Netns.create", `could not create ${file}`, cause)
    }).pipe(Effect.andThen(run("Netns.create", "unshare", [`--net=${file}`, "true"])))
  })

/** Unpins and removes the namespace at `file`; a file that is not there is already removed. */
export const remove = (file: string): Effect.Effect<void, ContainerdError> =>
  Effect.suspend(() => {
    const unpin = isPinned(file) ? run("Netns.remove", "umount", ["-l", file]) : Effect.void
    return unpin.pipe(
      Effect.andThen(Effect.try({
        try: () => fs.rmSync(file, { force: true }),
        catch: (cause) => failure("Netns.remove", `could not remove ${file}`, cause)
      }))
    )
  })
