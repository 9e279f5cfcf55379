/**
 * A shareable /dev/shm (`--ipc shareable`), as dockerd's `containers/<id>/mounts/shm`:
 * a tmpfs the daemon mounts on the host under the container's directory, bound at
 * the container's /dev/shm, and at the /dev/shm of every container that joins its
 * IPC namespace (`--ipc container:<id>`). A mount of the container's own mount
 * namespace cannot be bound into another one, so the shared one must be the
 * host's. It lives as long as the container: unmounted before its directory is
 * removed (at removal, or at the next start for a container that is gone).
 */
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { removeTree } from "../internal/Files.ts"

/** Where the shareable /dev/shm of the container whose directory is `dir` is mounted. */
export const shmPathIn = (dir: string) => path.join(dir, "shm")

/** Runs a short host command (mount, umount, cp); a failure is its stderr. */
export const run = (command: string, args: ReadonlyArray<string>) =>
  Effect.callback<void, string>((resume) => {
    const child = execFile(command, args, { timeout: 10_000 }, (error, _stdout, stderr) =>
      resume(error === null ? Effect.void : Effect.fail(`${command} ${args.join(" ")}: ${stderr.trim() || error.message}`)))
    return Effect.sync(() => child.kill())
  })

/** Mounts the tmpfs of `bytes` (Docker's mode and flags) at `target`, made if missing. */
export const mountShm = (target: string, bytes: number): Effect.Effect<void, string> =>
  Effect.andThen(
    Effect.try({ try: () => fs.mkdirSync(target, { recursive: true }), catch: (cause) => `could not make ${target}: ${cause}` }),
    run("mount", ["-t", "tmpfs", "-o", `nosuid,nodev,noexec,mode=1777,size=${bytes}`, "shm", target])
  )

/** Whether `target` is a mount point of this mount namespace (its /proc/self/mountinfo line). */
const isMountPoint = (target: string): boolean => {
  const escaped = target.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`)
  return fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").some((line) => line.split(" ")[4] === escaped)
}

/** Unmounts `target` if it is mounted (a failure is logged: what is left is a mount only). */
export const unmountShm = (target: string): Effect.Effect<void> =>
  Effect.suspend(() => isMountPoint(target) ? run("umount", [target]) : Effect.void).pipe(
    Effect.catch((message) => Effect.logWarning(`could not unmount the shareable /dev/shm ${target}: ${message}`))
  )

/** Removes a container's directory, its shareable /dev/shm unmounted first. */
export const removeContainerTree = (dir: string): Effect.Effect<void> => Effect.andThen(unmountShm(shmPathIn(dir)), removeTree(dir))
