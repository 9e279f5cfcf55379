/**
 * Honest create: what the engine does with every field of a create request, in
 * one table. A field is `honoured` (the engine acts on it, or there is nothing to
 * do on Linux), `warn`ed about in the response's `Warnings` (ignoring it is
 * harmless; the docker CLI prints `WARNING: ...`), or `reject`ed with a 400 naming
 * it (ignoring it would surprise or lose data: volumes, links,
 * resource limits). Only fields that are set count: the CLI sends most unset ones
 * as null, zero, empty or (`MemorySwappiness`) -1.
 */
import { Result } from "effect"
import type { CreateBody, HostConfig } from "../Model.ts"

/** What create does with a field that is set. */
export type Treatment =
  | { readonly _tag: "Honoured" }
  | { readonly _tag: "Warn"; readonly message: string }
  | { readonly _tag: "Reject"; readonly message: string }

/** A field's row: its treatment, and what it looks like when the client did not set it. */
export interface Row {
  readonly treatment: Treatment
  /** Whether the value is set; default: not null, false, 0, "", [] or {}. */
  readonly isSet?: ((value: unknown) => boolean) | undefined
}

/** Every field of the body: `Config`'s at the top, `HostConfig`'s prefixed. */
export type BodyField = Exclude<keyof CreateBody, "HostConfig"> | "HostConfig" | `HostConfig.${keyof HostConfig}`

/** A value the client set: anything but null, false, 0, "" and an empty array or object. */
export const isSet = (value: unknown): boolean => {
  if (value === undefined || value === null || value === false || value === 0 || value === "") return false
  if (Array.isArray(value)) return value.length > 0
  if (typeof value === "object") return Object.keys(value).length > 0
  return true
}

const honoured: Row = { treatment: { _tag: "Honoured" } }
const warn = (message: string, isSet?: Row["isSet"]): Row => ({ treatment: { _tag: "Warn", message }, isSet })
const reject = (message: string, isSet?: Row["isSet"]): Row => ({ treatment: { _tag: "Reject", message }, isSet })

const limit = (field: string, flag: string) =>
  reject(`${field} (${flag}) is not supported: of the resource limits the memory, CPU, cpuset, pids and ulimit ones are applied (engine/Resources.ts)`)
const namespace = (field: string, flag: string) =>
  reject(`${field} (${flag}) is not supported: containers get their own namespaces`)

