/**
 * Finding, signalling and waiting for processes by PID, from files we own.
 *
 * The harness never looks processes up by name: a shim is found from the state
 * directory of the containerd that started it (its bundle's `address` file names
 * the shim's socket, and the process holding that socket is the shim), a
 * container's init from the bundle's `init.pid`.
 */
import { Effect, Schedule } from "effect"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

/** Whether a PID names a live, non-zombie process. */
export const isAlive = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // The state follows the parenthesised command name, which may contain spaces.
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    return false
  }
}

/** Sends a signal, ignoring processes that are already gone. */
export const signal = (pid: number, sig: NodeJS.Signals): void => {
  try {
    process.kill(pid, sig)
  } catch {
    // ESRCH: already gone.
  }
}

/** Waits until none of `pids` is alive, polling every 20 ms for at most `timeoutMs`. */
export const awaitGone = (pids: ReadonlyArray<number>, timeoutMs: number): Effect.Effect<boolean> =>
  Effect.sync(() => pids.every((pid) => !isAlive(pid))).pipe(
    Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (gone) => gone }),
    Effect.timeoutOption(timeoutMs),
    Effect.map((result) => result._tag === "Some")
  )

const readText = (file: string): string | undefined => {
  try {
    return fs.readFileSync(file, "utf8").trim()
  } catch {
    return undefined
  }
}

/** Inodes of unix sockets bound to `socketPath`, from /proc/net/unix. */
const socketInodes = (socketPath: string): ReadonlySet<string> => {
  const inodes = new Set<string>()
  for (const line of (readText("/proc/net/unix") ?? "").split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/)
    if (fields[7] === socketPath && fields[6] !== undefined) inodes.add(fields[6])
  }
  return inodes
}

/** PIDs of the processes holding any of the given socket inodes open. */
const holdersOf = (inodes: ReadonlySet<string>): ReadonlyArray<number> => {
  if (inodes.size === 0) return []
  const holders: Array<number> = []
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    let fds: Array<string>
    try {
      fds = fs.readdirSync(`/proc/${entry}/fd`)
    } catch {
      continue
    }
    for (const fd of fds) {
      let target: string
      try {
        target = fs.readlinkSync(`/proc/${entry}/fd/${fd}`)
      } catch {
        continue
      }
      const match = /^socket:\[(\d+)\]$/.exec(target)
      if (match?.[1] !== undefined && inodes.has(match[1])) {
        holders.push(Number(entry))
        break
      }
    }
  }
  return holders
}

/** One task bundle left in a containerd state directory. */
export interface Bundle {
  readonly namespace: string
  readonly id: string
  readonly dir: string
  /** The shim's ttrpc socket, from the bundle's `address` file. */
  readonly shimSocket: string | undefined
  /** The live shim processes serving this bundle. */
  readonly shimPids: ReadonlyArray<number>
  /** The container's init process, if it is still alive. */
  readonly initPid: number | undefined
  /** The cgroup path runc was given, from the bundle's config.json. */
  readonly cgroupsPath: string | undefined
  /** runc's state root for the bundle's namespace (shared by every containerd on the host). */
  readonly runcRoot: string
}

/** Where the runc v2 shim keeps runc's state unless the task's options say otherwise. */
export const DEFAULT_RUNC_ROOT = "/run/containerd/runc"

const readJson = (file: string): unknown => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"))
  } catch {
    return undefined
  }
}

/** The namespaces that ever had a runc v2 task under a containerd state directory. */
export const taskNamespacesOf = (stateDir: string): ReadonlyArray<string> => {
  const tasksDir = path.join(stateDir, "io.containerd.runtime.v2.task")
  return fs.existsSync(tasksDir) ? fs.readdirSync(tasksDir) : []
}

