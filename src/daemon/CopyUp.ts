/**
 * Docker's volume copy-up (moby's `CopyImagePathContent`): a volume that is
 * still empty when a container is created with it is filled from the image's
 * content at the mount's path, with `cp -a` (owner, mode, times, links), so
 * `-v fresh:/etc` shows the image's /etc instead of hiding it. The files are read
 * from the container's rootfs snapshot, mounted read-only on the host for the
 * copy and unmounted after, before the task exists.
 *
 * Gotcha: a path that resolves (through the image's symlinks) outside the rootfs
 * is not followed: nothing is copied for it, as dockerd resolves in scope.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { RootfsMount } from "../services/runtime/Container.ts"
import { run } from "./Shm.ts"

/** One volume to fill: the container path the image's content comes from, and the volume's data directory. */
export interface CopyTarget {
  readonly path: string
  readonly data: string
}

const attempt = <A>(what: string, f: () => A) =>
  Effect.try({ try: f, catch: (cause) => `${what}: ${cause instanceof Error ? cause.message : String(cause)}` })

/** The rootfs mounted read-only at a temporary directory for the scope. */
const mountedRootfs = (rootfs: ReadonlyArray<RootfsMount>) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      if (rootfs.length !== 1) return yield* Effect.fail(`the rootfs is ${rootfs.length} mounts, not one`)
      const { type, source, options } = rootfs[0]!
      const dir = yield* attempt("could not make a directory", () => fs.mkdtempSync(path.join(os.tmpdir(), "copy-up-")))
      yield* run("mount", ["-t", type, "-o", [...options, "ro"].join(","), source, dir]).pipe(
        Effect.onError(() => Effect.sync(() => fs.rmdirSync(dir)))
      )
      return dir
    }),
    (dir) =>
      run("umount", [dir]).pipe(
        Effect.andThen(Effect.sync(() => fs.rmdirSync(dir))),
        Effect.catch((message) => Effect.logWarning(`copy-up: could not unmount ${dir}: ${message}`))
      )
  )

/** The image's directory at `inside`, resolved within `root`; undefined when absent, not a directory or outside. */
const sourceIn = (mounted: string, inside: string): string | undefined => {
  const root = fs.realpathSync(mounted)
  const candidate = path.join(root, inside)
  if (!fs.existsSync(candidate)) return undefined
  const real = fs.realpathSync(candidate)
  return (real === root || real.startsWith(`${root}/`)) && fs.statSync(real).isDirectory() ? real : undefined
}

/** Fills each target whose data directory is empty from the rootfs; the rootfs is mounted only when one is. */
export const copyUp = (rootfs: Effect.Effect<ReadonlyArray<RootfsMount>, string>, targets: ReadonlyArray<CopyTarget>) =>
  Effect.gen(function*() {
    const empty = yield* attempt("could not read a volume", () => targets.filter((t) => fs.readdirSync(t.data).length === 0))
    if (empty.length === 0) return
    const root = yield* mountedRootfs(yield* rootfs)
    for (const target of empty) {
      const source = yield* attempt(`could not resolve ${target.path}`, () => sourceIn(root, target.path))
      if (source !== undefined) yield* run("cp", ["-a", `${source}/.`, target.data])
    }
  }).pipe(Effect.scoped)
