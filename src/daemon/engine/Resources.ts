/**
 * The resource and namespace fields of a create request, checked as dockerd
 * checks them (`daemon/daemon_unix.go` `verifyPlatformContainerResources` and
 * `verifyPlatformContainerSettings`; where dockerd only finds a bad value at the
 * start, or leaves the check to the CLI, we refuse it at create with the same
 * words and the field named) and turned into the library's spec options
 * (`domain/OciResources.ts`), as dockerd's `oci_linux.go` sets them: pids, CPU
 * quota and cpuset, memory reservation and swap, ulimits, devices, sysctls,
 * supplementary groups, /dev/shm, the pid/ipc/uts modes and `--init`.
 *
 * Pure but for what the host says (`HostFacts`: CPUs, memory nodes, device
 * nodes, the init binary), so each rule is tested on its own.
 */
import { Result } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Res from "../../domain/OciResources.ts"
import type { Resources as OciResources, SpecOption } from "../../domain/OciSpec.ts"
import type { HostConfig } from "../Model.ts"

/** What the host has, as the checks need it. */
export interface HostFacts {
  /** The number of CPUs (dockerd's `sysinfo.NumCPU`). */
  readonly cpuCount: number
  /** The CPUs and memory nodes the daemon's cpuset offers, as the kernel lists them ("0-1"). */
  readonly cpus: string
  readonly mems: string
  /** A host device node, or a message saying why it is not one. */
  readonly device: (path: string) => Result.Result<HostDevice, string>
  /** The host's init binary for `--init` (docker-init, or Debian's tini-static), if any. */
  readonly initPath: string | undefined
}

/** A device node on the host: what the container's node copies of it. */
export type HostDevice = Omit<Res.Device, "path" | "access">

/** A namespace the container joins at each start: another container's, by the reference asked for. */
export interface Join {
  readonly type: "pid" | "ipc" | "network"
  readonly container: string
}

/** The fields, checked: spec options, the groups to add, and the namespaces to join at start. */
export interface Resources {
  readonly spec: ReadonlyArray<SpecOption>
  readonly groupAdd: ReadonlyArray<string>
  readonly joins: ReadonlyArray<Join>
  /** With `--ipc shareable`: the size of the host tmpfs the daemon mounts as its /dev/shm (`Shm.ts`). */
  readonly shareableShm: number | undefined
}

/** Docker's default /dev/shm size, 64 MiB. */
export const DEFAULT_SHM_SIZE = 64 * 1024 * 1024

const MIN_MEMORY = 6291456
const GiB = 1e9

/** The ulimit names Docker knows (go-units' `ulimitNameMapping`). */
const ULIMITS = [
  "core",
  "cpu",
  "data",
  "fsize",
  "locks",
  "memlock",
  "msgqueue",
  "nice",
  "nofile",
  "nproc",
  "rss",
  "rtprio",
  "rttime",
  "sigpending",
  "stack"
]

/** The IPC-namespaced sysctls Docker allows (the CLI's `ValidateSysctl`), besides `fs.mqueue.*`. */
const IPC_SYSCTLS = [
  "kernel.msgmax",
  "kernel.msgmnb",
  "kernel.msgmni",
  "kernel.sem",
  "kernel.shmall",
  "kernel.shmmax",
  "kernel.shmmni",
  "kernel.shm_rmid_forced"
]

/** A kernel cpu/node list ("0-2,4") as a set, or undefined if malformed (moby's `parsers.ParseUintList`). */
export const parseUintList = (list: string): ReadonlySet<number> | undefined => {
  const out = new Set<number>()
  if (list === "") return out
  for (const part of list.split(",")) {
    const range = /^(\d+)(?:-(\d+))?$/.exec(part)
    if (range === null) return undefined
    const from = Number(range[1])
    const to = range[2] === undefined ? from : Number(range[2])
    if (to < from) return undefined
    for (let n = from; n <= to; n++) out.add(n)
  }
  return out
}

const checkCpuset = (what: "cpus" | "mems", requested: string, available: string): Result.Result<void, string> => {
  const wanted = parseUintList(requested)
  if (wanted === undefined) return Result.fail(`Invalid value ${requested} for cpuset ${what}: invalid format: ${requested}`)
  const offered = parseUintList(available) ?? new Set<number>()
  return [...wanted].every((n) => offered.has(n))
    ? Result.void
    : Result.fail(
      what === "cpus"
        ? `Requested CPUs are not available - requested ${requested}, available: ${available}`
        : `Requested memory nodes are not available - requested ${requested}, available: ${available}`
    )
}

