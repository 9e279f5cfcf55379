/**
 * The Docker Engine API's container model, as far as the daemon supports it:
 * the body of `POST /containers/create` (decoded with Schema, so a field of the
 * wrong type is a 400 before anything is created), what we keep of it on the
 * containerd container, and the JSON shapes of inspect and list.
 *
 * Fields Docker defines but we do not act on are declared too (as `Unknown`), so
 * that create sees them and answers for each as its table says (`engine/CreateFields.ts`:
 * a 400 or a warning) instead of dropping them silently. The CLI sends `null`
 * for most unset fields, so every field is nullable.
 */
import { Schema } from "effect"
import { ContainerDefaults } from "../domain/Image.ts"

const nullable = <S extends Schema.Top>(schema: S) => Schema.optional(Schema.NullOr(schema))
const Strings = Schema.Array(Schema.String)
const StringMap = Schema.Record(Schema.String, Schema.String)
/** A field the engine does not act on: only whether it is set matters (see `engine/CreateFields.ts`). */
const unhonoured = Schema.optional(Schema.Unknown)

/**
 * `Config.Healthcheck`: the probe (`["CMD", ...]`, `["CMD-SHELL", "..."]`, `["NONE"]`) and its
 * timing in nanoseconds; zero or absent is dockerd's default (`engine/Health.ts`).
 */
export const HealthConfig = Schema.Struct({
  Test: nullable(Strings),
  Interval: nullable(Schema.Int),
  Timeout: nullable(Schema.Int),
  StartPeriod: nullable(Schema.Int),
  Retries: nullable(Schema.Int)
})
export type HealthConfig = typeof HealthConfig.Type

/** `Config` of a create request: what runs, as the image's config would say it. */
export const ContainerConfig = Schema.Struct({
  Hostname: nullable(Schema.String),
  Domainname: nullable(Schema.String),
  User: nullable(Schema.String),
  AttachStdin: nullable(Schema.Boolean),
  AttachStdout: nullable(Schema.Boolean),
  AttachStderr: nullable(Schema.Boolean),
  Tty: nullable(Schema.Boolean),
  OpenStdin: nullable(Schema.Boolean),
  StdinOnce: nullable(Schema.Boolean),
  Env: nullable(Strings),
  // The API takes a string too, split as a shell would not: dockerd keeps it whole.
  Cmd: nullable(Schema.Union([Strings, Schema.String])),
  Entrypoint: nullable(Schema.Union([Strings, Schema.String])),
  Image: nullable(Schema.String),
  Labels: nullable(StringMap),
  WorkingDir: nullable(Schema.String),
  StopSignal: nullable(Schema.String),
  StopTimeout: nullable(Schema.Int),
  ExposedPorts: unhonoured,
  Volumes: unhonoured,
  Healthcheck: nullable(HealthConfig),
  NetworkDisabled: unhonoured,
  MacAddress: unhonoured,
  OnBuild: unhonoured,
  ArgsEscaped: unhonoured,
  Shell: unhonoured
})
export type ContainerConfig = typeof ContainerConfig.Type

/** `HostConfig.RestartPolicy`. */
export const RestartPolicy = Schema.Struct({
  Name: nullable(Schema.String),
  MaximumRetryCount: nullable(Schema.Int)
})
export type RestartPolicy = typeof RestartPolicy.Type

/** `HostConfig.Devices[]`: a host device node, where it appears, and its cgroup access (`rwm`). */
export const DeviceMapping = Schema.Struct({
  PathOnHost: nullable(Schema.String),
  PathInContainer: nullable(Schema.String),
  CgroupPermissions: nullable(Schema.String)
})

/** `HostConfig.Ulimits[]`: one resource limit (`nofile`, `nproc`, ...). */
export const Ulimit = Schema.Struct({ Name: Schema.String, Soft: Schema.Int, Hard: Schema.Int })

