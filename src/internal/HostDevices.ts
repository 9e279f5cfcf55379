/**
 * The host's device nodes, as runc's `devices.HostDevices` lists them for a
 * privileged container: every character and block device under /dev, except the
 * per-container ones (pts, shm, mqueue, fd) and /dev/console, which runc sets up
 * itself. Read when a privileged container is created.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { Device } from "../domain/OciSpec.ts"

const SKIPPED_DIRS = new Set(["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"])

/** Linux's major and minor numbers of a `dev_t` (glibc's `gnu_dev_major`/`gnu_dev_minor`). */
const split = (rdev: bigint): { major: number; minor: number } => ({
  major: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)),
  minor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn))
})

const nodeOf = (full: string, entry: fs.Dirent): ReadonlyArray<Device> => {
  if (full === "/dev/console" || !(entry.isCharacterDevice() || entry.isBlockDevice())) return []
  // A node that vanished in between is no longer a device of the host.
  const stat = fs.lstatSync(full, { bigint: true, throwIfNoEntry: false })
  if (stat === undefined) return []
  return [{
    path: full,
    type: entry.isCharacterDevice() ? "c" : "b",
    ...split(stat.rdev),
    fileMode: Number(stat.mode & 0o7777n),
    uid: Number(stat.uid),
    gid: Number(stat.gid)
  }]
}

/**
 * The host's devices under `dir` (default /dev). A subdirectory that cannot be read (runc skips those too) has none;
 * so has an unreadable /dev, said in the log, since a privileged container then gets fewer devices than asked.
 */
export const hostDevices = (dir = "/dev"): Effect.Effect<ReadonlyArray<Device>> =>
  Effect.try(() => fs.readdirSync(dir, { withFileTypes: true })).pipe(
    Effect.tapError((error) => Effect.logWarning(`could not list the host's devices under ${dir}`, error)),
    Effect.orElseSucceed((): ReadonlyArray<fs.Dirent> => []),
    Effect.flatMap((entries) =>
      Effect.forEach(entries, (entry) => {
        const full = path.join(dir, entry.name)
        if (!entry.isDirectory()) return Effect.sync(() => nodeOf(full, entry))
        return SKIPPED_DIRS.has(entry.name) ? Effect.succeed([]) : hostDevices(full)
      })
    ),
    Effect.map((lists) => lists.flat())
  )