type Fail = Result.Result<never, string>
const fail = (message: string): Fail => Result.fail(message)

/** Memory, MemorySwap and MemoryReservation, as `verifyPlatformContainerResources`; swap defaults to twice the memory. */
const memoryOf = (host: HostConfig): Result.Result<NonNullable<Limits["memory"]>, string> => {
  const memory = host.Memory ?? 0
  const swap = host.MemorySwap ?? 0
  const reservation = host.MemoryReservation ?? 0
  if (memory < 0 || (host.CpuShares ?? 0) < 0) return fail("memory and CPU shares cannot be negative")
  if (memory !== 0 && memory < MIN_MEMORY) return fail("Minimum memory limit allowed is 6MB")
  if (memory > 0 && swap > 0 && swap < memory) return fail("Minimum memoryswap limit should be larger than memory limit, see usage")
  if (memory === 0 && swap > 0) return fail("You should always set the Memory limit when using Memoryswap limit, see usage")
  if (swap < -1) return fail(`Invalid value ${swap} for MemorySwap (--memory-swap): use -1 (unlimited) or a size above the memory limit`)
  if (reservation < 0 || (reservation > 0 && reservation < MIN_MEMORY)) return fail("Minimum memory reservation allowed is 6MB")
  if (memory > 0 && reservation > 0 && memory < reservation) {
    return fail("Minimum memory limit can not be less than memory reservation limit, see usage")
  }
  // adaptContainerSettings: by default, MemorySwap is twice the memory; -1 (unlimited) sets none.
  const effectiveSwap = memory > 0 && swap === 0 ? memory * 2 : swap
  return Result.succeed({
    ...(memory > 0 ? { limit: memory } : {}),
    ...(effectiveSwap > 0 ? { swap: effectiveSwap } : {}),
    ...(reservation > 0 ? { reservation } : {})
  })
}