/** `HostConfig` of a create request: how the host runs it. */
export const HostConfig = Schema.Struct({
  Binds: nullable(Strings),
  NetworkMode: nullable(Schema.String),
  RestartPolicy: nullable(RestartPolicy),
  AutoRemove: nullable(Schema.Boolean),
  ReadonlyRootfs: nullable(Schema.Boolean),
  Tmpfs: nullable(StringMap),
  Memory: nullable(Schema.Int),
  CpuShares: nullable(Schema.Int),
  Privileged: nullable(Schema.Boolean),
  Runtime: nullable(Schema.String),
  LogConfig: nullable(Schema.Struct({ Type: nullable(Schema.String), Config: nullable(StringMap) })),
  ConsoleSize: unhonoured,
  ContainerIDFile: unhonoured,
  PortBindings: unhonoured,
  PublishAllPorts: unhonoured,
  VolumeDriver: unhonoured,
  VolumesFrom: unhonoured,
  Mounts: unhonoured,
  Annotations: unhonoured,
  CapAdd: nullable(Strings),
  CapDrop: nullable(Strings),
  CgroupnsMode: unhonoured,
  Dns: nullable(Strings),
  DnsOptions: nullable(Strings),
  DnsSearch: nullable(Strings),
  ExtraHosts: nullable(Strings),
  GroupAdd: nullable(Strings),
  IpcMode: nullable(Schema.String),
  Cgroup: unhonoured,
  Links: unhonoured,
  OomScoreAdj: nullable(Schema.Int),
  PidMode: nullable(Schema.String),
  SecurityOpt: nullable(Strings),
  StorageOpt: unhonoured,
  UTSMode: nullable(Schema.String),
  UsernsMode: unhonoured,
  ShmSize: nullable(Schema.Int),
  Sysctls: nullable(StringMap),
  Isolation: unhonoured,
  MaskedPaths: nullable(Strings),
  ReadonlyPaths: nullable(Strings),
  Init: nullable(Schema.Boolean),
  CgroupParent: unhonoured,
  BlkioWeight: unhonoured,
  BlkioWeightDevice: unhonoured,
  BlkioDeviceReadBps: unhonoured,
  BlkioDeviceWriteBps: unhonoured,
  BlkioDeviceReadIOps: unhonoured,
  BlkioDeviceWriteIOps: unhonoured,
  CpuPeriod: nullable(Schema.Int),
  CpuQuota: nullable(Schema.Int),
  CpuRealtimePeriod: unhonoured,
  CpuRealtimeRuntime: unhonoured,
  CpusetCpus: nullable(Schema.String),
  CpusetMems: nullable(Schema.String),
  Devices: nullable(Schema.Array(DeviceMapping)),
  DeviceCgroupRules: unhonoured,
  DeviceRequests: unhonoured,
  KernelMemoryTCP: unhonoured,
  MemoryReservation: nullable(Schema.Int),
  MemorySwap: nullable(Schema.Int),
  MemorySwappiness: unhonoured,
  NanoCpus: nullable(Schema.Int),
  OomKillDisable: unhonoured,
  PidsLimit: nullable(Schema.Int),
  Ulimits: nullable(Schema.Array(Ulimit)),
  CpuCount: unhonoured,
  CpuPercent: unhonoured,
  IOMaximumIOps: unhonoured,
  IOMaximumBandwidth: unhonoured
})
export type HostConfig = typeof HostConfig.Type

/** The body of `POST /containers/create`: a `Config` with `HostConfig` beside its fields. */
export const CreateBody = Schema.Struct({
  ...ContainerConfig.fields,
  HostConfig: nullable(HostConfig),
  NetworkingConfig: unhonoured
})
export type CreateBody = typeof CreateBody.Type

/** The body of `POST /containers/{id}/exec`: the process fields of a `Config`, and an argv `Cmd`. */
export const ExecConfig = Schema.Struct({
  AttachStdin: ContainerConfig.fields.AttachStdin,
  AttachStdout: ContainerConfig.fields.AttachStdout,
  AttachStderr: ContainerConfig.fields.AttachStderr,
  Tty: ContainerConfig.fields.Tty,
  Env: ContainerConfig.fields.Env,
  User: ContainerConfig.fields.User,
  WorkingDir: ContainerConfig.fields.WorkingDir,
  Cmd: nullable(Strings),
  DetachKeys: nullable(Schema.String),
  Privileged: nullable(Schema.Boolean)
})
export type ExecConfig = typeof ExecConfig.Type

/** The body of `POST /exec/{id}/start`. */
export const ExecStartConfig = Schema.Struct({
  Detach: nullable(Schema.Boolean),
  Tty: nullable(Schema.Boolean)
})
export type ExecStartConfig = typeof ExecStartConfig.Type

