/**
 * The OCI runtime spec, as much of it as we generate, and how we build it.
 *
 * `defaultSpec` starts from the Linux defaults Docker and containerd use: own
 * pid/ipc/uts/mount/network namespaces; /proc, /dev, /dev/pts, /dev/shm,
 * /dev/mqueue, a read-only /sys and cgroup mount; Docker's default capability
 * set; the masked and read-only /proc and /sys paths; a NOFILE limit; no new
 * privileges; the device cgroup rules for the standard character devices; no
 * seccomp profile (`withDefaultSeccomp` adds Docker's). Every
 * other choice is a pure `(spec) => spec` function, so a caller composes exactly
 * the container it means and each option can be tested alone.
 */
import { Schema } from "effect"
import { defaultCapabilities } from "./Capabilities.ts"
import { defaultProfile, LinuxSeccomp } from "./Seccomp.ts"

export { defaultCapabilities } from "./Capabilities.ts"

const Strings = Schema.Array(Schema.String)

/** A mount in the container. */
export const Mount = Schema.Struct({
  destination: Schema.String,
  type: Schema.optional(Schema.String),
  source: Schema.optional(Schema.String),
  options: Schema.optional(Strings)
})
export type Mount = typeof Mount.Type

/** The identity a process runs as. */
export const User = Schema.Struct({
  uid: Schema.Int,
  gid: Schema.Int,
  additionalGids: Schema.optional(Schema.Array(Schema.Int))
})
export type User = typeof User.Type

/** A process of the container: the init's, or an exec's. */
export const Process = Schema.Struct({
  terminal: Schema.optional(Schema.Boolean),
  user: User,
  args: Strings,
  env: Schema.optional(Strings),
  cwd: Schema.String,
  capabilities: Schema.optional(Schema.Struct({
    bounding: Schema.optional(Strings),
    effective: Schema.optional(Strings),
    permitted: Schema.optional(Strings),
    inheritable: Schema.optional(Strings),
    ambient: Schema.optional(Strings)
  })),
  rlimits: Schema.optional(Schema.Array(Schema.Struct({ type: Schema.String, hard: Schema.Number, soft: Schema.Number }))),
  noNewPrivileges: Schema.optional(Schema.Boolean),
  /** The process's /proc/<pid>/oom_score_adj; absent: inherited from the shim. */
  oomScoreAdj: Schema.optional(Schema.Int)
})
export type Process = typeof Process.Type

/** A device cgroup rule. */
const DeviceRule = Schema.Struct({
  allow: Schema.Boolean,
  type: Schema.optional(Schema.String),
  major: Schema.optional(Schema.Int),
  minor: Schema.optional(Schema.Int),
  access: Schema.optional(Schema.String)
})

/** A device node runc creates in the container's /dev. */
export const Device = Schema.Struct({
  path: Schema.String,
  type: Schema.Literals(["c", "b", "u", "p"]),
  major: Schema.Int,
  minor: Schema.Int,
  fileMode: Schema.optional(Schema.Int),
  uid: Schema.optional(Schema.Int),
  gid: Schema.optional(Schema.Int)
})
export type Device = typeof Device.Type

/** The cgroup limits we set; also what `Tasks.Update` takes (the options are in `OciResources.ts`). */
export const Resources = Schema.Struct({
  devices: Schema.optional(Schema.Array(DeviceRule)),
  memory: Schema.optional(Schema.Struct({
    limit: Schema.optional(Schema.Number),
    reservation: Schema.optional(Schema.Number),
    swap: Schema.optional(Schema.Number)
  })),
  cpu: Schema.optional(Schema.Struct({
    shares: Schema.optional(Schema.Number),
    quota: Schema.optional(Schema.Number),
    period: Schema.optional(Schema.Number),
    cpus: Schema.optional(Schema.String),
    mems: Schema.optional(Schema.String)
  })),
  pids: Schema.optional(Schema.Struct({ limit: Schema.Number }))
})
export type Resources = typeof Resources.Type

/** A whole runtime spec. */
export const Spec = Schema.Struct({
  ociVersion: Schema.String,
  process: Process,
  root: Schema.Struct({ path: Schema.String, readonly: Schema.optional(Schema.Boolean) }),
  hostname: Schema.optional(Schema.String),
  mounts: Schema.Array(Mount),
  linux: Schema.Struct({
    namespaces: Schema.Array(Schema.Struct({ type: Schema.String, path: Schema.optional(Schema.String) })),
    resources: Schema.optional(Resources),
    sysctl: Schema.optional(Schema.Record(Schema.String, Schema.String)),
    cgroupsPath: Schema.optional(Schema.String),
    maskedPaths: Schema.optional(Strings),
    readonlyPaths: Schema.optional(Strings),
    /** Device nodes made in the container's /dev (`withPrivileged`, `OciResources.withDevices`). */
    devices: Schema.optional(Schema.Array(Device)),
    seccomp: Schema.optional(LinuxSeccomp)
  })
})
export type Spec = typeof Spec.Type

