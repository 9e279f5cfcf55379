/**
 * The engine's public types: the operations `Api.ts` calls and their options.
 * They live apart from the assembly (`../Engine.ts`, which re-exports them) so
 * the concept modules of the engine can name them without importing upward.
 */
import type { Duration, Effect, Scope, Stream } from "effect"
import type { DockerError } from "../DockerError.ts"
import type { LogEntry } from "../JsonLogReader.ts"
import type { CommitSource } from "./Commit.ts"
import type { ContainersPruneReport } from "./Prune.ts"
import type { EndpointRequest } from "./Networking.ts"
import type { StatsJson, StatsOptions } from "./Stats.ts"
import type { PathStat } from "./Archive.ts"
import type { ExtractOptions } from "./Extract.ts"
import type { TopJson } from "./Top.ts"
import type { ContainerInspectJson, ContainerSummaryJson, CreateBody, ExecConfig, ExecInspectJson, UpdateBody } from "../Model.ts"

/** How `wait` decides it is done (`POST /containers/{id}/wait?condition=`). */
export type WaitCondition = "not-running" | "next-exit" | "removed"

/** Filters of `GET /containers/json`: Docker's `status`, `label`, `name`, `id`. */
export type ContainerFilters = Readonly<Record<string, ReadonlyArray<string>>>