/** NanoCpus, CpuQuota, CpuPeriod and the cpuset, as `verifyPlatformContainerResources` and `getCPUResources`. */
const cpuOf = (host: HostConfig, facts: HostFacts): Result.Result<NonNullable<Limits["cpu"]>, string> => {
  const nano = host.NanoCpus ?? 0
  const quota = host.CpuQuota ?? 0
  const period = host.CpuPeriod ?? 0
  const cpus = host.CpusetCpus ?? ""
  const mems = host.CpusetMems ?? ""
  if (nano > 0 && period > 0) return fail("Conflicting options: Nano CPUs and CPU Period cannot both be set")
  if (nano > 0 && quota > 0) return fail("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
  if (nano < 0 || nano > facts.cpuCount * GiB) {
    return fail(`Range of CPUs is from 0.01 to ${facts.cpuCount}.00, as there are only ${facts.cpuCount} CPUs available`)
  }
  if (period !== 0 && (period < 1000 || period > 1000000)) {
    return fail("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
  }
  if (quota > 0 && quota < 1000) return fail("CPU cfs quota can not be less than 1ms (i.e. 1000)")
  if (quota < -1) return fail(`Invalid value ${quota} for CpuQuota (--cpu-quota): use -1 (unlimited) or at least 1000`)
  if (cpus !== "") {
    const checked = checkCpuset("cpus", cpus, facts.cpus)
    if (Result.isFailure(checked)) return fail(checked.failure)
  }
  if (mems !== "") {
    const checked = checkCpuset("mems", mems, facts.mems)
    if (Result.isFailure(checked)) return fail(checked.failure)
  }
  // --cpus is a quota over dockerd's fixed 100 ms period.
  const fromNano = nano > 0 ? { period: 100000, quota: Math.floor((nano * 100000) / GiB) } : {}
  return Result.succeed({
    ...((host.CpuShares ?? 0) > 0 ? { shares: host.CpuShares! } : {}),
    ...fromNano,
    ...(period !== 0 ? { period } : {}),
    ...(quota !== 0 ? { quota } : {}),
    ...(cpus !== "" ? { cpus } : {}),
    ...(mems !== "" ? { mems } : {})
  })
}

/** The cgroup limits `docker update` changes: the spec's linux resources but its device rules. */
export type Limits = Omit<OciResources, "devices">

/**
 * The memory, CPU, cpuset and pids limits of `host`, checked as at create (the
 * same rules and words), as the spec's linux resources: what a create sets and
 * what an update gives the running task and the next start.
 */
export const limitsOf = (host: HostConfig, facts: HostFacts): Result.Result<Limits, string> =>
  Result.gen(function*() {
    const memory = yield* memoryOf(host)
    const cpu = yield* cpuOf(host, facts)
    // 0 and below are unlimited, as dockerd's `getPidsLimit`.
    const pids = host.PidsLimit ?? 0
    return {
      ...(Object.keys(memory).length > 0 ? { memory } : {}),
      ...(Object.keys(cpu).length > 0 ? { cpu } : {}),
      ...(pids > 0 ? { pids: { limit: pids } } : {})
    }
  })

/** `Ulimits`, as the CLI's `units.ParseUlimit` checks them; each replaces the default of its kind. */
const ulimitsOf = (host: HostConfig): Result.Result<ReadonlyArray<SpecOption>, string> => {
  const rlimits: Array<Res.Rlimit> = []
  for (const { Name: name, Soft: soft, Hard: hard } of host.Ulimits ?? []) {
    if (!ULIMITS.includes(name)) return fail(`Ulimits (--ulimit): invalid ulimit type: ${name}`)
    if (soft > hard) return fail(`Ulimits (--ulimit) ${name}: ulimit soft limit must be less than or equal to hard limit: ${soft} > ${hard}`)
    rlimits.push({ type: `RLIMIT_${name.toUpperCase()}`, soft, hard })
  }
  return Result.succeed(rlimits.length === 0 ? [] : [Res.withRlimits(rlimits)])
}

/** `Devices`, as dockerd's `DeviceFromPath` at the start (a device node only) and the CLI's `validateDevice`. */
const devicesOf = (host: HostConfig, facts: HostFacts): Result.Result<ReadonlyArray<SpecOption>, string> => {
  const devices: Array<Res.Device> = []
  for (const d of host.Devices ?? []) {
    const onHost = d.PathOnHost ?? ""
    const inContainer = d.PathInContainer || onHost
    const access = d.CgroupPermissions || "rwm"
    if (!/^[rwm]{1,3}$/.test(access) || new Set(access).size !== access.length) {
      return fail(`Devices (--device) ${onHost}: bad mode specified: ${access}`)
    }
    if (!inContainer.startsWith("/")) return fail(`Devices (--device) ${onHost}: ${inContainer} is not an absolute path`)
    const node = facts.device(onHost)
    if (Result.isFailure(node)) {
      return fail(`error gathering device information while adding custom device ${JSON.stringify(onHost)}: ${node.failure}`)
    }
    devices.push({ ...node.success, path: inContainer, access })
  }
  return Result.succeed(devices.length === 0 ? [] : [Res.withDevices(devices)])
}

/** `Sysctls`: only namespaced ones (the CLI's list), and only in a namespace of the container's own (as runc refuses). */
const sysctlsOf = (host: HostConfig, network: "none" | "host", ipcHost: boolean): Result.Result<ReadonlyArray<SpecOption>, string> => {
  const sysctls = Object.entries(host.Sysctls ?? {})
  for (const [key, value] of sysctls) {
    const ipc = IPC_SYSCTLS.includes(key) || key.startsWith("fs.mqueue.")
    if (!ipc && !key.startsWith("net.")) return fail(`Sysctls (--sysctl): sysctl '${key}=${value}' is not allowed`)
    if (ipc && ipcHost) return fail(`Sysctls (--sysctl): sysctl ${JSON.stringify(key)} is not allowed in the hosts ipc namespace`)
    if (!ipc && network === "host") return fail(`Sysctls (--sysctl): sysctl ${JSON.stringify(key)} not allowed in host network namespace`)
  }
  return Result.succeed(sysctls.length === 0 ? [] : [Res.withSysctls(Object.fromEntries(sysctls))])
}

const containerOf = (mode: string): string | undefined => mode.startsWith("container:") ? mode.slice("container:".length) : undefined

/** `PidMode`, `IpcMode` (with `ShmSize`) and `UTSMode`; a `container:<ref>` becomes a join at each start. */
const namespacesOf = (
  host: HostConfig,
  hostname: string
): Result.Result<{ readonly spec: ReadonlyArray<SpecOption>; readonly joins: ReadonlyArray<Join> }, string> => {
  const spec: Array<SpecOption> = []
  const joins: Array<Join> = []
  const pid = host.PidMode ?? ""
  const pidContainer = containerOf(pid)
  if (pid === "host") spec.push(Res.withNamespace("pid", { _tag: "Host" }))
  else if (pidContainer !== undefined && pidContainer !== "") joins.push({ type: "pid", container: pidContainer })
  else if (pid !== "") return fail(`invalid PID mode: ${pid}`)

  const ipc = host.IpcMode ?? ""
  const ipcContainer = containerOf(ipc)
  const shm = host.ShmSize ?? 0
  if (shm < 0) return fail("SHM size can not be less than 0")
  if (ipc === "host") {
    spec.push(Res.withNamespace("ipc", { _tag: "Host" }), Res.withShm({ _tag: "Bind", source: "/dev/shm" }))
  } else if (ipc === "none") {
    spec.push(Res.withShm({ _tag: "None" }))
  } else if (ipcContainer !== undefined && ipcContainer !== "") {
    joins.push({ type: "ipc", container: ipcContainer })
  } else if (ipc === "" || ipc === "private") {
    if (shm > 0) spec.push(Res.withShmSize(shm))
  } else if (ipc !== "shareable") {
    return fail(`invalid IPC mode: ${ipc}`)
  }

  const uts = host.UTSMode ?? ""
  if (uts === "host") {
    if (hostname !== "") return fail("conflicting options: hostname and the UTS mode")
    spec.push(Res.withNamespace("uts", { _tag: "Host" }))
  } else if (uts !== "") {
    return fail(`invalid UTS mode: ${uts}`)
  }
  return Result.succeed({ spec, joins })
}

/**
 * Every resource and namespace field of `host`, checked in dockerd's order, as
 * spec options. `hostname` is the request's own (`Config.Hostname`), `network`
 * the mode it runs in.
 */
export const parseResources = (
  host: HostConfig,
  options: { readonly hostname: string; readonly network: "none" | "host"; readonly facts: HostFacts }
): Result.Result<Resources, string> =>
  Result.gen(function*() {
    const { facts } = options
    const limits = yield* limitsOf(host, facts)
    const namespaces = yield* namespacesOf(host, options.hostname)
    const ulimits = yield* ulimitsOf(host)
    const devices = yield* devicesOf(host, facts)
    const sysctls = yield* sysctlsOf(host, options.network, host.IpcMode === "host")
    if (host.Init === true && facts.initPath === undefined) {
      return yield* fail("Init (--init) is not supported here: no docker-init (or tini-static) was found on this host")
    }
    return {
      spec: [
        Res.withLimits(limits),
        ...ulimits,
        ...devices,
        ...sysctls,
        ...namespaces.spec,
        ...(host.Init === true ? [Res.withInit(facts.initPath!)] : [])
      ],
      groupAdd: host.GroupAdd ?? [],
      joins: namespaces.joins,
      shareableShm: host.IpcMode === "shareable" ? (host.ShmSize || DEFAULT_SHM_SIZE) : undefined
    }
  })

/** The error of a join whose donor is not running, or (IPC) not shareable, in dockerd's words. */
export const joinRefusal = (join: Join, donorId: string, donor: { readonly running: boolean; readonly ipcMode: string }): string | undefined => {
  if (join.type === "ipc") {
    if (!donor.running) return `can't join IPC of container ${donorId}: container ${donorId} is not running`
    if (donor.ipcMode !== "shareable" && donor.ipcMode !== "host") {
      return `can't join IPC of container ${donorId}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)`
    }
    return undefined
  }
  return donor.running ? undefined : `container ${donorId} is not running`
}

/**
 * The spec change that joins the donors' namespaces, through their inits' /proc
 * entries; an IPC donor's /dev/shm (`shm`: its shareable tmpfs on the host, or the
 * host's own) is bound too.
 */
export const joinOptions = (
  joins: ReadonlyArray<{ readonly type: Join["type"]; readonly pid: number; readonly shm: string }>
): ReadonlyArray<SpecOption> =>
  joins.flatMap(({ pid, shm, type }) =>
    type === "pid"
      ? [Res.withNamespace("pid", { _tag: "Join", path: `/proc/${pid}/ns/pid` })]
      : type === "network"
      ? [Res.withNamespace("network", { _tag: "Join", path: `/proc/${pid}/ns/net` })]
      : [
        Res.withNamespace("ipc", { _tag: "Join", path: `/proc/${pid}/ns/ipc` }),
        Res.withShm({ _tag: "Bind", source: shm })
      ]
  )

/** The first of `names` found in a directory of $PATH (then /usr/sbin, /usr/bin, where Debian puts them). */
const findBinary = (names: ReadonlyArray<string>): string | undefined => {
  const dirs = [...(process.env["PATH"] ?? "").split(":").filter((d) => d !== ""), "/usr/sbin", "/usr/bin"]
  for (const name of names) {
    for (const dir of dirs) {
      const candidate = path.join(dir, name)
      if (fs.existsSync(candidate)) return fs.realpathSync(candidate)
    }
  }
  return undefined
}

const readFirst = (files: ReadonlyArray<string>): string | undefined => {
  for (const file of files) {
    if (fs.existsSync(file)) return fs.readFileSync(file, "utf8").trim()
  }
  return undefined
}

/** A device node on this host, by `stat` (Linux's encoding of major and minor numbers). */
const statDevice = (devicePath: string): Result.Result<HostDevice, string> => {
  const stat = fs.statSync(devicePath, { throwIfNoEntry: false })
  if (stat === undefined) return Result.fail("no such file or directory")
  if (!stat.isCharacterDevice() && !stat.isBlockDevice()) return Result.fail("not a device node")
  const rdev = stat.rdev
  const high = Math.floor(rdev / 2 ** 32)
  return Result.succeed({
    type: stat.isCharacterDevice() ? "c" : "b",
    major: ((rdev >>> 8) & 0xfff) | (high & ~0xfff),
    minor: (rdev & 0xff) | ((rdev >>> 12) & 0xfff00),
    fileMode: stat.mode & 0o7777,
    uid: stat.uid,
    gid: stat.gid
  })
}

/** What this host has: its CPUs, the cpuset offered (cgroup v1, else v2), its device nodes, docker-init. */
export const readHostFacts = (): HostFacts => {
  const cpuCount = os.cpus().length
  return {
    cpuCount,
    cpus: readFirst(["/sys/fs/cgroup/cpuset/cpuset.cpus", "/sys/fs/cgroup/cpuset.cpus.effective"]) || `0-${cpuCount - 1}`,
    mems: readFirst(["/sys/fs/cgroup/cpuset/cpuset.mems", "/sys/fs/cgroup/cpuset.mems.effective"]) || "0",
    device: statDevice,
    // Debian's docker.io links docker-init to tini-static (package tini), which runs in any image.
    initPath: findBinary(["docker-init", "tini-static"])
  }
}

/**
 * The resource and namespace fields of inspect's `HostConfig`, as dockerd shows
 * them: its defaults filled in (`adaptContainerSettings`: private IPC, 64 MiB of
 * /dev/shm, swap twice the memory), `Sysctls` and `Init` only when set.
 */
export const resourcesJson = (host: HostConfig) => {
  const memory = host.Memory ?? 0
  return {
    GroupAdd: host.GroupAdd ?? null,
    IpcMode: host.IpcMode || "private",
    PidMode: host.PidMode ?? "",
    UTSMode: host.UTSMode ?? "",
    ShmSize: host.ShmSize || DEFAULT_SHM_SIZE,
    ...(host.Sysctls ? { Sysctls: host.Sysctls } : {}),
    ...(host.Init !== undefined && host.Init !== null ? { Init: host.Init } : {}),
    CpuPeriod: host.CpuPeriod ?? 0,
    CpuQuota: host.CpuQuota ?? 0,
    CpusetCpus: host.CpusetCpus ?? "",
    CpusetMems: host.CpusetMems ?? "",
    Devices: host.Devices ?? [],
    MemoryReservation: host.MemoryReservation ?? 0,
    MemorySwap: memory > 0 && !host.MemorySwap ? memory * 2 : host.MemorySwap ?? 0,
    NanoCpus: host.NanoCpus ?? 0,
    // 0 and below are unlimited, which dockerd shows as null.
    PidsLimit: (host.PidsLimit ?? 0) > 0 ? host.PidsLimit : null,
    Ulimits: host.Ulimits ?? []
  }
}
