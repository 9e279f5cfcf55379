/**
 * Paths of a container's filesystem resolved from the host without ever leaving
 * it, as moby's `FollowSymlinkInScope`: every symbolic link met on the way,
 * absolute or relative, is evaluated as if the container's root were `/`, and
 * `..` stops at that root. What the daemon opens is then the host path of a
 * link-free container path, so a link `/escape -> /etc` names the container's
 * /etc, never the host's.
 *
 * The filesystem is a root directory and the bind mounts over it (the OCI
 * spec's mounts of type bind: the hosts files, volumes): a path under a bind's
 * destination lives in its source, as dockerd sees it once it has mounted a
 * container's volumes. Each component is mapped through the binds as it is
 * resolved, so a link inside a bind's source is evaluated in the container too.
 *
 * Gotcha: resolving and then opening is not atomic; a running container that
 * swaps a directory for a link in between can still redirect the open (dockerd
 * 20.10's `docker cp` has the same window, and chroots only its extraction).
 */
import { Result } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"

/** A bind mount of the container: its destination inside, its source on the host. */
export interface BindMount {
  readonly destination: string
  readonly source: string
  readonly readOnly: boolean
}

/** A container's filesystem as the host reaches it. */
export interface ScopedRoot {
  /** The host directory that is the container's `/`. */
  readonly root: string
  readonly binds: ReadonlyArray<BindMount>
}

/** A container path resolved in scope. */
export interface ResolvedPath {
  /** The container path, absolute and clean, every link on it followed (the last only if asked). */
  readonly path: string
  /** Where that path is on the host. */
  readonly hostPath: string
  /** The bind mount it lies under, if any. */
  readonly bind: BindMount | undefined
}

/** As moby's `maxSymlinkLimit`: past this many links a path is refused ("too many links"). */
const MAX_LINKS = 255

const componentsOf = (p: string): Array<string> => p.split("/").filter((c) => c !== "" && c !== ".")

/** Whether container path `p` is `dir` or under it. */
const isUnder = (p: string, dir: string) => dir === "/" || p === dir || p.startsWith(`${dir}/`)

/** The bind whose destination holds `p` (the deepest, as later mounts cover earlier ones). */
const bindOf = (scope: ScopedRoot, p: string): BindMount | undefined => {
  let found: BindMount | undefined
  for (const bind of scope.binds) {
    const destination = path.posix.normalize(bind.destination)
    if (isUnder(p, destination) && (found === undefined || destination.length >= path.posix.normalize(found.destination).length)) {
      found = bind
    }
  }
  return found
}

/** The host path of a link-free, clean, absolute container path. */
export const hostPathOf = (scope: ScopedRoot, p: string): { readonly hostPath: string; readonly bind: BindMount | undefined } => {
  const bind = bindOf(scope, p)
  if (bind === undefined) return { hostPath: path.join(scope.root, p), bind }
  const rest = p.slice(path.posix.normalize(bind.destination).length)
  return { hostPath: path.join(bind.source, rest), bind }
}

const lstatOrUndefined = (hostPath: string): fs.Stats | undefined => {
  try {
    return fs.lstatSync(hostPath)
  } catch {
    // Missing (or under a non-directory): the rest of the path is taken as written, as moby's resolver does.
    return undefined
  }
}

/**
 * Resolves `p` (taken as absolute in the container whatever it starts with)
 * in `scope`. `followLast` says whether a link as the last component is
 * followed too (a `PUT` extracts through it; a `GET` archives the link itself).
 * Fails with a message only for a loop of links.
 */
export const resolveInScope = (scope: ScopedRoot, p: string, followLast: boolean): Result.Result<ResolvedPath, string> => {
  const resolved: Array<string> = []
  const pending = componentsOf(p)
  let links = 0
  while (pending.length > 0) {
    const component = pending.shift()!
    if (component === "..") {
      // Clamped at the container's root.
      resolved.pop()
      continue
    }
    resolved.push(component)
    if (pending.length === 0 && !followLast) break
    const { hostPath } = hostPathOf(scope, `/${resolved.join("/")}`)
    const stat = lstatOrUndefined(hostPath)
    if (stat === undefined || !stat.isSymbolicLink()) continue
    links++
    if (links > MAX_LINKS) return Result.fail(`too many links in ${p}`)
    const target = fs.readlinkSync(hostPath)
    resolved.pop()
    if (target.startsWith("/")) resolved.length = 0
    pending.unshift(...componentsOf(target))
  }
  const clean = `/${resolved.join("/")}`
  return Result.succeed({ path: clean, ...hostPathOf(scope, clean) })
}
