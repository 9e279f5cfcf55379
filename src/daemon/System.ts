/**
 * What the daemon says about itself and its host: `GET /version`, `GET /info`
 * and the version every response names in its headers.
 *
 * The docker CLI negotiates its API version from these answers and prints them
 * in `docker version` and `docker info`, where a missing field can crash it (it
 * reads `Plugins`, `Swarm`, `Runtimes` and more without checking), so the JSON
 * has dockerd's shape even where we have nothing to say. Facts about the host
 * that cannot change while we run (kernel, OS release, runc, the engine ID) are
 * read once, when the layer is built; counts and containerd's version are asked
 * for on every call.
 */
import { execFile } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { Context, DateTime, Effect, Layer, Option, Schema } from "effect"
import { hostPlatform } from "../domain/Image.ts"
import { Containerd } from "../services/Containerd.ts"
import type { DockerError } from "./DockerError.ts"
import { Engine } from "./Engine.ts"
import { DockerImages } from "./Images.ts"

/** The newest Docker Engine API version we speak (Docker 27.3's; the docker CLI 28 negotiates down to it). */
export const API_VERSION = "1.47"
/** The oldest API version we accept, as dockerd. */
export const MIN_API_VERSION = "1.24"

/** `GET /version`: dockerd's `types.Version`. */
export interface VersionJson {
  readonly Platform: { readonly Name: string }
  readonly Components: ReadonlyArray<{
    readonly Name: string
    readonly Version: string
    readonly Details: Readonly<Record<string, string>>
  }>
  readonly Version: string
  readonly ApiVersion: string
  readonly MinAPIVersion: string
  readonly GitCommit: string
  readonly GoVersion: string
  readonly Os: string
  readonly Arch: string
  readonly KernelVersion: string
  readonly BuildTime: string
}

/** `GET /info`: dockerd's `system.Info`, with every field the docker CLI reads. */
export type InfoJson = Readonly<Record<string, unknown>> & {
  readonly ID: string
  readonly Containers: number
  readonly ContainersRunning: number
  readonly ContainersPaused: number
  readonly ContainersStopped: number
  readonly Images: number
  readonly ServerVersion: string
}

/** What does not change while the daemon runs, read once. */
export interface HostFacts {
  /** This daemon's version: the package's. */
  readonly serverVersion: string
  /** When the running code was built: the mtime of its module file. */
  readonly buildTime: string
  /** `uname -r`. */
  readonly kernelVersion: string
  /** `PRETTY_NAME` of os-release. */
  readonly operatingSystem: string
  /** `VERSION_ID` of os-release. */
  readonly osVersion: string
  /** `uname -m`, as dockerd's `Architecture`: `x86_64`, `aarch64`. */
  readonly machine: string
  /** The OCI (Go) architecture name, as dockerd's `Arch`: `amd64`, `arm64`. */
  readonly arch: string
  readonly ncpu: number
  readonly memTotal: number
  readonly hostname: string
  /** "2" on the unified hierarchy, else "1". */
  readonly cgroupVersion: "1" | "2"
  /** What runc says it is; empty when it could not be run. */
  readonly runc: { readonly version: string; readonly commit: string }
  /** A UUID kept in `<data-root>/engine-id`, as dockerd's. */
  readonly engineId: string
}

/** How the daemon was started, as `GET /info` reports it. */
export interface SystemOptions {
  /** The daemon's data root (`DockerRootDir`). */
  readonly dataRoot: string
  /** The containerd socket the daemon uses. */
  readonly containerdAddress: string
  /** The containerd namespace of the daemon's containers and images. */
  readonly namespace: string
  /** Registries spoken to over plain HTTP (`--insecure-registry`). */
  readonly insecureRegistries?: ReadonlyArray<string> | undefined
  /** The runtimes besides runc (`--add-runtime`): name → binary. */
  readonly runtimes?: Readonly<Record<string, string>> | undefined
}

/** containerd's answer to `Version`. */
export interface ContainerdVersion {
  readonly version: string
  readonly revision: string
}

/** The system service: what `/version` and `/info` answer. */
export interface SystemShape {
  /** This daemon's version (for the `Server` header). */
  readonly serverVersion: string
  /** `GET /version`. */
  readonly version: Effect.Effect<VersionJson>
  /** `GET /info`. */
  readonly info: Effect.Effect<InfoJson, DockerError>
}

