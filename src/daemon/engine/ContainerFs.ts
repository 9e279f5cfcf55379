/**
 * A container's filesystem as the host reaches it for `docker cp`, for the
 * request's scope: the root directory and the spec's bind mounts that
 * `ScopedPath.ts` resolves container paths in.
 *
 * - A running (or paused) container: its init's `/proc/<pid>/root`, which is
 *   exactly the root the container sees (its rootfs mount, whatever mounted it:
 *   this daemon's containerd or an external one), without mounting anything.
 * - A stopped one: its rootfs snapshot (`Snapshots.Mounts`) mounted on a fresh
 *   directory under the mount root, unmounted and removed when the scope closes.
 *   The container's lock is held meanwhile, so a start cannot mount the same
 *   upper directory while we write to it. A daemon killed mid-copy leaves such a
 *   mount: `removeLeftoverMounts` unmounts it at the next start.
 *
 * Paths under a bind mount (the hosts files, volumes) resolve to its source,
 * as dockerd sees them once it has mounted a container's volumes.
 */
import { Effect, type Scope } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { runCommand } from "../../internal/Command.ts"
import type { BindMount, ScopedRoot } from "../../internal/ScopedPath.ts"
import { type DockerError, internal } from "../DockerError.ts"
import { type Environment, files, inNamespace, lib, trackedOf } from "./Environment.ts"
import { isRunning } from "./State.ts"
import type { Entry } from "./Store.ts"

/** What a copy works on. */
export interface ContainerFs {
  readonly scope: ScopedRoot
  /** The container's `--read-only`: writes outside its writable binds are refused. */
  readonly readOnlyRootfs: boolean
}

interface SpecMount {
  readonly destination?: string
  readonly type?: string
  readonly source?: string
  readonly options?: ReadonlyArray<string>
}

/** The spec's bind mounts (`type: bind`, or a `bind`/`rbind` option as runc reads them). */
export const bindsOf = (spec: unknown): ReadonlyArray<BindMount> =>
  ((spec as { mounts?: ReadonlyArray<SpecMount> } | undefined)?.mounts ?? []).flatMap((mount) =>
    mount.destination !== undefined && mount.source !== undefined &&
      (mount.type === "bind" || mount.options?.includes("bind") === true || mount.options?.includes("rbind") === true)
      ? [{ destination: mount.destination, source: mount.source, readOnly: mount.options?.includes("ro") === true }]
      : []
  )

/** Where stopped containers' rootfs snapshots are mounted for a copy: beside the logs, under the data root. */
export const mountRootOf = (env: Environment) => env.options.mountRoot ?? path.join(path.dirname(env.options.logRoot), "mnt")

const METHOD = "docker cp"

/** Mounts `mounts` on `target` in order, as containerd's `mount.All`. */
const mountAll = (mounts: ReadonlyArray<{ readonly type: string; readonly source: string; readonly options: ReadonlyArray<string> }>, target: string) =>
  Effect.forEach(mounts, (mount) => {
    const bind = mount.type === "bind" || mount.options.includes("bind") || mount.options.includes("rbind")
    const options = mount.type === "bind" && !mount.options.some((o) => o === "bind" || o === "rbind") ? ["rbind", ...mount.options] : mount.options
    return runCommand(METHOD, "mount", [...(bind ? [] : ["-t", mount.type]), ...(options.length > 0 ? ["-o", options.join(",")] : []), mount.source, target])
  }, { discard: true })

/** Unmounts whatever is on `target` (each stacked mount) and removes the directory; never removes what is in it. */
const unmountAndRemove = (target: string): Effect.Effect<void> =>
  runCommand(METHOD, "umount", [target]).pipe(
    Effect.repeat({ while: () => true, times: 16 }),
    // umount fails once nothing is left mounted there: that failure is the loop's end, not an error. A mount
    // that stays (busy) makes the rmdir below fail, which is what tells.
    Effect.ignore,
    Effect.andThen(Effect.sync(() => {
      try {
        fs.rmdirSync(target)
      } catch {
        // Still mounted or not empty: left for the next start's cleanup rather than risking what is under it.
      }
    }))
  )

/** The mounted rootfs of a stopped container, for the scope. */
const mountedSnapshot = (env: Environment, entry: Entry, mounts: Effect.Effect<ReadonlyArray<{ readonly type: string; readonly source: string; readonly options: ReadonlyArray<string> }>, DockerError>) =>
  Effect.gen(function*() {
    const root = mountRootOf(env)
    const target = yield* Effect.acquireRelease(
      Effect.flatMap(files("copy mount", () => fs.mkdirSync(root, { recursive: true, mode: 0o700 })), () =>
        Effect.try({ try: () => fs.mkdtempSync(path.join(root, `${entry.id.slice(0, 12)}-`)), catch: (cause) => internal(`copy mount: ${String(cause)}`) })),
      unmountAndRemove
    )
    yield* lib(mountAll(yield* mounts, target))
    return target
  })

/** The container's filesystem for the scope (see the module's header). */
export const containerFs = (env: Environment, entry: Entry): Effect.Effect<ContainerFs, DockerError, Scope.Scope> =>
  Effect.gen(function*() {
    const running = Effect.map(trackedOf(env, entry), (tracked) =>
      tracked?.task !== undefined && tracked.state.status !== undefined && isRunning(tracked.state.status) ? tracked.task.pid : undefined)
    let pid = yield* running
    if (pid === undefined) {
      yield* entry.lock.takeScoped(1)
      // A start may have finished while we waited: its task's root is then the one to use.
      pid = yield* running
    }
    const tracked = yield* trackedOf(env, entry)
    if (tracked?.container === undefined) return yield* Effect.fail(internal(`container ${entry.id} is not tracked: its files cannot be reached`))
    const container = tracked.container
    const root = pid !== undefined
      ? `/proc/${pid}/root`
      : yield* mountedSnapshot(env, entry, lib(inNamespace(env)(container.rootfs)))
    return {
      scope: { root, binds: bindsOf(container.info.spec) },
      readOnlyRootfs: entry.stored.HostConfig.ReadonlyRootfs === true
    }
  })

/** At the daemon's start: every copy mount a killed daemon left, unmounted and its directory removed (never its contents). */
export const removeLeftoverMounts = (root: string): Effect.Effect<void> =>
  Effect.suspend(() => {
    let names: Array<string>
    try {
      names = fs.readdirSync(root)
    } catch {
      return Effect.void
    }
    return Effect.forEach(names, (name) => unmountAndRemove(path.join(root, name)), { discard: true })
  })