/** The table: every field of `CreateBody` and its `HostConfig`, and what create does when it is set. */
export const FIELDS: Readonly<Record<BodyField, Row>> = {
  Hostname: honoured,
  // The hosts file names the container `hostname.domainname hostname` (network/EtcHosts.ts).
  Domainname: honoured,
  User: honoured,
  AttachStdin: honoured,
  AttachStdout: honoured,
  AttachStderr: honoured,
  Tty: honoured,
  OpenStdin: honoured,
  StdinOnce: honoured,
  Env: honoured,
  Cmd: honoured,
  Entrypoint: honoured,
  Image: honoured,
  Labels: honoured,
  WorkingDir: honoured,
  StopSignal: honoured,
  StopTimeout: honoured,
  // Shown by inspect and docker ps, published by -P (engine/Ports.ts).
  ExposedPorts: honoured,
  Volumes: reject("Volumes (anonymous volumes, -v /path) are not supported: use a named volume (-v name:/path), a host path (-v /host:/path) or --tmpfs"),
  // Run by the engine's health monitor (engine/Health.ts); its values checked at create.
  Healthcheck: honoured,
  NetworkDisabled: warn("NetworkDisabled is ignored: use NetworkMode none"),
  MacAddress: warn("MacAddress (--mac-address) is ignored: the bridge plugin gives the interface its MAC address"),
  OnBuild: warn("OnBuild is ignored: this daemon builds no images"),
  // Windows-only (dockerd ignores it on Linux too).
  ArgsEscaped: honoured,
  // Only builds use it, for the shell form of RUN, CMD and ENTRYPOINT.
  Shell: honoured,
  // One endpoint, as dockerd 20.10 takes at create: its aliases and IPv4 address (engine/Networking.ts).
  NetworkingConfig: honoured,
  HostConfig: honoured,

  "HostConfig.Binds": honoured,
  "HostConfig.NetworkMode": honoured,
  "HostConfig.RestartPolicy": honoured,
  "HostConfig.AutoRemove": honoured,
  "HostConfig.ReadonlyRootfs": honoured,
  "HostConfig.Tmpfs": honoured,
  "HostConfig.Memory": honoured,
  "HostConfig.CpuShares": honoured,
  // runc, or a runtime the daemon was given (--add-runtime); Security.runtimeOf refuses others.
  "HostConfig.Runtime": honoured,
  "HostConfig.LogConfig": honoured,
  // The CLI resizes the terminal right after the start, which the engine does.
  "HostConfig.ConsoleSize": honoured,
  // The CLI writes the file; dockerd only carries it.
  "HostConfig.ContainerIDFile": honoured,
  // Security.ts: all the daemon's capabilities, the host's devices, no seccomp, nothing masked.
  "HostConfig.Privileged": honoured,
  // engine/Ports.ts, published at each start by the library's Networks.
  "HostConfig.PortBindings": honoured,
  "HostConfig.PublishAllPorts": honoured,
  "HostConfig.Links": reject("Links (--link) is not supported: use a user-defined network, on which containers reach each other by name"),
  // The container's resolv.conf and hosts files (network/ResolvConf.ts, network/EtcHosts.ts).
  "HostConfig.Dns": honoured,
  "HostConfig.DnsOptions": honoured,
  "HostConfig.DnsSearch": honoured,
  "HostConfig.ExtraHosts": honoured,
  "HostConfig.VolumeDriver": reject("VolumeDriver (--volume-driver) is not supported: volumes use the local driver"),
  "HostConfig.VolumesFrom": reject("VolumesFrom (--volumes-from) is not supported: name the volumes (-v name:/path)"),
  "HostConfig.Mounts": reject("Mounts (--mount) is not supported: use Binds (-v /host:/path) or Tmpfs (--tmpfs)"),
  "HostConfig.StorageOpt": reject("StorageOpt (--storage-opt) is not supported"),
  "HostConfig.CapAdd": honoured,
  "HostConfig.CapDrop": honoured,
  // Applied, or refused by HostConfig.parseSecurityOpt (AppArmor profiles, SELinux labels).
  "HostConfig.SecurityOpt": honoured,
  // Security.ts: absent or null, Docker's lists; [] is what the CLI sends for --security-opt systempaths=unconfined.
  "HostConfig.MaskedPaths": honoured,
  "HostConfig.ReadonlyPaths": honoured,
  "HostConfig.GroupAdd": honoured,
  "HostConfig.Sysctls": honoured,
  "HostConfig.Devices": honoured,
  "HostConfig.DeviceCgroupRules": reject("DeviceCgroupRules (--device-cgroup-rule) is not supported"),
  "HostConfig.DeviceRequests": reject("DeviceRequests (--gpus) is not supported"),
  "HostConfig.IpcMode": honoured,
  "HostConfig.PidMode": honoured,
  "HostConfig.UTSMode": honoured,
  "HostConfig.UsernsMode": namespace("UsernsMode", "--userns"),
  "HostConfig.Cgroup": namespace("Cgroup", "--cgroup"),
  "HostConfig.CgroupnsMode": warn("CgroupnsMode (--cgroupns) is ignored: containers get containerd's default cgroup namespace"),
  "HostConfig.CgroupParent": reject("CgroupParent (--cgroup-parent) is not supported"),
  "HostConfig.Annotations": warn("Annotations (--annotation) are ignored"),
  "HostConfig.OomScoreAdj": honoured,
  "HostConfig.OomKillDisable": warn("OomKillDisable (--oom-kill-disable) is ignored"),
  "HostConfig.Init": honoured,
  // Windows-only; `default` is what every platform has.
  "HostConfig.Isolation": warn("Isolation (--isolation) is ignored: it applies to Windows", (v) => isSet(v) && v !== "default"),
  "HostConfig.ShmSize": honoured,
  "HostConfig.BlkioWeight": limit("BlkioWeight", "--blkio-weight"),
  "HostConfig.BlkioWeightDevice": limit("BlkioWeightDevice", "--blkio-weight-device"),
  "HostConfig.BlkioDeviceReadBps": limit("BlkioDeviceReadBps", "--device-read-bps"),
  "HostConfig.BlkioDeviceWriteBps": limit("BlkioDeviceWriteBps", "--device-write-bps"),
  "HostConfig.BlkioDeviceReadIOps": limit("BlkioDeviceReadIOps", "--device-read-iops"),
  "HostConfig.BlkioDeviceWriteIOps": limit("BlkioDeviceWriteIOps", "--device-write-iops"),
  "HostConfig.CpuPeriod": honoured,
  "HostConfig.CpuQuota": honoured,
  "HostConfig.CpuRealtimePeriod": limit("CpuRealtimePeriod", "--cpu-rt-period"),
  "HostConfig.CpuRealtimeRuntime": limit("CpuRealtimeRuntime", "--cpu-rt-runtime"),
  "HostConfig.CpusetCpus": honoured,
  "HostConfig.CpusetMems": honoured,
  "HostConfig.NanoCpus": honoured,
  "HostConfig.CpuCount": limit("CpuCount", "--cpu-count"),
  "HostConfig.CpuPercent": limit("CpuPercent", "--cpu-percent"),
  "HostConfig.MemoryReservation": honoured,
  "HostConfig.MemorySwap": honoured,
  // The CLI sends -1 when the flag is not given.
  "HostConfig.MemorySwappiness": { ...limit("MemorySwappiness", "--memory-swappiness"), isSet: (v) => isSet(v) && v !== -1 },
  "HostConfig.KernelMemoryTCP": limit("KernelMemoryTCP", "--kernel-memory-tcp"),
  // 0 and below are unlimited, as dockerd's.
  "HostConfig.PidsLimit": honoured,
  "HostConfig.Ulimits": honoured,
  "HostConfig.IOMaximumIOps": limit("IOMaximumIOps", "--io-maxiops"),
  "HostConfig.IOMaximumBandwidth": limit("IOMaximumBandwidth", "--io-maxbandwidth")
}