/** `GET /version` from the host facts and containerd's version (left out when containerd did not answer). */
export const versionJson = (facts: HostFacts, containerd: ContainerdVersion | undefined): VersionJson => ({
  Platform: { Name: "effect-containerd" },
  Components: [
    {
      Name: "Engine",
      Version: facts.serverVersion,
      Details: {
        ApiVersion: API_VERSION,
        Arch: facts.arch,
        BuildTime: facts.buildTime,
        Experimental: "false",
        GitCommit: "",
        GoVersion: "n/a",
        KernelVersion: facts.kernelVersion,
        MinAPIVersion: MIN_API_VERSION,
        Os: "linux"
      }
    },
    ...(containerd === undefined
      ? []
      : [{ Name: "containerd", Version: containerd.version, Details: { GitCommit: containerd.revision } }]),
    ...(facts.runc.version === ""
      ? []
      : [{ Name: "runc", Version: facts.runc.version, Details: { GitCommit: facts.runc.commit } }])
  ],
  Version: facts.serverVersion,
  ApiVersion: API_VERSION,
  MinAPIVersion: MIN_API_VERSION,
  GitCommit: "",
  GoVersion: "n/a",
  Os: "linux",
  Arch: facts.arch,
  KernelVersion: facts.kernelVersion,
  BuildTime: facts.buildTime
})

/** What `/info` counts at the time of the call. */
export interface InfoCounts {
  readonly containers: { readonly total: number; readonly running: number; readonly paused: number; readonly stopped: number }
  readonly images: number
  readonly containerd: ContainerdVersion | undefined
  /** The current time, RFC 3339 (`SystemTime`). */
  readonly now: string
}

/** `GET /info` from the host facts, the daemon's settings and the counts. */
export const infoJson = (facts: HostFacts, options: SystemOptions, counts: InfoCounts): InfoJson => ({
  ID: facts.engineId,
  Containers: counts.containers.total,
  ContainersRunning: counts.containers.running,
  ContainersPaused: counts.containers.paused,
  ContainersStopped: counts.containers.stopped,
  Images: counts.images,
  Driver: "overlayfs",
  DriverStatus: [["driver-type", "io.containerd.snapshotter.v1"]],
  Plugins: { Volume: [], Network: [], Authorization: null, Log: [] },
  MemoryLimit: true,
  SwapLimit: false,
  CpuCfsPeriod: true,
  CpuCfsQuota: true,
  CPUShares: true,
  CPUSet: true,
  PidsLimit: true,
  IPv4Forwarding: false,
  Debug: false,
  NFd: 0,
  OomKillDisable: false,
  NGoroutines: 0,
  SystemTime: counts.now,
  LoggingDriver: "",
  CgroupDriver: "cgroupfs",
  CgroupVersion: facts.cgroupVersion,
  NEventsListener: 0,
  KernelVersion: facts.kernelVersion,
  OperatingSystem: facts.operatingSystem,
  OSVersion: facts.osVersion,
  OSType: "linux",
  Architecture: facts.machine,
  IndexServerAddress: "https://index.docker.io/v1/",
  RegistryConfig: {
    AllowNondistributableArtifactsCIDRs: null,
    AllowNondistributableArtifactsHostnames: null,
    // The registry client speaks plain HTTP to loopback hosts, as dockerd's default insecure CIDRs.
    InsecureRegistryCIDRs: ["::1/128", "127.0.0.0/8"],
    IndexConfigs: Object.fromEntries([
      ["docker.io", { Name: "docker.io", Mirrors: [], Secure: true, Official: true }],
      ...(options.insecureRegistries ?? []).map((host) => [host, { Name: host, Mirrors: [], Secure: false, Official: false }])
    ]),
    Mirrors: null
  },
  NCPU: facts.ncpu,
  MemTotal: facts.memTotal,
  GenericResources: null,
  DockerRootDir: options.dataRoot,
  HttpProxy: "",
  HttpsProxy: "",
  NoProxy: "",
  Name: facts.hostname,
  Labels: [],
  ExperimentalBuild: false,
  ServerVersion: facts.serverVersion,
  Runtimes: {
    runc: { path: "runc" },
    ...Object.fromEntries(Object.entries(options.runtimes ?? {}).map(([name, binary]) => [name, { path: binary }]))
  },
  DefaultRuntime: "runc",
  Swarm: {
    NodeID: "",
    NodeAddr: "",
    LocalNodeState: "inactive",
    ControlAvailable: false,
    Error: "",
    RemoteManagers: null
  },
  // Containers outlive the daemon: their shims keep running and are found again at start.
  LiveRestoreEnabled: true,
  Isolation: "",
  InitBinary: "",
  ContainerdCommit: { ID: counts.containerd?.revision ?? "" },
  RuncCommit: { ID: facts.runc.commit },
  InitCommit: { ID: "" },
  SecurityOptions: [],
  CDISpecDirs: [],
  Containerd: { Address: options.containerdAddress, Namespaces: { Containers: options.namespace, Plugins: "" } },
  Warnings: []
})

/** `runc --version`: "runc version 1.1.5", "commit: v1.1.5-0-g…". */
export const parseRuncVersion = (output: string): { readonly version: string; readonly commit: string } => ({
  version: /^runc version (\S+)/m.exec(output)?.[1] ?? "",
  commit: /^commit: (\S+)/m.exec(output)?.[1] ?? ""
})

const readText = (file: string): Effect.Effect<string | undefined> =>
  Effect.try({ try: () => fs.readFileSync(file, "utf8"), catch: () => undefined }).pipe(
    Effect.orElseSucceed(() => undefined)
  )