/** The runc v2 bundles under a containerd state directory. */
export const bundlesOf = (stateDir: string): ReadonlyArray<Bundle> => {
  const tasksDir = path.join(stateDir, "io.containerd.runtime.v2.task")
  const bundles: Array<Bundle> = []
  for (const namespace of taskNamespacesOf(stateDir)) {
    for (const id of fs.readdirSync(path.join(tasksDir, namespace))) {
      const dir = path.join(tasksDir, namespace, id)
      const shimSocket = readText(path.join(dir, "address"))?.replace(/^unix:\/\//, "")
      const init = Number(readText(path.join(dir, "init.pid")))
      const spec = readJson(path.join(dir, "config.json")) as { linux?: { cgroupsPath?: string } } | undefined
      const options = readJson(path.join(dir, "options.json")) as { root?: string } | undefined
      bundles.push({
        namespace,
        id,
        dir,
        shimSocket,
        shimPids: shimSocket === undefined ? [] : holdersOf(socketInodes(shimSocket)),
        initPid: Number.isInteger(init) && init > 0 && isAlive(init) ? init : undefined,
        cgroupsPath: spec?.linux?.cgroupsPath,
        runcRoot: path.join(options?.root || DEFAULT_RUNC_ROOT, namespace)
      })
    }
  }
  return bundles
}

/** Mount points at or below `dir`, deepest first. */
export const mountsUnder = (dir: string): ReadonlyArray<string> =>
  (readText("/proc/self/mountinfo") ?? "")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((mountPoint): mountPoint is string =>
      mountPoint !== undefined && (mountPoint === dir || mountPoint.startsWith(`${dir}/`))
    )
    .sort((a, b) => b.length - a.length)

/** Removes the (empty) cgroup directories runc created for a path, in every hierarchy. */
export const removeCgroups = (cgroupsPath: string): void => {
  const relative = cgroupsPath.replace(/^\/+/, "")
  if (relative === "" || relative.includes("..")) return
  const roots = ["/sys/fs/cgroup", ...fs.readdirSync("/sys/fs/cgroup").map((c) => path.join("/sys/fs/cgroup", c))]
  for (const root of roots) {
    // Leaf first, then the namespace directory above it if it is now empty.
    for (let p = relative; p !== "." && p !== ""; p = path.dirname(p)) {
      try {
        fs.rmdirSync(path.join(root, p))
      } catch {
        break
      }
    }
  }
}

/**
 * Removes everything the shims of a stopped containerd left: each container
 * with its runc state and cgroup (`runc delete --force`), then the shims and
 * inits by PID, the mounts under `mountRoot`, the shims' sockets, and the
 * namespace-level cgroups and runc directories above the containers.
 */
export const destroyShims = (stateDir: string, mountRoot: string): Effect.Effect<void> =>
  Effect.gen(function*() {
    const bundles = bundlesOf(stateDir)
    for (const bundle of bundles) {
      spawnSync("runc", ["--root", bundle.runcRoot, "delete", "--force", bundle.id], { stdio: "ignore" })
    }
    const leftovers = bundles.flatMap((b) => [...b.shimPids, ...(b.initPid === undefined ? [] : [b.initPid])])
    for (const pid of leftovers) signal(pid, "SIGKILL")
    yield* awaitGone(leftovers, 5000)
    for (const mountPoint of mountsUnder(mountRoot)) spawnSync("umount", ["-l", mountPoint])
    for (const bundle of bundles) {
      if (bundle.shimSocket !== undefined) fs.rmSync(bundle.shimSocket, { force: true })
      if (bundle.cgroupsPath !== undefined) removeCgroups(bundle.cgroupsPath)
      fs.rmSync(path.join(bundle.runcRoot, bundle.id), { recursive: true, force: true })
    }
    // runc removes a container's cgroup and state with its task, but not the
    // namespace-level directories above them.
    for (const namespace of taskNamespacesOf(stateDir)) {
      removeCgroups(`/${namespace}`)
      try {
        fs.rmdirSync(path.join(DEFAULT_RUNC_ROOT, namespace))
      } catch {
        // Not empty (another daemon's namespace of the same name) or already gone.
      }
    }
  })
