/**
 * Reading a file of a container's root filesystem straight from the snapshot
 * directories its mounts name, without mounting anything or calling containerd.
 * For an overlay mount the file is looked up from the top layer down (upperdir,
 * then each lowerdir); an overlay whiteout (a 0:0 character device) hides it. A
 * bind mount is read from its source. Used for /etc/passwd and /etc/group, which
 * Docker's user lookup needs, before any process exists to ask.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { Mount } from "../gen/containerd/types/mount.ts"

/** The most we read of such a file. */
const MAX_SIZE = 1024 * 1024

const optionValue = (mount: Mount, key: string): string | undefined =>
  mount.options.find((o) => o.startsWith(`${key}=`))?.slice(key.length + 1)

/** The directories to look in, top first. */
const layersOf = (mounts: ReadonlyArray<Mount>): ReadonlyArray<string> => {
  const mount = mounts[0]
  if (mounts.length !== 1 || mount === undefined) return []
  if (mount.type === "overlay") {
    const upper = optionValue(mount, "upperdir")
    return [...(upper === undefined ? [] : [upper]), ...(optionValue(mount, "lowerdir")?.split(":") ?? [])]
  }
  return mount.type === "bind" || mount.options.includes("bind") || mount.options.includes("rbind") ? [mount.source] : []
}

/**
 * The text of `file` (an absolute path inside the container), or undefined if the
 * root filesystem has no such regular file or its mounts are of a kind we cannot read.
 */
export const readRootfsFile = (mounts: ReadonlyArray<Mount>, file: string): Effect.Effect<string | undefined> =>
  Effect.sync(() => {
    for (const layer of layersOf(mounts)) {
      let stat: fs.Stats
      const candidate = path.join(layer, file)
      try {
        stat = fs.lstatSync(candidate)
      } catch {
        continue
      }
      if (stat.isCharacterDevice() && stat.rdev === 0) return undefined
      if (!stat.isFile() || stat.size > MAX_SIZE) return undefined
      return fs.readFileSync(candidate, "utf8")
    }
    return undefined
  })