/** Fields of os-release (`KEY=value`, the value optionally quoted). */
const osRelease = (text: string | undefined): Readonly<Record<string, string>> =>
  Object.fromEntries(
    (text ?? "").split("\n").flatMap((line) => {
      const match = /^([A-Z_]+)=(.*)$/.exec(line.trim())
      return match === null ? [] : [[match[1]!, match[2]!.replace(/^(["'])(.*)\1$/, "$2")]]
    })
  )

const decodePackageJson = Schema.decodeUnknownOption(
  Schema.fromJsonString(Schema.Struct({ name: Schema.String, version: Schema.String }))
)

/** This package's version: from the first `package.json` above this module naming it (the same walk from `src/` and `dist/src/`). */
export const packageVersion: Effect.Effect<string> = Effect.gen(function*() {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  while (true) {
    const manifest = Option.flatMap(Option.fromUndefinedOr(yield* readText(path.join(dir, "package.json"))), decodePackageJson)
    if (Option.isSome(manifest) && manifest.value.name === "effect-containerd") return manifest.value.version
    const parent = path.dirname(dir)
    if (parent === dir) return "0.0.0"
    dir = parent
  }
})

const runcVersion: Effect.Effect<{ readonly version: string; readonly commit: string }> = Effect.callback((resume) => {
  const child = execFile("runc", ["--version"], { timeout: 5_000 }, (error, stdout) =>
    resume(Effect.succeed(error === null ? parseRuncVersion(stdout) : { version: "", commit: "" })))
  return Effect.sync(() => void child.kill())
})

/** dockerd's engine ID: a UUID made once and kept in the data root (a fresh one each run if it cannot be kept). */
const engineId = (dataRoot: string): Effect.Effect<string> =>
  Effect.gen(function*() {
    const file = path.join(dataRoot, "engine-id")
    const kept = (yield* readText(file))?.trim()
    if (kept !== undefined && kept !== "") return kept
    const id = crypto.randomUUID()
    yield* Effect.try({
      try: () => {
        fs.mkdirSync(dataRoot, { recursive: true, mode: 0o711 })
        fs.writeFileSync(file, `${id}\n`, { mode: 0o600 })
      },
      catch: (cause) => cause
    }).pipe(Effect.catch((cause) => Effect.logWarning(`could not keep the engine ID in ${file}`, cause)))
    return id
  })

/** Reads the facts about this host and this build. */
export const hostFacts = (dataRoot: string): Effect.Effect<HostFacts> =>
  Effect.gen(function*() {
    const release = osRelease((yield* readText("/etc/os-release")) ?? (yield* readText("/usr/lib/os-release")))
    const buildTime = yield* Effect.try({
      try: () => fs.statSync(fileURLToPath(import.meta.url)).mtime.toISOString(),
      catch: () => ""
    }).pipe(Effect.orElseSucceed(() => ""))
    return {
      serverVersion: yield* packageVersion,
      buildTime,
      kernelVersion: os.release(),
      operatingSystem: release["PRETTY_NAME"] ?? "Linux",
      osVersion: release["VERSION_ID"] ?? "",
      machine: os.machine(),
      arch: hostPlatform().architecture,
      ncpu: os.availableParallelism(),
      memTotal: os.totalmem(),
      hostname: os.hostname(),
      cgroupVersion: fs.existsSync("/sys/fs/cgroup/cgroup.controllers") ? "2" : "1",
      runc: yield* runcVersion,
      engineId: yield* engineId(dataRoot)
    } satisfies HostFacts
  })

/** Builds the system service over containerd, the engine and the images. */
export const makeSystem = Effect.fnUntraced(function*(options: SystemOptions) {
  const client = yield* Containerd
  const engine = yield* Engine
  const images = yield* DockerImages
  const facts = yield* hostFacts(options.dataRoot)

  // A containerd that does not answer leaves its component out rather than holding up `docker version`.
  const containerdVersion: Effect.Effect<ContainerdVersion | undefined> = client.version.version({}, { timeout: "2 seconds" }).pipe(
    Effect.map(({ revision, version }) => ({ version: version.replace(/^v/, ""), revision })),
    Effect.orElseSucceed(() => undefined)
  )

  const info = Effect.gen(function*() {
    const [containers, imageCount, containerd, now] = yield* Effect.all(
      [engine.counts, images.count, containerdVersion, DateTime.now],
      { concurrency: "unbounded" }
    )
    return infoJson(facts, options, { containers, images: imageCount, containerd, now: DateTime.formatIso(now) })
  })

  return System.of({
    serverVersion: facts.serverVersion,
    version: Effect.map(containerdVersion, (containerd) => versionJson(facts, containerd)),
    info
  })
})

/** The system service. */
export class System extends Context.Service<System, SystemShape>()("effect-containerd/daemon/System") {
  /** Reads the host facts once; asks containerd, the engine and the images on each call. */
  static readonly layer = (options: SystemOptions): Layer.Layer<System, never, Containerd | Engine | DockerImages> =>
    Layer.effect(System, makeSystem(options))
}