/** `GET /exec/{id}/json`. */
export interface ExecInspectJson {
  readonly ID: string
  readonly ContainerID: string
  readonly Running: boolean
  readonly ExitCode: number | null
  readonly Pid: number
  readonly OpenStdin: boolean
  readonly OpenStdout: boolean
  readonly OpenStderr: boolean
  readonly CanRemove: boolean
  readonly DetachKeys: string
  readonly ProcessConfig: {
    readonly tty: boolean
    readonly entrypoint: string
    readonly arguments: ReadonlyArray<string>
    readonly privileged: boolean
    readonly user: string
  }
}

/** Restart policies (`docker run --restart`). */
export type RestartPolicyName = "no" | "always" | "on-failure" | "unless-stopped"

/**
 * What the daemon keeps of a container, on the containerd container itself (an
 * extension), so that containerd is the only database: written once at create.
 * What changes (restart count, the last exit, a manual stop) is in labels.
 */
export const StoredContainer = Schema.Struct({
  /** `/name`, as Docker shows it. */
  Name: Schema.String,
  /** When it was created, RFC 3339. */
  Created: Schema.String,
  /** The image as the user named it. */
  Image: Schema.String,
  /** The image's config digest: Docker's image ID. */
  ImageId: Schema.String,
  Config: ContainerConfig,
  HostConfig: HostConfig,
  /** The image's defaults at create, for the effective config (absent on containers made before it was kept). */
  ImageConfig: Schema.optional(ContainerDefaults)
})
export type StoredContainer = typeof StoredContainer.Type

/** Docker's `State` of a container. */
export interface ContainerStateJson {
  readonly Status: "created" | "running" | "paused" | "restarting" | "removing" | "exited" | "dead"
  readonly Running: boolean
  readonly Paused: boolean
  readonly Restarting: boolean
  readonly OOMKilled: boolean
  readonly Dead: boolean
  readonly Pid: number
  readonly ExitCode: number
  readonly Error: string
  readonly StartedAt: string
  readonly FinishedAt: string
  /** Present once a container with a healthcheck has started (kept after it stops, as dockerd's). */
  readonly Health?: HealthJson
}

/** `State.Health`: the status, the failures in a row, the last five probes (oldest first). */
export interface HealthJson {
  readonly Status: "starting" | "healthy" | "unhealthy"
  readonly FailingStreak: number
  readonly Log: ReadonlyArray<HealthResultJson>
}

/** One probe of `State.Health.Log`. */
export interface HealthResultJson {
  readonly Start: string
  readonly End: string
  readonly ExitCode: number
  readonly Output: string
}

/** `GET /containers/{id}/json`. */
export interface ContainerInspectJson {
  readonly Id: string
  readonly Created: string
  readonly Path: string
  readonly Args: ReadonlyArray<string>
  readonly State: ContainerStateJson
  readonly Image: string
  /** The container's json-file log (optional only so fakes of the engine need not invent one). */
  readonly LogPath?: string
  /** Its /etc/resolv.conf, /etc/hostname and /etc/hosts on the host (optional for the same fakes). */
  readonly ResolvConfPath?: string
  readonly HostnamePath?: string
  readonly HostsPath?: string
  readonly Name: string
  readonly RestartCount: number
  readonly Driver: string
  readonly Platform: string
  readonly HostConfig: Record<string, unknown>
  readonly Config: Record<string, unknown>
  readonly Mounts: ReadonlyArray<Record<string, unknown>>
  readonly NetworkSettings: Record<string, unknown>
}

/** One entry of `GET /containers/json`. */
export interface ContainerSummaryJson {
  readonly Id: string
  readonly Names: ReadonlyArray<string>
  readonly Image: string
  readonly ImageID: string
  readonly Command: string
  readonly Created: number
  readonly State: ContainerStateJson["Status"]
  readonly Status: string
  readonly Labels: Readonly<Record<string, string>>
  readonly Ports: ReadonlyArray<unknown>
  readonly Mounts: ReadonlyArray<unknown>
  readonly HostConfig: { readonly NetworkMode: string }
  readonly NetworkSettings: { readonly Networks: Record<string, unknown> }
}

/** Docker's zero time, shown for a container never started or never exited. */
export const ZERO_TIME = "0001-01-01T00:00:00Z"