/** One change to a spec. */
export type SpecOption = (spec: Spec) => Spec

/** Docker's search path when neither the image nor the caller sets PATH. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

const nodev = ["nosuid", "noexec", "nodev"]

const defaultMounts: ReadonlyArray<Mount> = [
  { destination: "/proc", type: "proc", source: "proc", options: nodev },
  { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
  {
    destination: "/dev/pts",
    type: "devpts",
    source: "devpts",
    options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
  },
  { destination: "/dev/shm", type: "tmpfs", source: "shm", options: [...nodev, "mode=1777", "size=65536k"] },
  { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: nodev },
  { destination: "/sys", type: "sysfs", source: "sysfs", options: [...nodev, "ro"] },
  { destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: [...nodev, "relatime", "ro"] }
]

/** The /proc and /sys paths Docker hides (an empty tmpfs or /dev/null over them). */
export const maskedPaths: ReadonlyArray<string> = [
  "/proc/asound",
  "/proc/acpi",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/proc/scsi",
  "/sys/firmware",
  "/sys/devices/virtual/powercap"
]

/** The /proc paths Docker mounts read-only. */
export const readonlyPaths: ReadonlyArray<string> = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

const char = (major: number, minor?: number) =>
  minor === undefined ? { allow: true, type: "c", major, access: "rwm" } : { allow: true, type: "c", major, minor, access: "rwm" }

/** Deny every device, then allow null, zero, full, random, urandom, tty, console, ptmx, pts and tun. */
const defaultDeviceRules = [
  { allow: false, access: "rwm" },
  char(1, 3),
  char(1, 5),
  char(1, 7),
  char(1, 8),
  char(1, 9),
  char(5, 0),
  char(5, 1),
  char(5, 2),
  char(136),
  char(10, 200)
]

/**
 * The defaults every container starts from. `cgroupsPath` is `/<namespace>/<id>`,
 * as containerd's own clients use.
 */
export const defaultSpec = (options: { readonly namespace: string; readonly id: string }): Spec => ({
  ociVersion: "1.0.2",
  process: {
    terminal: false,
    user: { uid: 0, gid: 0 },
    args: [],
    env: [`PATH=${DEFAULT_PATH}`],
    cwd: "/",
    capabilities: {
      bounding: defaultCapabilities,
      effective: defaultCapabilities,
      permitted: defaultCapabilities
    },
    // containerd's default: raising a hard limit above the caller's own needs
    // privileges a nested or rootless host may not grant.
    rlimits: [{ type: "RLIMIT_NOFILE", soft: 1024, hard: 1024 }],
    noNewPrivileges: true
  },
  root: { path: "rootfs", readonly: false },
  hostname: options.id.slice(0, 63),
  mounts: defaultMounts,
  linux: {
    namespaces: ["pid", "ipc", "uts", "mount", "network"].map((type) => ({ type })),
    resources: { devices: defaultDeviceRules },
    cgroupsPath: `/${options.namespace}/${options.id}`,
    maskedPaths,
    readonlyPaths
  }
})

/** Applies options left to right. */
export const applyOptions = (spec: Spec, options: ReadonlyArray<SpecOption>): Spec =>
  options.reduce((acc, option) => option(acc), spec)

const process_ = (f: (process: Process) => Process): SpecOption => (spec) => ({ ...spec, process: f(spec.process) })

/** The command line. */
export const withArgs = (args: ReadonlyArray<string>): SpecOption => process_((p) => ({ ...p, args }))

/** The complete environment (already merged; see ContainerConfig.processEnv). */
export const withEnv = (env: ReadonlyArray<string>): SpecOption => process_((p) => ({ ...p, env }))

/** The working directory. */
export const withCwd = (cwd: string): SpecOption => process_((p) => ({ ...p, cwd }))

/** The identity the process runs as. */
export const withUser = (user: User): SpecOption => process_((p) => ({ ...p, user }))

/**
 * Whether the process may gain privileges (setuid binaries, file capabilities).
 * The default spec says no, as containerd's; Docker's default is yes unless
 * `--security-opt no-new-privileges`.
 */
export const withNoNewPrivileges = (noNewPrivileges: boolean): SpecOption => process_((p) => ({ ...p, noNewPrivileges }))

/** The process's OOM score adjustment, -1000 to 1000 (Docker sets 0 unless `--oom-score-adj`). */
export const withOomScoreAdj = (oomScoreAdj: number): SpecOption => process_((p) => ({ ...p, oomScoreAdj }))

/** A terminal for the process (its stdout and stderr become one stream). */
export const withTerminal = (terminal: boolean): SpecOption => process_((p) => ({ ...p, terminal }))

/** The container's hostname. */
export const withHostname = (hostname: string): SpecOption => (spec) => ({ ...spec, hostname })