/**
 * `Config.Volumes` without the paths a bind mounts over: dockerd mounts the bind
 * there, no anonymous volume (docker-compose sends both for `name:/path`).
 */
const uncoveredVolumes = (body: CreateBody): CreateBody["Volumes"] => {
  if (body.Volumes === undefined || body.Volumes === null) return body.Volumes
  const covered = new Set((body.HostConfig?.Binds ?? []).map((bind) => bind.split(":")[1]))
  return Object.fromEntries(Object.entries(body.Volumes).filter(([target]) => !covered.has(target)))
}

/** The fields of `body` that are set, as table keys. */
const setFields = (body: CreateBody): ReadonlyArray<[BodyField, Row]> => {
  const { HostConfig: host, ...rest } = body
  const config = { ...rest, Volumes: uncoveredVolumes(body) }
  const fields: Array<[string, unknown]> = [
    ...Object.entries(config),
    ...Object.entries(host ?? {}).map(([key, value]): [string, unknown] => [`HostConfig.${key}`, value])
  ]
  return fields.flatMap(([field, value]) => {
    const row = FIELDS[field as BodyField] as Row | undefined
    return row !== undefined && (row.isSet ?? isSet)(value) ? [[field as BodyField, row]] : []
  })
}

/** What create says of a body: the first field it refuses, or the warnings of those it ignores. */
export const review = (body: CreateBody): Result.Result<ReadonlyArray<string>, string> => {
  const warnings: Array<string> = []
  for (const [, row] of setFields(body)) {
    if (row.treatment._tag === "Reject") return Result.fail(row.treatment.message)
    if (row.treatment._tag === "Warn") warnings.push(row.treatment.message)
  }
  return Result.succeed(warnings)
}