/** The engine. Every `ref` is a full id, a unique id prefix, or a name (with or without `/`). */
export interface EngineShape {
  /** Creates a container; `name` is generated when not given. 404 "No such image" when the image is not here. */
  readonly create: (
    name: string | undefined,
    body: CreateBody
  ) => Effect.Effect<{ readonly Id: string; readonly Warnings: ReadonlyArray<string> }, DockerError>
  /** Starts it; `alreadyRunning` (dockerd answers 304) when it was running. */
  readonly start: (ref: string) => Effect.Effect<{ readonly alreadyRunning: boolean }, DockerError>
  /** Sends the stop signal, then SIGKILL after `timeout` seconds (default the container's StopTimeout, else 10). */
  readonly stop: (
    ref: string,
    options?: { readonly signal?: string | undefined; readonly timeout?: number | undefined }
  ) => Effect.Effect<{ readonly alreadyStopped: boolean }, DockerError>
  /** Stops (as `stop`) and starts again. */
  readonly restart: (
    ref: string,
    options?: { readonly signal?: string | undefined; readonly timeout?: number | undefined }
  ) => Effect.Effect<void, DockerError>
  /** Sends a signal (default SIGKILL); 409 when not running. */
  readonly kill: (ref: string, signal?: string) => Effect.Effect<void, DockerError>
  readonly pause: (ref: string) => Effect.Effect<void, DockerError>
  readonly unpause: (ref: string) => Effect.Effect<void, DockerError>
  /**
   * Waits for the condition; the effect that waits is returned once the container
   * is found, so the API can answer 404 before it starts streaming.
   */
  readonly wait: (
    ref: string,
    condition: WaitCondition
  ) => Effect.Effect<Effect.Effect<{ readonly StatusCode: number }, DockerError>, DockerError, Scope.Scope>
  /** Renames it (`name` with or without `/`): 400 for an empty, equal or bad name, 409 for one in use. */
  readonly rename: (ref: string, name: string | undefined) => Effect.Effect<void, DockerError>
  /**
   * `docker update`: the restart policy and the memory, CPU, cpuset and pids limits, for the running
   * task and the next starts (`Update.ts`); 400 for a bad value or a field not changed here, nothing changed.
   */
  readonly update: (ref: string, body: UpdateBody) => Effect.Effect<{ readonly Warnings: ReadonlyArray<string> }, DockerError>
  /** `docker container prune`: removes the stopped containers `select` takes (creation time in ms, labels). */
  readonly prune: (
    select: (created: number, labels: Readonly<Record<string, string>>) => boolean
  ) => Effect.Effect<ContainersPruneReport, DockerError>
  /** Removes it; 409 when running unless `force` (then killed first). */
  readonly remove: (ref: string, options?: { readonly force?: boolean | undefined }) => Effect.Effect<void, DockerError>
  readonly inspect: (ref: string) => Effect.Effect<ContainerInspectJson, DockerError>
  readonly list: (options: {
    readonly all?: boolean | undefined
    readonly limit?: number | undefined
    readonly filters?: ContainerFilters | undefined
  }) => Effect.Effect<ReadonlyArray<ContainerSummaryJson>, DockerError>
  /** `ps` (with `psArgs`, default `-ef`) of the container's processes, as dockerd's `top`; 409 if it is not running. */
  readonly top: (ref: string, psArgs: string | undefined) => Effect.Effect<TopJson, DockerError>
  /** The stat of a container path (`docker cp`'s `HEAD`); 404 for a missing path. */
  readonly statPath: (ref: string, path: string) => Effect.Effect<PathStat, DockerError>
  /** The stat and a tar of a container path, streamed (`GET .../archive`); its filesystem stays reachable until the tar ends. */
  readonly archivePath: (
    ref: string,
    path: string
  ) => Effect.Effect<{ readonly stat: PathStat; readonly tar: Stream.Stream<Uint8Array, unknown> }, DockerError>
  /** A tar extracted into a container directory as it arrives (`PUT .../archive`). */
  readonly extractToPath: (
    ref: string,
    path: string,
    body: Stream.Stream<Uint8Array, unknown>,
    options: ExtractOptions
  ) => Effect.Effect<void, DockerError>
  /**
   * Its resource usage as dockerd's `stats` frames: the stream is returned once
   * the first sample is taken, so a lookup or sampling failure is the status.
   */
  readonly stats: (
    ref: string,
    options: StatsOptions
  ) => Effect.Effect<Stream.Stream<StatsJson, DockerError>, DockerError, Scope.Scope>
  /**
   * Attaches to the container's output (and its stdin, if it was created with
   * `OpenStdin` and `stdin` is asked for): from now until the end of its next
   * (or current) run. With `logs`, what it logged before comes first.
   */
  readonly attach: (ref: string, options: AttachOptions) => Effect.Effect<AttachSession, DockerError, Scope.Scope>
  /** The container's json-file log, filtered; with `follow`, until the container stops. */
  readonly logs: (
    ref: string,
    options: LogsOptions
  ) => Effect.Effect<{ readonly tty: boolean; readonly entries: Stream.Stream<LogEntry, DockerError> }, DockerError>
  /** Creates an exec in a running container (Docker's exec instance); 409 if it is not running or paused. */
  readonly execCreate: (ref: string, config: ExecConfig) => Effect.Effect<{ readonly Id: string }, DockerError>
  /** What an attached start checks before it answers (dockerd's `ExecExists`): 404 for no exec, 409 if its container is not running or is paused. */
  readonly execStartable: (execId: string) => Effect.Effect<void, DockerError>
  /**
   * Starts an exec (after the checks of `execStartable`; 409 if it was started
   * already). A start containerd refuses gives the exec dockerd's exit code
   * (126/127/128) and fails 400 (the command's or config's fault) or 500.
   * Detached: runs with no stdio. Attached: the session's output
   * ends with the exec's output; `exited` waits for its exit code.
   */
  readonly execStart: (
    execId: string,
    options: { readonly detach: boolean }
  ) => Effect.Effect<{ readonly session: AttachSession; readonly exited: Effect.Effect<number> }, DockerError>
  readonly execResize: (execId: string, height: number, width: number) => Effect.Effect<void, DockerError>
  readonly execInspect: (execId: string) => Effect.Effect<ExecInspectJson, DockerError>
  /** Resizes the container's terminal. */
  readonly resize: (ref: string, height: number, width: number) => Effect.Effect<void, DockerError>
  /** The containers (running or not) using each named volume, by its name. */
  readonly volumeUsers: Effect.Effect<ReadonlyMap<string, ReadonlyArray<string>>>
  /** The containers made from an image (by image ID); `running` includes paused and restarting ones. */
  readonly usersOf: (imageId: string) => Effect.Effect<ReadonlyArray<{ readonly id: string; readonly running: boolean }>>
  /** What `docker commit` reads of a container; 404 for an unknown one, 409 while it is being removed. */
  readonly commitSource: (ref: string) => Effect.Effect<CommitSource, DockerError>
  /** Runs `effect` with the container (by id) paused if it runs, unpaused after whatever the result (a commit's `pause`). */
  readonly whilePaused: <A, E, R>(id: string, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** `docker network connect`: 404 for an unknown container or network; the endpoint's aliases and address checked. */
  readonly networkConnect: (
    network: string,
    container: string,
    endpoint: EndpointRequest | undefined
  ) => Effect.Effect<void, DockerError>
  /** `docker network disconnect`. */
  readonly networkDisconnect: (network: string, container: string) => Effect.Effect<void, DockerError>
  /** Each container's name, by id (for a network's `Containers`). */
  readonly names: Effect.Effect<ReadonlyMap<string, string>>
  /** What each container wrote to its rootfs (Docker's `SizeRw`), by id: for `system df`, a walk of each one's files. */
  readonly sizesRw: Effect.Effect<ReadonlyMap<string, number>>
  /** Counts for `GET /info`. */
  readonly counts: Effect.Effect<{
    readonly total: number
    readonly running: number
    readonly paused: number
    readonly stopped: number
  }>
}

/** What `attach` connects. */
export interface AttachOptions {
  readonly stdin: boolean
  readonly stdout: boolean
  readonly stderr: boolean
  /** Replay the log before the live output. */
  readonly logs: boolean
  /** Live output and input (Docker's `stream`); without it only the log is replayed. */
  readonly stream: boolean
}

/** An attached client's view of the container. */
export interface AttachSession {
  /** A terminal: output is raw bytes, not multiplexed. */
  readonly tty: boolean
  /** The output asked for; ends when the run ends. */
  readonly output: Stream.Stream<{ readonly stream: "stdout" | "stderr"; readonly data: Uint8Array }>
  /** Writes to the container's stdin (if attached to it). */
  readonly write: ((data: Uint8Array) => Effect.Effect<void>) | undefined
  /** The client's input ended: closes stdin if the container says `StdinOnce`. */
  readonly endInput: Effect.Effect<void>
}

/** What `logs` returns. */
export interface LogsOptions {
  readonly stdout: boolean
  readonly stderr: boolean
  readonly follow: boolean
  /** Unix ms. */
  readonly since?: number | undefined
  readonly until?: number | undefined
  /** The last N entries; all if undefined. */
  readonly tail?: number | undefined
}

/** Settings of the engine. */
export interface EngineOptions {
  /** The containerd namespace the daemon's containers live in. */
  readonly namespace: string
  /** Where containers' json-file logs go: `<logRoot>/<id>/<id>-json.log`. */
  readonly logRoot: string
  /** Where a stopped container's rootfs is mounted for `docker cp`; default `mnt` beside `logRoot`. */
  readonly mountRoot?: string | undefined
  /**
   * The shim logger (`ShimLogger.buildShimLogger`). With it, containers without
   * a stdin or a terminal are logged by the shim's child instead of through the
   * daemon's FIFOs, so their output never waits for the daemon. Without it,
   * every container's output goes through FIFOs.
   */
  readonly shimLogger?: string | undefined
  /** The OCI runtimes besides runc that containers may ask for (`--add-runtime name=path`): name → runc-compatible binary. */
  readonly runtimes?: Readonly<Record<string, string>> | undefined
  /** How long an exited exec stays inspectable (dockerd's exec GC); default 5 minutes, checked every fifth of it. */
  readonly execRetention?: Duration.Input | undefined
}