/** A read-only root filesystem. */
export const withReadonlyRootfs = (readonly: boolean): SpecOption => (spec) => ({
  ...spec,
  root: { ...spec.root, readonly }
})

/** Extra mounts, after the defaults (a later mount over the same path wins, as in runc). */
export const withMounts = (mounts: ReadonlyArray<Mount>): SpecOption => (spec) => ({
  ...spec,
  mounts: [...spec.mounts, ...mounts]
})

/**
 * The network: "none" keeps the container's own network namespace, in which runc
 * brings up only the loopback interface; "host" shares the host's, and mounts the
 * host's /etc/hosts and /etc/resolv.conf read-only as Docker does; `{ netns }`
 * joins a namespace pinned at that path (as CRI's sandbox joins the one it made
 * for the pod's networks: runc then brings up nothing, its owner sets it up).
 */
export const withNetwork = (mode: "none" | "host" | { readonly netns: string }): SpecOption => (spec) =>
  typeof mode === "object"
    ? {
      ...spec,
      linux: {
        ...spec.linux,
        namespaces: [...spec.linux.namespaces.filter((ns) => ns.type !== "network"), { type: "network", path: mode.netns }]
      }
    }
    : mode === "none" ? spec : {
    ...spec,
    mounts: [
      ...spec.mounts,
      { destination: "/etc/hosts", type: "bind", source: "/etc/hosts", options: ["rbind", "ro"] },
      { destination: "/etc/resolv.conf", type: "bind", source: "/etc/resolv.conf", options: ["rbind", "ro"] }
    ],
    linux: { ...spec.linux, namespaces: spec.linux.namespaces.filter((ns) => ns.type !== "network") }
  }

const resources_ = (f: (resources: Resources) => Resources): SpecOption => (spec) => ({
  ...spec,
  linux: { ...spec.linux, resources: f(spec.linux.resources ?? {}) }
})

/** A hard memory limit, in bytes. */
export const withMemoryLimit = (bytes: number): SpecOption =>
  resources_((r) => ({ ...r, memory: { ...r.memory, limit: bytes } }))

/** The CPU weight relative to other containers (cgroup v1 shares; 1024 is the default). */
export const withCpuShares = (shares: number): SpecOption => resources_((r) => ({ ...r, cpu: { ...r.cpu, shares } }))

const linux_ = (f: (linux: Spec["linux"]) => Spec["linux"]): SpecOption => (spec) => ({ ...spec, linux: f(spec.linux) })

/** The capability set of the process: bounding, effective and permitted (as Docker; none inheritable or ambient). */
export const withCapabilities = (capabilities: ReadonlyArray<string>): SpecOption =>
  process_((p) => ({ ...p, capabilities: { bounding: capabilities, effective: capabilities, permitted: capabilities } }))

/** A seccomp profile; `undefined` runs the container unconfined. */
export const withSeccomp = (profile: LinuxSeccomp | undefined): SpecOption =>
  linux_(({ seccomp: _, ...linux }) => profile === undefined ? linux : { ...linux, seccomp: profile })

/**
 * Docker's default seccomp profile (`Seccomp.defaultProfile`) for the
 * capabilities the spec has when this option runs: put it after every option
 * that changes them.
 */
export const withDefaultSeccomp = (target: { readonly arch: string; readonly kernel: readonly [number, number] }): SpecOption =>
  (spec) => withSeccomp(defaultProfile({ ...target, capabilities: spec.process.capabilities?.bounding ?? [] }))(spec)

/** The paths hidden from the container and those mounted read-only (Docker's `systempaths=unconfined`: none). */
export const withSystemPaths = (paths: { readonly masked: ReadonlyArray<string>; readonly readonly: ReadonlyArray<string> }): SpecOption =>
  linux_((linux) => ({ ...linux, maskedPaths: paths.masked, readonlyPaths: paths.readonly }))

const clearReadonly = (mount: Mount): Mount => ({ ...mount, options: (mount.options ?? []).filter((o) => o !== "ro") })

/**
 * What Docker's `--privileged` does besides capabilities and seccomp (moby's
 * `oci_linux.go`): the host's devices in the container and every device allowed
 * in its cgroup, nothing masked or read-only in /proc, and /sys (unless the root
 * filesystem is read-only: put this after `withReadonlyRootfs`) and the cgroup
 * mount writable.
 */
export const withPrivileged = (hostDevices: ReadonlyArray<Device>): SpecOption => (spec) => ({
  ...spec,
  mounts: spec.mounts.map((mount) =>
    (mount.destination === "/sys" && spec.root.readonly !== true) || mount.destination === "/sys/fs/cgroup"
      ? clearReadonly(mount)
      : mount
  ),
  linux: {
    ...spec.linux,
    devices: [...(spec.linux.devices ?? []), ...hostDevices],
    resources: { ...spec.linux.resources, devices: [{ allow: true, access: "rwm" }] },
    maskedPaths: [],
    readonlyPaths: []
  }
})
