/**
 * The resource and namespace options of a runtime spec, as moby's
 * `daemon/oci_linux.go` and `daemon_unix.go` set them: cgroup limits (pids, CPU
 * quota and cpuset, memory reservation and swap), rlimits, device nodes,
 * namespaced sysctls, the /dev/shm size, namespaces shared with the host or
 * joined from another process, and an init process. Each is a pure
 * `(spec) => spec` function over `OciSpec.Spec`, applied after the defaults;
 * checking the values is the caller's (the daemon checks them as dockerd does).
 */
import type { Mount, Spec, SpecOption } from "./OciSpec.ts"

type Linux = Spec["linux"]
type Resources = NonNullable<Linux["resources"]>

const linux_ = (f: (linux: Linux) => Linux): SpecOption => (spec) => ({ ...spec, linux: f(spec.linux) })
const resources_ = (f: (resources: Resources) => Resources): SpecOption =>
  linux_((l) => ({ ...l, resources: f(l.resources ?? {}) }))

/**
 * The cgroup's memory, CPU and pids limits (`Resources`' fields but its device
 * rules), each only when given, over what the spec has: a pids limit absent or
 * -1 is unlimited, a swap of -1 too.
 */
export const withLimits = (limits: Omit<Resources, "devices">): SpecOption =>
  resources_((r) => ({
    ...r,
    ...(limits.memory === undefined ? {} : { memory: { ...r.memory, ...limits.memory } }),
    ...(limits.cpu === undefined ? {} : { cpu: { ...r.cpu, ...limits.cpu } }),
    ...(limits.pids === undefined ? {} : { pids: limits.pids })
  }))

/** The cgroup's memory, CPU and pids limits replaced by `limits` (its device rules kept): what an update leaves for the next start. */
export const replaceLimits = (limits: Omit<Resources, "devices">): SpecOption =>
  resources_((r) => ({ ...(r.devices === undefined ? {} : { devices: r.devices }), ...limits }))

/** One process resource limit, `type` as the kernel names it (`RLIMIT_NOFILE`). */
export interface Rlimit {
  readonly type: string
  readonly soft: number
  readonly hard: number
}

/** Resource limits of the process; each replaces the default of its type (as dockerd's `setRlimits`). */
export const withRlimits = (rlimits: ReadonlyArray<Rlimit>): SpecOption => (spec) => {
  const types = new Set(rlimits.map((r) => r.type))
  return {
    ...spec,
    process: { ...spec.process, rlimits: [...(spec.process.rlimits ?? []).filter((r) => !types.has(r.type)), ...rlimits] }
  }
}

/** A host device node made in the container, and the cgroup rule that lets it be used. */
export interface Device {
  /** Where it appears in the container. */
  readonly path: string
  /** `c` (character) or `b` (block). */
  readonly type: "c" | "b"
  readonly major: number
  readonly minor: number
  /** The node's permission bits (as on the host). */
  readonly fileMode: number
  readonly uid: number
  readonly gid: number
  /** The cgroup access: some of `r`, `w`, `m`. */
  readonly access: string
}

/** Device nodes, each with an allow rule after the default ones (as dockerd's `WithDevices`). */
export const withDevices = (devices: ReadonlyArray<Device>): SpecOption => (spec) => ({
  ...spec,
  linux: {
    ...spec.linux,
    devices: [
      ...(spec.linux.devices ?? []),
      ...devices.map(({ path, type, major, minor, fileMode, uid, gid }) => ({ path, type, major, minor, fileMode, uid, gid }))
    ],
    resources: {
      ...spec.linux.resources,
      devices: [
        ...(spec.linux.resources?.devices ?? []),
        ...devices.map(({ type, major, minor, access }) => ({ allow: true, type, major, minor, access }))
      ]
    }
  }
})

/** Kernel parameters set in the container's namespaces (runc refuses those of a namespace it shares with the host). */
export const withSysctls = (sysctl: Readonly<Record<string, string>>): SpecOption =>
  linux_((l) => ({ ...l, sysctl: { ...l.sysctl, ...sysctl } }))

const replaceMount = (mounts: ReadonlyArray<Mount>, destination: string, mount: Mount | undefined): ReadonlyArray<Mount> =>
  mounts.flatMap((m) => m.destination !== destination ? [m] : mount === undefined ? [] : [mount])

/** The size of the container's /dev/shm tmpfs, in bytes (Docker's default is 64 MiB). */
export const withShmSize = (bytes: number): SpecOption => (spec) => ({
  ...spec,
  mounts: spec.mounts.map((m) =>
    m.destination !== "/dev/shm" ? m : { ...m, options: [...(m.options ?? []).filter((o) => !o.startsWith("size=")), `size=${bytes}`] }
  )
})

/**
 * What the container's /dev/shm is: its own tmpfs (the default), none (IPC mode
 * `none`), or a bind of another one (IPC mode `host`: the host's /dev/shm; a
 * joined container's, through its init's /proc/<pid>/root).
 */
export const withShm = (shm: { readonly _tag: "None" } | { readonly _tag: "Bind"; readonly source: string }): SpecOption =>
(spec) => ({
  ...spec,
  mounts: replaceMount(
    spec.mounts,
    "/dev/shm",
    shm._tag === "None" ? undefined : { destination: "/dev/shm", type: "bind", source: shm.source, options: ["rbind", "rprivate"] }
  )
})

/** A namespace type of the spec. */
export type NamespaceType = "pid" | "ipc" | "uts" | "network" | "mount" | "user" | "cgroup"

/**
 * A namespace of the container's: the host's (none of its own), or the one a
 * process is in (`/proc/<pid>/ns/<type>`, as dockerd joins `container:<id>`).
 * The UTS namespace of the host takes the spec's hostname away: runc sets none
 * outside a private one.
 */
export const withNamespace = (type: NamespaceType, mode: { readonly _tag: "Host" } | { readonly _tag: "Join"; readonly path: string }): SpecOption =>
(spec) => {
  const others = spec.linux.namespaces.filter((ns) => ns.type !== type)
  const namespaces = mode._tag === "Host" ? others : [...others, { type, path: mode.path }]
  const { hostname: _, ...withoutHostname } = spec
  return { ...(type === "uts" && mode._tag === "Host" ? withoutHostname : spec), linux: { ...spec.linux, namespaces } }
}

/** Where the init binary is mounted in the container, as Docker's. */
export const INIT_PATH = "/sbin/docker-init"

/**
 * An init as PID 1 (dockerd's `--init`): the host's `docker-init` (tini) bound
 * read-only at /sbin/docker-init, running the command after `--`.
 */
export const withInit = (hostPath: string): SpecOption => (spec) => ({
  ...spec,
  process: { ...spec.process, args: [INIT_PATH, "--", ...spec.process.args] },
  mounts: [...spec.mounts, { destination: INIT_PATH, type: "bind", source: hostPath, options: ["bind", "ro"] }]
})

/** The command under an init added by `withInit` (what Docker shows as the container's Path and Args). */
export const withoutInit = (args: ReadonlyArray<string>): ReadonlyArray<string> =>
  args[0] === INIT_PATH && args[1] === "--" ? args.slice(2) : args
