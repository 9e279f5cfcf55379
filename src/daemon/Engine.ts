/**
 * The daemon's container engine: Docker's container semantics (names, ids,
 * create/start/stop/kill/wait/remove, restart policies, AutoRemove) on the
 * library's `Monitors` and `Runtime`. The HTTP API (`Api.ts`) only translates.
 *
 * State lives in containerd: what a container was created with is an extension
 * of the containerd container (`StoredContainer`), written in the same
 * `Containers.Create`; what changes is in labels (the monitors' exit record, the
 * restart count, a manual stop). The in-memory index (names, ids) is rebuilt
 * from the one `Containers.List` of the monitors' recovery at start, so a
 * restarted daemon loses nothing and no second database can disagree with
 * containerd.
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import {
  type Cause,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberMap,
  Latch,
  Layer,
  Option,
  PubSub,
  Queue,
  Result,
  Schema,
  Scope,
  Stream
} from "effect"
import { packJson, unpackJson } from "../domain/Any.ts"
import type { ContainerdError } from "../domain/ContainerdError.ts"
import { signalNumber } from "../domain/Signal.ts"
import { removeTree } from "../internal/Files.ts"
import { Containerd, withNamespace } from "../services/Containerd.ts"
import { Events } from "../services/Events.ts"
import { Images } from "../services/Images.ts"
import type { BackoffQueue } from "../services/BackoffQueue.ts"
import { type ContainerExit, ExitHandler, makeMonitors, MonitorLabels, type MonitorsShape } from "../services/Monitors.ts"
import { type BindMount, type Process, type Runtime, Stdio, type Task, type TmpfsMount } from "../services/Runtime.ts"
import { badRequest, conflict, DockerError, fromLibrary, internal, notFound } from "./DockerError.ts"
import { EventLog } from "./EventLog.ts"
import { type LogEntry, makeWriter, readLogs } from "./JsonLog.ts"
import { containerDir, type LogConfig, logConfigPath, logPath } from "./LogFiles.ts"
import {
  type ContainerInspectJson,
  type ContainerStateJson,
  type ContainerSummaryJson,
  type CreateBody,
  type ExecConfig,
  type ExecInspectJson,
  type HostConfig,
  type RestartPolicyName,
  StoredContainer,
  ZERO_TIME
} from "./Model.ts"

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
  /** Removes it; 409 when running unless `force` (then killed first). */
  readonly remove: (ref: string, options?: { readonly force?: boolean | undefined }) => Effect.Effect<void, DockerError>
  readonly inspect: (ref: string) => Effect.Effect<ContainerInspectJson, DockerError>
  readonly list: (options: {
    readonly all?: boolean | undefined
    readonly limit?: number | undefined
    readonly filters?: ContainerFilters | undefined
  }) => Effect.Effect<ReadonlyArray<ContainerSummaryJson>, DockerError>
  /** `ps` of the container's processes: pids from containerd, details from /proc. */
  readonly top: (ref: string) => Effect.Effect<
    { readonly Titles: ReadonlyArray<string>; readonly Processes: ReadonlyArray<ReadonlyArray<string>> },
    DockerError
  >
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
  /**
   * Starts an exec. Detached: runs with no stdio. Attached: the session's output
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
  /**
   * The shim logger (`ShimLogger.buildShimLogger`). With it, containers without
   * a stdin or a terminal are logged by the shim's child instead of through the
   * daemon's FIFOs, so their output never waits for the daemon. Without it,
   * every container's output goes through FIFOs.
   */
  readonly shimLogger?: string | undefined
  /** How long an exited exec stays inspectable (dockerd's exec GC); default 5 minutes, checked every fifth of it. */
  readonly execRetention?: Duration.Input | undefined
}

/** The container engine. */
export class Engine extends Context.Service<Engine, EngineShape>()("effect-containerd/daemon/Engine") {}

/** Labels the daemon keeps on its containerd containers (besides the monitors'). */
const DaemonLabels = {
  /** The container's name, without the leading `/`: for people reading `ctr containers ls`. */
  name: "effect-containerd.io/docker.name",
  /** How often a restart policy restarted it. */
  restartCount: "effect-containerd.io/docker.restart-count",
  /** Set when it was stopped by hand: `always` and `unless-stopped` leave it stopped. */
  stopped: "effect-containerd.io/docker.stopped"
} as const

/** The extension holding `StoredContainer`. */
const STORED_EXTENSION = "effect-containerd.io/docker"
const STORED_TYPE_URL = "types.effect-containerd.io/docker/StoredContainer"
const decodeStored = Schema.decodeUnknownOption(StoredContainer)

/** Docker's rule for names (daemon/names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`). */
const NAME_PATTERN = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$/
/** dockerd's default stop timeout, in seconds. */
const DEFAULT_STOP_TIMEOUT = 10
/** A killed process that does not go in this long is reported, not waited on forever. */
const KILL_GRACE = Duration.seconds(30)
/** How long a removal waits for the readers of the container's log to finish. */
const FOLLOWERS_TIMEOUT = Duration.seconds(5)
/** How long a start waits for the previous run's exit to be handled (the task deleted, the log closed). */
const SETTLE_TIMEOUT = Duration.seconds(30)
/** How long an exited exec stays inspectable, and how often old ones are collected (dockerd: 5 min). */
const EXEC_RETENTION = Duration.minutes(5)
/** Restart delays as dockerd's restartmanager: 100 ms doubling to 1 min, reset after 10 s of running. */
const RESTART_DELAY_MIN = 100
const RESTART_DELAY_MAX = 60_000
const RESTART_RESET_AFTER = 10_000

/** A container as the engine knows it: what it was created with and what Docker tracks beyond the monitors. */
interface Entry {
  readonly id: string
  readonly name: string
  readonly stored: StoredContainer
  readonly policy: { readonly name: RestartPolicyName; readonly max: number }
  restartCount: number
  manuallyStopped: boolean
  paused: boolean
  removing: boolean
  /** A policy restart is pending (Docker's `Restarting`). */
  restarting: boolean
  restartDelay: number
  /** The output of every run, live, for attachers; `End` after each run's last byte. */
  readonly output: PubSub.PubSub<OutputEvent>
  /** The current run's stdin (containers with `OpenStdin`), written by attachers. */
  input: Queue.Queue<Uint8Array, Cause.Done> | undefined
  /** A run's output is being pumped: it has not ended yet. */
  streaming: boolean
  /** Readers following the log file; its removal waits for them to finish. */
  followers: number
  /** Open while no reader follows the log file. */
  readonly unfollowed: Latch.Latch
  /** Completed once the engine has handled the current run's exit (so the next start may come). */
  handled: Deferred.Deferred<void> | undefined
}

/** What attachers receive: output of a stream, or the end of a run's output. */
type OutputEvent =
  | { readonly _tag: "Output"; readonly stream: "stdout" | "stderr"; readonly data: Uint8Array }
  | { readonly _tag: "End" }

/** An exec instance: created, then started once; kept until its container goes. */
interface ExecEntry {
  readonly id: string
  readonly containerId: string
  readonly config: ExecConfig
  started: boolean
  exitCode: number | undefined
  pid: number
  /** The process while it runs (started, not yet exited). */
  process: Process | undefined
  readonly exited: Deferred.Deferred<number>
  /** When it exited (ms), for the collection of old execs. */
  exitedAt: number | undefined
}

/** A wait's news: an exit (final unless a restart is coming) or the removal. */
type Notice =
  | { readonly _tag: "Exit"; readonly id: string; readonly code: number; readonly restarting: boolean }
  | { readonly _tag: "Removed"; readonly id: string; readonly code: number }

const parsePolicy = (policy: HostConfig["RestartPolicy"]): Result.Result<Entry["policy"], string> => {
  const name = policy?.Name ?? ""
  const max = policy?.MaximumRetryCount ?? 0
  if (max < 0) return Result.fail("invalid restart policy: maximum retry count cannot be negative")
  switch (name) {
    case "":
    case "no":
    case "always":
    case "unless-stopped":
      if (max !== 0) return Result.fail(`invalid restart policy: maximum retry count can only be used with 'on-failure'`)
      return Result.succeed({ name: name === "" ? "no" : name, max: 0 })
    case "on-failure":
      return Result.succeed({ name, max })
    default:
      return Result.fail(`invalid restart policy '${name}': use no, always, on-failure or unless-stopped`)
  }
}

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }

/** A size as Docker writes them (`512`, `64k`, `10m`, `1g`), in bytes; `undefined` if absent or malformed. */
const parseSize = (value: string | undefined): number | undefined => {
  const match = /^(\d+)([bkmg]?)$/i.exec(value ?? "")
  return match === null ? undefined : Number(match[1]) * UNITS[match[2]!.toLowerCase()]!
}

const parseTmpfs = (destination: string, options: string): Result.Result<TmpfsMount, string> => {
  if (!destination.startsWith("/")) return Result.fail(`invalid tmpfs mount ${destination}: the path must be absolute`)
  let size: number | undefined
  let mode: number | undefined
  for (const option of options.split(",").filter((o) => o !== "")) {
    const [key, value = ""] = option.split("=", 2)
    if (key === "size") {
      size = parseSize(value)
      if (size === undefined) return Result.fail(`invalid tmpfs size ${JSON.stringify(value)} for ${destination}`)
    } else if (key === "mode") {
      if (!/^[0-7]{3,4}$/.test(value)) return Result.fail(`invalid tmpfs mode ${JSON.stringify(value)} for ${destination}`)
      mode = parseInt(value, 8)
    } else if (!["rw", "ro", "noexec", "exec", "nosuid", "suid", "nodev", "dev"].includes(key!)) {
      return Result.fail(`invalid tmpfs option ${JSON.stringify(option)} for ${destination}`)
    }
  }
  return Result.succeed({ type: "tmpfs", destination, size, mode })
}

const parseBind = (bind: string): Result.Result<BindMount, string> => {
  const parts = bind.split(":")
  if (parts.length < 2 || parts.length > 3) return Result.fail(`invalid volume specification: '${bind}'`)
  const [source = "", destination = "", mode = "rw"] = parts
  if (!source.startsWith("/")) {
    return Result.fail(`invalid volume specification: '${bind}': named volumes are not supported, bind an absolute host path`)
  }
  if (!destination.startsWith("/")) return Result.fail(`invalid volume specification: '${bind}': the container path must be absolute`)
  const modes = mode.split(",")
  if (!modes.every((m) => ["ro", "rw", "z", "Z", "private", "rprivate", "shared", "rshared", "slave", "rslave"].includes(m))) {
    return Result.fail(`invalid mode: ${mode}`)
  }
  return Result.succeed({ type: "bind", source, destination, readonly: modes.includes("ro") })
}

/** The network a container gets: only `none` and `host` exist until bridge networking does. */
const parseNetwork = (mode: string | null | undefined): Result.Result<"none" | "host", string> => {
  switch (mode ?? "") {
    case "":
    case "default":
    case "bridge":
    case "none":
      // Isolated, with loopback only: the default until bridge networking exists.
      return Result.succeed("none")
    case "host":
      return Result.succeed("host")
    default:
      return Result.fail(`network mode ${JSON.stringify(mode)} is not supported: use none, host or default`)
  }
}

const iso = (date: Date | undefined) => date === undefined ? ZERO_TIME : date.toISOString()

const humanDuration = (ms: number): string => {
  const s = Math.round(ms / 1000)
  if (s < 1) return "Less than a second"
  if (s < 60) return `${s} second${s === 1 ? "" : "s"}`
  const m = Math.round(s / 60)
  if (m < 60) return m === 1 ? "About a minute" : `${m} minutes`
  const h = Math.round(m / 60)
  if (h < 48) return h === 1 ? "About an hour" : `${h} hours`
  return `${Math.round(h / 24)} days`
}

const adjectives = ["brave", "calm", "eager", "fervent", "gentle", "happy", "keen", "lucid", "nifty", "quirky", "sharp", "vibrant"]
const scientists = ["curie", "darwin", "euler", "galois", "hopper", "kepler", "lovelace", "noether", "pike", "ritchie", "turing", "wozniak"]

/** Builds the engine over the library's services, recovering the daemon's namespace. */
const makeEngine = Effect.fnUntraced(function*(options: EngineOptions) {
  const client = yield* Containerd
  const images = yield* Images
  const eventLog = yield* EventLog
  /** Runs in the daemon's namespace, whatever the client's default. */
  const inNamespace = <A, E, R>(effect: Effect.Effect<A, E, R>) => withNamespace(effect, options.namespace)

  const byId = new Map<string, Entry>()
  const byName = new Map<string, string>()
  /** Names taken by creates in flight. */
  const reserved = new Set<string>()
  const notices = yield* PubSub.unbounded<Notice>()
  /** Pending policy restarts and automatic removals, per container. */
  const pending = yield* FiberMap.make<string>()
  /** Each running container's output pump. */
  const pumps = yield* FiberMap.make<string>()

  const entryOf = (id: string, stored: StoredContainer, labels: Readonly<Record<string, string>>): Effect.Effect<Entry> =>
    Effect.map(PubSub.unbounded<OutputEvent>(), (output) => ({
    id,
    name: stored.Name.replace(/^\//, ""),
    stored,
    policy: Result.getOrElse(parsePolicy(stored.HostConfig.RestartPolicy), () => ({ name: "no" as const, max: 0 })),
    restartCount: Number(labels[DaemonLabels.restartCount] ?? 0) || 0,
    manuallyStopped: labels[DaemonLabels.stopped] === "true",
    paused: false,
    removing: false,
    restarting: false,
    restartDelay: RESTART_DELAY_MIN,
    output,
    input: undefined,
    streaming: false,
    followers: 0,
    unfollowed: Latch.makeUnsafe(true),
    handled: undefined
  }))

  const index = (entry: Entry) => {
    byId.set(entry.id, entry)
    byName.set(entry.name, entry.id)
  }
  const unindex = (entry: Entry) =>
    Effect.suspend(() => {
      byId.delete(entry.id)
      if (byName.get(entry.name) === entry.id) byName.delete(entry.name)
      return PubSub.shutdown(entry.output)
    })

  const attributesOf = (entry: Entry, extra?: Record<string, string>) => ({
    ...entry.stored.Config.Labels,
    image: entry.stored.Image,
    name: entry.name,
    ...extra
  })
  const publish = (entry: Entry, action: string, extra?: Record<string, string>) =>
    eventLog.publish({ type: "container", action, id: entry.id, attributes: attributesOf(entry, extra) })

  const setLabels = (id: string, labels: Record<string, string>) =>
    inNamespace(client.containers.update({
      container: { id, labels },
      updateMask: Object.keys(labels).map((key) => `labels.${key}`)
    })).pipe(Effect.asVoid)


  /**
   * A pending restart or removal of `id`, run in the engine's scope (never inside
   * the handler's lock). A policy restart replaces what is pending; a removal or
   * a restore at start is kept if something is pending already.
   */
  const schedule = (entry: Entry, effect: Effect.Effect<void, DockerError>, kind: "restart" | "remove" | "restore") =>
    FiberMap.run(
      pending,
      entry.id,
      effect.pipe(Effect.catch((error) => Effect.logWarning(`container ${entry.id}: ${error.message}`))),
      { onlyIfMissing: kind !== "restart" }
    ).pipe(Effect.asVoid)
  /** The handler waits for this: recovery may report exits before the engine is built. */
  const ready = yield* Deferred.make<void>()

  const cancelPending = (entry: Entry) =>
    Effect.suspend(() => {
      entry.restarting = false
      return FiberMap.remove(pending, entry.id)
    })

  const shouldRestart = (entry: Entry, code: number): boolean => {
    if (entry.manuallyStopped || entry.removing || entry.stored.HostConfig.AutoRemove === true) return false
    switch (entry.policy.name) {
      case "always":
      case "unless-stopped":
        return true
      case "on-failure":
        return code !== 0 && (entry.policy.max === 0 || entry.restartCount < entry.policy.max)
      case "no":
        return false
    }
  }

  /** What the engine does with an exit, after the monitors deleted the task and recorded it. */
  const handleExit = (exit: ContainerExit, self: MonitorsShape) =>
    Effect.gen(function*() {
      yield* Deferred.await(ready)
      const entry = byId.get(exit.containerId)
      if (entry === undefined) return
      const handled = entry.handled
      yield* handleRunEnd(entry, exit, self).pipe(
        Effect.ensuring(handled === undefined ? Effect.void : Deferred.succeed(handled, undefined))
      )
    })

  /** The exit of one run, in order: the end of its output, its events, then AutoRemove or the restart policy. */
  const handleRunEnd = (entry: Entry, exit: ContainerExit, self: MonitorsShape) =>
    Effect.gen(function*() {
      entry.paused = false
      const code = exit.status.code
      const now = yield* Clock.currentTimeMillis
      const tracked = yield* self.get(entry.id).pipe(withNamespace(options.namespace))
      const startedAt = Option.getOrUndefined(tracked)?.state.startedAt?.getTime()
      const restart = shouldRestart(entry, code)
      entry.restarting = restart
      if (shimLogged(entry) && entry.streaming) {
        // The task is deleted, so the shim has waited for its logger: the log is whole.
        entry.streaming = false
        yield* PubSub.publish(entry.output, { _tag: "End" })
      }
      if (exit.oomKilled) yield* publish(entry, "oom")
      yield* publish(entry, "die", { exitCode: String(code) })
      yield* PubSub.publish(notices, { _tag: "Exit", id: entry.id, code, restarting: restart })
      // An exit found at recovery whose container the restore below already took care of.
      if (exit.recovered && (yield* FiberMap.has(pending, entry.id))) return
      if (entry.stored.HostConfig.AutoRemove === true && !entry.removing) {
        return yield* schedule(entry, remove(entry.id, { force: false }), "remove")
      }
      if (!restart) return
      // dockerd's restart manager: the delay doubles per restart, back to the
      // minimum once the container had run for 10 s.
      if (startedAt !== undefined && now - startedAt >= RESTART_RESET_AFTER) entry.restartDelay = RESTART_DELAY_MIN
      const delay = entry.restartDelay
      entry.restartDelay = Math.min(entry.restartDelay * 2, RESTART_DELAY_MAX)
      yield* schedule(
        entry,
        Effect.gen(function*() {
          yield* Effect.sleep(Duration.millis(delay))
          if (!entry.restarting || !byId.has(entry.id)) return
          entry.restartCount++
          yield* setLabels(entry.id, { [DaemonLabels.restartCount]: String(entry.restartCount) }).pipe(
            Effect.mapError((e) => fromLibrary(e))
          )
          yield* startTask(entry)
        }),
        "restart"
      )
    })

  const handler = ExitHandler.of({ handle: handleExit })
  const mon = yield* makeMonitors({ namespaces: [options.namespace] }).pipe(
    Effect.provideService(ExitHandler, handler)
  )

  // The index, from what the monitors' recovery just listed (one Containers.List
  // for both): every container of ours with its stored config. Exits found by the
  // recovery wait for `ready`, so they are handled with the index in place.
  for (const state of yield* mon.states) {
    if (state.namespace !== options.namespace) continue
    const container = Option.getOrUndefined(yield* inNamespace(mon.get(state.id)))?.container
    const extension = container?.info.extensions[STORED_EXTENSION]
    if (container === undefined || extension === undefined) continue
    const stored = yield* unpackJson(STORED_TYPE_URL, extension).pipe(
      Effect.map(decodeStored),
      Effect.orElseSucceed(() => Option.none<StoredContainer>())
    )
    if (Option.isSome(stored)) index(yield* entryOf(container.id, stored.value, container.labels))
  }

  /** The entry a ref names: full id, name, or unique id prefix. */
  const find = (ref: string): Effect.Effect<Entry, DockerError> =>
    Effect.suspend(() => {
      const name = ref.replace(/^\//, "")
      const exact = byId.get(ref) ?? byId.get(byName.get(name) ?? "")
      if (exact !== undefined) return Effect.succeed(exact)
      if (ref.length > 0 && /^[0-9a-f]+$/.test(ref)) {
        const matches = [...byId.keys()].filter((id) => id.startsWith(ref))
        if (matches.length === 1) return Effect.succeed(byId.get(matches[0]!)!)
        if (matches.length > 1) return Effect.fail(badRequest(`multiple IDs found with provided prefix: ${ref}`))
      }
      return Effect.fail(notFound(`No such container: ${ref}`))
    })

  const trackedOf = (entry: Entry) => Effect.map(inNamespace(mon.get(entry.id)), Option.getOrUndefined)

  const stateOf = (entry: Entry) =>
    Effect.map(trackedOf(entry), (tracked): ContainerStateJson => {
      const state = tracked?.state
      const running = state?.status === "running" || state?.status === "paused"
      const paused = running && (state?.status === "paused" || entry.paused)
      const status: ContainerStateJson["Status"] = entry.removing
        ? "removing"
        : entry.restarting
        ? "restarting"
        : paused
        ? "paused"
        : running
        ? "running"
        : state?.status === "exited"
        ? "exited"
        : state === undefined || state.status === "deleted"
        ? "dead"
        : "created"
      return {
        Status: status,
        Running: running,
        Paused: paused,
        Restarting: entry.restarting,
        OOMKilled: state?.oomKilled ?? false,
        Dead: status === "dead",
        Pid: running ? state?.pid ?? 0 : 0,
        ExitCode: running ? 0 : state?.exitCode ?? 0,
        Error: state?.exitUnknown === true ? "the container's exit status could not be known" : "",
        StartedAt: iso(state?.startedAt),
        FinishedAt: running ? ZERO_TIME : iso(state?.exitedAt)
      }
    })

  const lib = <A, R>(effect: Effect.Effect<A, ContainerdError, R>, context?: string) =>
    Effect.mapError(effect, (error) => fromLibrary(error, context))

  /** Starts the task and publishes `start`. */
  const logPathOf = (entry: Entry) => logPath(options.logRoot, entry.id)

  /** Runs `effect`'s file work; a failure is a 500 that names what failed. */
  const files = (what: string, f: () => void) =>
    Effect.try({ try: f, catch: (cause) => internal(`${what}: ${cause instanceof Error ? cause.message : String(cause)}`, cause) })

  /** The container's log options, as its create request set them (dockerd's defaults: no rotation, one file). */
  const logConfigOf = (stored: StoredContainer): LogConfig => {
    const config = stored.HostConfig.LogConfig?.Config ?? {}
    const maxSize = parseSize(config["max-size"])
    const maxFiles = Number(config["max-file"] ?? 1) || 1
    return maxSize === undefined ? { maxFiles } : { maxSize, maxFiles }
  }

  /** Whether the shim logger writes this container's log (no stdin, no terminal: nothing else needs the daemon). */
  const shimLogged = (entry: Entry) =>
    options.shimLogger !== undefined && entry.stored.Config.OpenStdin !== true && entry.stored.Config.Tty !== true

  /**
   * Drains one run's output into the json-file log and to the attachers, and
   * feeds attachers' input to its stdin. Output is read whether or not anyone
   * attaches, so a container never blocks on its stdout.
   */
  /** Feeds a process's stdin from `input` until the input ends, then closes it (a container's run, an exec). */
  const feedStdin = (process: Process, input: Queue.Dequeue<Uint8Array, Cause.Done>) =>
    Stream.fromQueue(input).pipe(Stream.run(process.stdin), Effect.andThen(process.closeStdin), Effect.ignore)

  const pump = (entry: Entry, task: Task) =>
    Effect.scoped(Effect.gen(function*() {
      // A log that cannot be written must not stop the output being read: the container would block.
      const writer = yield* makeWriter({ path: logPathOf(entry), ...logConfigOf(entry.stored) }).pipe(Effect.catch((error) =>
        Effect.as(Effect.logError(`container ${entry.id}: its log cannot be written; output is dropped`, error), {
          write: () => Effect.void,
          close: Effect.void
        })
      ))
      const forward = (stream: "stdout" | "stderr", source: Stream.Stream<Uint8Array, ContainerdError>) =>
        Stream.runForEach(source, (data) =>
          Effect.andThen(writer.write(stream, data), PubSub.publish(entry.output, { _tag: "Output", stream, data }))).pipe(
          Effect.catch((error) => Effect.logWarning(`container ${entry.id}: reading ${stream} failed`, error))
        )
      const input = entry.input
      if (input !== undefined) yield* Effect.forkScoped(feedStdin(task, input))
      yield* Effect.all([forward("stdout", task.stdout), forward("stderr", task.stderr)], { concurrency: 2, discard: true })
      yield* writer.close
      // The next run gets a fresh stdin.
      if (entry.input === input) entry.input = undefined
      entry.streaming = false
      yield* PubSub.publish(entry.output, { _tag: "End" })
    }))

  /** The stdin queue of the container's next (or current) run; attachers may write before it starts. */
  const inputOf = (entry: Entry) =>
    Effect.gen(function*() {
      if (entry.input === undefined) entry.input = yield* Queue.unbounded<Uint8Array, Cause.Done>()
      return entry.input
    })

  /** Starts the task with its stdio drained by a pump, and publishes `start`. */
  const startTask = (entry: Entry) =>
    Effect.gen(function*() {
      entry.restarting = false
      const handled = yield* Deferred.make<void>()
      entry.handled = handled
      yield* startRun(entry).pipe(Effect.onError(() => Deferred.succeed(handled, undefined)))
    })

  const startRun = (entry: Entry) =>
    Effect.gen(function*() {
      if (shimLogged(entry)) {
        yield* lib(inNamespace(mon.start(entry.id, { stdio: Stdio.binary(options.shimLogger!, options.logRoot) })), `cannot start container ${entry.id}`)
        // Its output ends when the task is deleted (the shim waits for the logger then): see handleExit.
        entry.streaming = true
        return yield* publish(entry, "start")
      }
      const openStdin = entry.stored.Config.OpenStdin === true
      if (openStdin) yield* inputOf(entry)
      const task = yield* lib(
        inNamespace(mon.start(entry.id, { stdio: Stdio.pipe({ stdin: openStdin }) })),
        `cannot start container ${entry.id}`
      )
      entry.streaming = true
      yield* FiberMap.run(pumps, entry.id, pump(entry, task))
      yield* publish(entry, "start")
    })

  const validate = (name: string | undefined, body: CreateBody) =>
    Effect.gen(function*() {
      if (name !== undefined && name !== "" && !NAME_PATTERN.test(name)) {
        return yield* Effect.fail(badRequest(`Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`))
      }
      if (body.Image === undefined || body.Image === null || body.Image === "") {
        return yield* Effect.fail(badRequest("config has no image: an image is required to create a container"))
      }
      const host = body.HostConfig ?? {}
      const check = <A>(result: Result.Result<A, string>) =>
        Result.isSuccess(result) ? Effect.succeed(result.success) : Effect.fail(badRequest(result.failure))
      const policy = yield* check(parsePolicy(host.RestartPolicy))
      if (host.AutoRemove === true && policy.name !== "no") {
        return yield* Effect.fail(badRequest("conflicting options: cannot specify both --restart and --rm"))
      }
      if (host.Privileged === true) return yield* Effect.fail(badRequest("privileged containers are not supported"))
      const network = yield* check(parseNetwork(host.NetworkMode))
      const binds = yield* Effect.forEach(host.Binds ?? [], (bind) => check(parseBind(bind)))
      const tmpfs = yield* Effect.forEach(Object.entries(host.Tmpfs ?? {}), ([dest, opts]) => check(parseTmpfs(dest, opts)))
      if (body.StopSignal !== undefined && body.StopSignal !== null && body.StopSignal !== "" && signalNumber(body.StopSignal) === undefined) {
        return yield* Effect.fail(badRequest(`invalid stop signal: ${body.StopSignal}`))
      }
      const log = host.LogConfig
      if (log?.Type !== undefined && log.Type !== null && log.Type !== "" && log.Type !== "json-file") {
        return yield* Effect.fail(badRequest(`logging driver ${JSON.stringify(log.Type)} is not supported: use json-file`))
      }
      const maxSize = log?.Config?.["max-size"]
      if (maxSize !== undefined && (parseSize(maxSize) ?? 0) <= 0) {
        return yield* Effect.fail(badRequest(`invalid log option max-size=${JSON.stringify(maxSize)}: use a size such as 10m`))
      }
      const maxFile = log?.Config?.["max-file"]
      if (maxFile !== undefined && !/^[1-9]\d*$/.test(maxFile)) {
        return yield* Effect.fail(badRequest(`invalid log option max-file=${JSON.stringify(maxFile)}: use a positive number`))
      }
      if ((host.Memory ?? 0) < 0 || (host.CpuShares ?? 0) < 0) {
        return yield* Effect.fail(badRequest("memory and CPU shares cannot be negative"))
      }
      return { network, mounts: [...binds, ...tmpfs] }
    })

  const generateName = (): string => {
    for (;;) {
      const pick = (xs: ReadonlyArray<string>) => xs[crypto.randomInt(xs.length)]!
      const name = `${pick(adjectives)}_${pick(scientists)}${crypto.randomInt(100)}`
      if (!byName.has(name) && !reserved.has(name)) return name
    }
  }

  const argv = (value: ReadonlyArray<string> | string | null | undefined) =>
    value === null || value === undefined ? undefined : typeof value === "string" ? [value] : value

  const create: EngineShape["create"] = (requestedName, body) =>
    Effect.gen(function*() {
      const checked = yield* validate(requestedName, body)
      const image = yield* images.resolve(body.Image!).pipe(
        inNamespace,
        Effect.mapError((error) =>
          error.reason._tag === "NotFound" ? notFound(`No such image: ${body.Image}`) : fromLibrary(error)
        )
      )
      const name = requestedName === undefined || requestedName === "" ? generateName() : requestedName.replace(/^\//, "")
      const holder = byName.get(name)
      if (holder !== undefined || reserved.has(name)) {
        return yield* Effect.fail(conflict(
          `Conflict. The container name "/${name}" is already in use by container "${holder ?? "(being created)"}". You have to remove (or rename) that container to be able to reuse that name.`
        ))
      }
      reserved.add(name)
      return yield* Effect.gen(function*() {
        const id = crypto.randomBytes(32).toString("hex")
        const host = body.HostConfig ?? {}
        const { HostConfig: _, ...config } = body
        const stored: StoredContainer = {
          Name: `/${name}`,
          Created: new Date(yield* Clock.currentTimeMillis).toISOString(),
          Image: body.Image!,
          ImageId: image.configDigest,
          Config: config,
          HostConfig: host
        }
        const container = yield* lib(inNamespace(mon.create({
          id,
          image: image.name,
          entrypoint: argv(body.Entrypoint),
          command: argv(body.Cmd),
          env: body.Env ?? undefined,
          workingDir: body.WorkingDir || undefined,
          user: body.User || undefined,
          labels: {
            [DaemonLabels.name]: name,
            ...(host.AutoRemove === true ? { [MonitorLabels.transient]: "true" } : {})
          },
          mounts: checked.mounts,
          hostname: body.Hostname || id.slice(0, 12),
          tty: body.Tty ?? false,
          network: checked.network,
          readonlyRootfs: host.ReadonlyRootfs ?? false,
          resources: {
            memory: host.Memory || undefined,
            cpuShares: host.CpuShares || undefined
          },
          runtime: host.Runtime || undefined,
          extensions: { [STORED_EXTENSION]: packJson(STORED_TYPE_URL, stored) }
        })))
        yield* files("could not write the container's log options", () => {
          fs.mkdirSync(containerDir(options.logRoot, id), { recursive: true })
          fs.writeFileSync(logConfigPath(options.logRoot, id), JSON.stringify(logConfigOf(stored)))
        }).pipe(Effect.onError(() => lib(inNamespace(mon.remove(id))).pipe(Effect.ignore)))
        const entry = yield* entryOf(container.id, stored, container.labels)
        index(entry)
        yield* publish(entry, "create")
        return { Id: id, Warnings: [] as ReadonlyArray<string> }
      }).pipe(Effect.ensuring(Effect.sync(() => reserved.delete(name))))
    })

  const isRunning = (entry: Entry) =>
    Effect.map(trackedOf(entry), (t) => t?.state.status === "running" || t?.state.status === "paused")

  const taskOf = (entry: Entry) =>
    Effect.flatMap(trackedOf(entry), (t) =>
      t?.task === undefined || !(t.state.status === "running" || t.state.status === "paused")
        ? Effect.fail(conflict(`Container ${entry.id} is not running`))
        : Effect.succeed(t.task))

  const start: EngineShape["start"] = (ref) =>
    Effect.gen(function*() {
      const entry = yield* find(ref)
      if (entry.removing) return yield* Effect.fail(conflict(`container ${entry.id} is marked for removal and cannot be started`))
      if (yield* isRunning(entry)) return { alreadyRunning: true }
      yield* cancelPending(entry)
      yield* settled(entry)
      if (entry.manuallyStopped) {
        entry.manuallyStopped = false
        yield* lib(setLabels(entry.id, { [DaemonLabels.stopped]: "" }))
      }
      // As dockerd: a --rm container that cannot start is removed.
      yield* startTask(entry).pipe(Effect.onError(() =>
        entry.stored.HostConfig.AutoRemove === true ? schedule(entry, remove(entry.id, { force: true }), "remove") : Effect.void
      ))
      return { alreadyRunning: false }
    })

  /** Signals the task and waits up to `timeout` for it to exit; then SIGKILLs it. */
  const stopTask = (entry: Entry, signal: string | undefined, timeout: number | undefined) =>
    Effect.gen(function*() {
      const tracked = yield* trackedOf(entry)
      const task = tracked?.task
      const status = tracked?.state.status
      if (task === undefined || !(status === "running" || status === "paused")) return false
      const stopSignal = signal || entry.stored.Config.StopSignal || "SIGTERM"
      const seconds = timeout ?? entry.stored.Config.StopTimeout ?? DEFAULT_STOP_TIMEOUT
      if (signalNumber(stopSignal) === undefined) return yield* Effect.fail(badRequest(`invalid signal: ${stopSignal}`))
      const exited = task.wait
      if (seconds !== 0) {
        yield* publish(entry, "kill", { signal: String(signalNumber(stopSignal)) })
        yield* lib(task.kill(stopSignal)).pipe(Effect.catchIf((e) => e.status === 404, () => Effect.void))
      }
      const inTime = seconds < 0 ? yield* Effect.asSome(exited) : yield* Effect.timeoutOption(exited, Duration.seconds(seconds))
      if (Option.isNone(inTime)) {
        yield* publish(entry, "kill", { signal: "9" })
        yield* lib(task.kill("SIGKILL", { all: true })).pipe(Effect.catchIf((e) => e.status === 404, () => Effect.void))
        const killed = yield* Effect.timeoutOption(exited, KILL_GRACE)
        if (Option.isNone(killed)) return yield* Effect.fail(internal(`container ${entry.id} did not exit after SIGKILL`))
      }
      return true
    })

  /** Waits until the monitors have handled the exit (the task deleted), so a start or remove may follow. */
  /** Waits until the engine has handled the last run's exit (the task is deleted): a start may follow. */
  const settled = (entry: Entry) =>
    Effect.suspend(() =>
      entry.handled === undefined ? Effect.void : Effect.asVoid(Effect.timeoutOption(Deferred.await(entry.handled), SETTLE_TIMEOUT))
    )

  const markStopped = (entry: Entry) =>
    Effect.gen(function*() {
      yield* cancelPending(entry)
      if (entry.manuallyStopped) return
      entry.manuallyStopped = true
      // Only policies that restart need to remember it across daemon restarts.
      if (entry.policy.name !== "no") yield* lib(setLabels(entry.id, { [DaemonLabels.stopped]: "true" }))
    })

  const stop: EngineShape["stop"] = (ref, stopOptions) =>
    Effect.gen(function*() {
      const entry = yield* find(ref)
      const wasRestarting = entry.restarting
      yield* markStopped(entry)
      const stopped = yield* stopTask(entry, stopOptions?.signal, stopOptions?.timeout)
      if (!stopped) return { alreadyStopped: !wasRestarting }
      // As dockerd, stopped means cleaned up: a start may follow at once.
      yield* settled(entry)
      yield* publish(entry, "stop")
      return { alreadyStopped: false }
    })

  const restart: EngineShape["restart"] = (ref, restartOptions) =>
    Effect.gen(function*() {
      const entry = yield* find(ref)
      yield* cancelPending(entry)
      const wasStopped = entry.manuallyStopped
      entry.manuallyStopped = true // no policy restart in between, until the exit is handled
      yield* Effect.andThen(stopTask(entry, restartOptions?.signal, restartOptions?.timeout), settled(entry)).pipe(
        Effect.ensuring(Effect.sync(() => void (entry.manuallyStopped = wasStopped)))
      )
      if (entry.manuallyStopped) {
        entry.manuallyStopped = false
        yield* lib(setLabels(entry.id, { [DaemonLabels.stopped]: "" }))
      }
      yield* startTask(entry)
      yield* publish(entry, "restart")
    })

  const kill: EngineShape["kill"] = (ref, signal) =>
    Effect.gen(function*() {
      const entry = yield* find(ref)
      const name = signal || "SIGKILL"
      const number = signalNumber(name)
      if (number === undefined) return yield* Effect.fail(badRequest(`Invalid signal: ${name}`))
      const task = yield* taskOf(entry)
      // As dockerd: killing with the stop signal is a stop, so no policy restart follows.
      if (number === signalNumber(entry.stored.Config.StopSignal || "SIGTERM")) yield* markStopped(entry)
      yield* lib(task.kill(number))
      yield* publish(entry, "kill", { signal: String(number) })
    })

  const pause: EngineShape["pause"] = (ref) =>
    Effect.gen(function*() {
      const entry = yield* find(ref)
      const task = yield* taskOf(entry)
      if (entry.paused) return yield* Effect.fail(conflict(`Container ${entry.id} is already paused`))
      yield* lib(task.pause)
      entry.paused = true
      yield* publish(entry, "pause")
    })

  const unpause: EngineShape["unpause"] = (ref) =>
    Effect.gen(function*() {
      const entry = yield* find(ref)
      const task = yield* taskOf(entry)
      const state = yield* stateOf(entry)
      if (!state.Paused) return yield* Effect.fail(conflict(`Container ${entry.id} is not paused`))
      yield* lib(task.resume)
      entry.paused = false
      yield* publish(entry, "unpause")
    })

  const wait: EngineShape["wait"] = (ref, condition) =>
    Effect.gen(function*() {
      const entry = yield* find(ref)
      // Subscribe before looking, so nothing falls in between.
      const subscription = yield* PubSub.subscribe(notices)
      const state = yield* stateOf(entry)
      const news = Stream.fromSubscription(subscription).pipe(Stream.filter((n) => n.id === entry.id))
      const first = (predicate: (n: Notice) => boolean) =>
        Effect.map(Stream.runHead(Stream.filter(news, predicate)), (n) => ({
          StatusCode: Option.match(n, { onNone: () => state.ExitCode, onSome: (x) => x.code })
        }))
      switch (condition) {
        case "not-running":
          if (!state.Running && !state.Restarting) return Effect.succeed({ StatusCode: state.ExitCode })
          return first((n) => n._tag === "Removed" || !n.restarting)
        case "next-exit":
          return first(() => true)
        case "removed":
          return first((n) => n._tag === "Removed")
      }
    })

  const remove: EngineShape["remove"] = (ref, removeOptions) =>
    Effect.gen(function*() {
      const entry = yield* find(ref)
      if (entry.removing) return yield* Effect.fail(conflict(`removal of container ${entry.id} is already in progress`))
      const running = yield* isRunning(entry)
      if ((running || entry.restarting) && removeOptions?.force !== true) {
        const what = entry.paused ? "paused" : entry.restarting ? "restarting" : "running"
        return yield* Effect.fail(conflict(
          `You cannot remove a ${what} container ${entry.id}. Stop the container before attempting removal or force remove`
        ))
      }
      entry.removing = true
      const current = Fiber.getCurrent()
      yield* Effect.gen(function*() {
        // Not from within the pending fiber itself (an automatic removal runs there).
        const fiber = yield* FiberMap.get(pending, entry.id)
        if (Option.isSome(fiber) && fiber.value !== current) yield* FiberMap.remove(pending, entry.id)
        entry.restarting = false
        if (running) {
          const task = yield* taskOf(entry)
          yield* publish(entry, "kill", { signal: "9" })
          yield* lib(task.kill("SIGKILL", { all: true })).pipe(Effect.catchIf((e) => e.status === 404, () => Effect.void))
          if (Option.isNone(yield* Effect.timeoutOption(task.wait, KILL_GRACE))) {
            return yield* Effect.fail(internal(`container ${entry.id} did not exit after SIGKILL`))
          }
        }
        const code = (yield* stateOf(entry)).ExitCode
        yield* lib(inNamespace(mon.remove(entry.id))).pipe(Effect.catchIf((e) => e.status === 404, () => Effect.void))
        yield* FiberMap.remove(pumps, entry.id)
        // As dockerd removes containers/<id>: the log goes with the container, once
        // its followers (an attached `docker run --rm`) have read it to the end.
        yield* Effect.timeoutOption(entry.unfollowed.await, FOLLOWERS_TIMEOUT)
        yield* removeTree(containerDir(options.logRoot, entry.id))
        for (const exec of execs.values()) if (exec.containerId === entry.id) execs.delete(exec.id)
        yield* unindex(entry)
        yield* publish(entry, "destroy")
        yield* PubSub.publish(notices, { _tag: "Removed", id: entry.id, code })
      }).pipe(Effect.onError(() => Effect.sync(() => void (entry.removing = false))))
    })

  const configJson = (entry: Entry, spec: { process?: { args?: ReadonlyArray<string>; env?: ReadonlyArray<string>; cwd?: string } }) => ({
    Hostname: entry.stored.Config.Hostname || entry.id.slice(0, 12),
    Domainname: "",
    User: entry.stored.Config.User ?? "",
    AttachStdin: entry.stored.Config.AttachStdin ?? false,
    AttachStdout: entry.stored.Config.AttachStdout ?? false,
    AttachStderr: entry.stored.Config.AttachStderr ?? false,
    Tty: entry.stored.Config.Tty ?? false,
    OpenStdin: entry.stored.Config.OpenStdin ?? false,
    StdinOnce: entry.stored.Config.StdinOnce ?? false,
    Env: spec.process?.env ?? entry.stored.Config.Env ?? [],
    Cmd: argv(entry.stored.Config.Cmd) ?? null,
    Entrypoint: argv(entry.stored.Config.Entrypoint) ?? null,
    Image: entry.stored.Image,
    WorkingDir: entry.stored.Config.WorkingDir ?? "",
    Labels: entry.stored.Config.Labels ?? {},
    ...(entry.stored.Config.StopSignal ? { StopSignal: entry.stored.Config.StopSignal } : {}),
    ...(entry.stored.Config.StopTimeout !== undefined && entry.stored.Config.StopTimeout !== null
      ? { StopTimeout: entry.stored.Config.StopTimeout }
      : {})
  })

  const hostConfigJson = (entry: Entry) => {
    const host = entry.stored.HostConfig
    return {
      Binds: host.Binds ?? null,
      NetworkMode: host.NetworkMode || "default",
      RestartPolicy: { Name: entry.policy.name, MaximumRetryCount: entry.policy.max },
      AutoRemove: host.AutoRemove ?? false,
      ReadonlyRootfs: host.ReadonlyRootfs ?? false,
      Tmpfs: host.Tmpfs ?? null,
      Memory: host.Memory ?? 0,
      CpuShares: host.CpuShares ?? 0,
      Privileged: false,
      Runtime: host.Runtime || "runc",
      LogConfig: { Type: "none", Config: {} }
    }
  }

  const specOf = (entry: Entry) =>
    Effect.map(trackedOf(entry), (t) => (t?.container?.info.spec ?? {}) as { process?: { args?: ReadonlyArray<string> } })

  const inspect: EngineShape["inspect"] = (ref) =>
    Effect.gen(function*() {
      const entry = yield* find(ref)
      const state = yield* stateOf(entry)
      const spec = yield* specOf(entry)
      const args = spec.process?.args ?? []
      const host = entry.stored.HostConfig
      return {
        Id: entry.id,
        Created: entry.stored.Created,
        Path: args[0] ?? "",
        Args: args.slice(1),
        State: state,
        Image: entry.stored.ImageId,
        Name: `/${entry.name}`,
        RestartCount: entry.restartCount,
        Driver: "overlayfs",
        Platform: "linux",
        HostConfig: hostConfigJson(entry),
        Config: configJson(entry, spec),
        Mounts: [
          ...(host.Binds ?? []).map((bind) => {
            const [source = "", destination = "", mode = ""] = bind.split(":")
            return { Type: "bind", Source: source, Destination: destination, Mode: mode, RW: !mode.split(",").includes("ro"), Propagation: "rprivate" }
          }),
          ...Object.keys(host.Tmpfs ?? {}).map((destination) => ({ Type: "tmpfs", Source: "", Destination: destination, Mode: "", RW: true, Propagation: "" }))
        ],
        NetworkSettings: { Networks: {}, Ports: {}, IPAddress: "", Gateway: "", MacAddress: "" }
      } satisfies ContainerInspectJson
    })

  const statusText = (state: ContainerStateJson, now: number): string => {
    switch (state.Status) {
      case "running":
        return `Up ${humanDuration(now - Date.parse(state.StartedAt))}`
      case "paused":
        return `Up ${humanDuration(now - Date.parse(state.StartedAt))} (Paused)`
      case "restarting":
        return `Restarting (${state.ExitCode}) ${humanDuration(now - Date.parse(state.FinishedAt))} ago`
      case "exited":
        return state.FinishedAt === ZERO_TIME ? `Exited (${state.ExitCode})` : `Exited (${state.ExitCode}) ${humanDuration(now - Date.parse(state.FinishedAt))} ago`
      case "removing":
        return "Removal In Progress"
      case "dead":
        return "Dead"
      case "created":
        return "Created"
    }
  }

  const list: EngineShape["list"] = (listOptions) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const filters = listOptions.filters ?? {}
      const anyOf = (key: string, test: (value: string) => boolean) => {
        const values = filters[key]
        return values === undefined || values.length === 0 || values.some(test)
      }
      for (const status of filters.status ?? []) {
        if (!["created", "restarting", "running", "removing", "paused", "exited", "dead"].includes(status)) {
          return yield* Effect.fail(badRequest(`invalid filter 'status=${status}'`))
        }
      }
      // Names match as regular expressions (dockerd's name filter); a malformed one is the client's error.
      const namePatterns: Array<RegExp> = []
      for (const pattern of filters.name ?? []) {
        const compiled = Result.try({ try: () => new RegExp(pattern), catch: () => pattern })
        if (Result.isFailure(compiled)) return yield* Effect.fail(badRequest(`invalid filter 'name=${pattern}': not a regular expression`))
        namePatterns.push(compiled.success)
      }
      const rows = yield* Effect.forEach([...byId.values()], (entry) =>
        Effect.gen(function*() {
          const state = yield* stateOf(entry)
          const spec = yield* specOf(entry)
          return { entry, state, spec }
        }))
      const all = listOptions.all === true || (filters.status?.length ?? 0) > 0
      const selected = rows
        .filter(({ entry, state }) =>
          (all || state.Running) &&
          anyOf("status", (v) => v === state.Status) &&
          anyOf("id", (v) => entry.id.startsWith(v)) &&
          (namePatterns.length === 0 || namePatterns.some((pattern) => pattern.test(entry.name))) &&
          anyOf("label", (v) => {
            const labels = entry.stored.Config.Labels ?? {}
            const eq = v.indexOf("=")
            return eq === -1 ? v in labels : labels[v.slice(0, eq)] === v.slice(eq + 1)
          }))
        .sort((a, b) => b.entry.stored.Created.localeCompare(a.entry.stored.Created))
      const limited = listOptions.limit !== undefined && listOptions.limit > 0 ? selected.slice(0, listOptions.limit) : selected
      return limited.map(({ entry, spec, state }): ContainerSummaryJson => ({
        Id: entry.id,
        Names: [`/${entry.name}`],
        Image: entry.stored.Image,
        ImageID: entry.stored.ImageId,
        Command: (spec.process?.args ?? []).join(" "),
        Created: Math.floor(Date.parse(entry.stored.Created) / 1000),
        State: state.Status,
        Status: statusText(state, now),
        Labels: entry.stored.Config.Labels ?? {},
        Ports: [],
        Mounts: [],
        HostConfig: { NetworkMode: entry.stored.HostConfig.NetworkMode || "default" },
        NetworkSettings: { Networks: {} }
      }))
    })

  const top: EngineShape["top"] = (ref) =>
    Effect.gen(function*() {
      const entry = yield* find(ref)
      const task = yield* taskOf(entry)
      const pids = yield* lib(task.pids)
      const processes = pids.flatMap((pid) => {
        const read = (file: string) => {
          try {
            return fs.readFileSync(`/proc/${pid}/${file}`, "utf8")
          } catch {
            return undefined
          }
        }
        const status = read("status")
        const stat = read("stat")
        const cmdline = read("cmdline")
        if (status === undefined || stat === undefined) return []
        const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1] ?? ""
        const ppid = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1] ?? ""
        const cmd = (cmdline ?? "").split("\0").filter((a) => a !== "").join(" ")
        return [[uid, String(pid), ppid, cmd]]
      })
      return { Titles: ["UID", "PID", "PPID", "CMD"], Processes: processes }
    })

  const attach: EngineShape["attach"] = (ref, attachOptions) =>
    Effect.gen(function*() {
      const entry = yield* find(ref)
      const tty = entry.stored.Config.Tty === true
      const wanted = (stream: "stdout" | "stderr") => stream === "stdout" ? attachOptions.stdout : attachOptions.stderr
      // Subscribe first, so nothing between the replay and now is missed.
      const subscription = attachOptions.stream ? yield* PubSub.subscribe(entry.output) : undefined
      const replay = attachOptions.logs
        ? readLogs({ path: logPathOf(entry), stdout: attachOptions.stdout, stderr: attachOptions.stderr }).pipe(
          Stream.map((e) => ({ stream: e.stream, data: e.log })),
          Stream.catch(() => Stream.empty)
        )
        : Stream.empty
      // A shim-logged container's output is its log file: one reader, from now (or, with
      // `logs`, from the start), followed to the end of the run, so nothing comes twice.
      const output = subscription !== undefined && shimLogged(entry)
        ? Stream.unwrap(Effect.map(
          followLog(entry, {
            stdout: attachOptions.stdout,
            stderr: attachOptions.stderr,
            since: attachOptions.logs ? undefined : yield* Clock.currentTimeMillis
          }, subscription),
          (entries) => entries.pipe(Stream.map((e) => ({ stream: e.stream, data: e.log })), Stream.catch(() => Stream.empty))
        ))
        : Stream.concat(
          replay,
          subscription === undefined ? Stream.empty : Stream.fromSubscription(subscription).pipe(
            Stream.takeWhile((event) => event._tag !== "End"),
            Stream.filterMap((event) =>
              event._tag === "Output" && wanted(event.stream)
                ? Result.succeed({ stream: event.stream, data: event.data })
                : Result.failVoid
            )
          )
        )
      const input = attachOptions.stdin && attachOptions.stream && entry.stored.Config.OpenStdin === true
        ? yield* inputOf(entry)
        : undefined
      return {
        tty,
        output,
        write: input === undefined ? undefined : (data: Uint8Array) => Effect.asVoid(Queue.offer(input, data)),
        endInput: input !== undefined && entry.stored.Config.StdinOnce === true ? Effect.asVoid(Queue.end(input)) : Effect.void
      } satisfies AttachSession
    })

  /**
   * The container's log file, read; given a `subscription` to its output (which
   * the caller took before looking, so the end cannot slip past), followed until
   * its current or next run's output has ended: the `End` on it.
   */
  const followLog = (
    entry: Entry,
    read: Omit<Parameters<typeof readLogs>[0], "path" | "done" | "follow">,
    subscription?: PubSub.Subscription<OutputEvent>
  ) =>
    Effect.gen(function*() {
      const end = yield* Deferred.make<void>()
      if (subscription !== undefined) {
        yield* Effect.forkScoped(
          Stream.fromSubscription(subscription).pipe(
            Stream.takeUntil((event) => event._tag === "End"),
            Stream.runDrain,
            Effect.andThen(Deferred.succeed(end, undefined))
          )
        )
      }
      // Counted while it runs, not before: a stream nobody runs must not hold up a removal.
      return Stream.unwrap(Effect.sync(() => {
        if (entry.followers++ === 0) entry.unfollowed.closeUnsafe()
        return readLogs({ ...read, follow: subscription !== undefined, path: logPathOf(entry), done: Deferred.await(end) }).pipe(
          Stream.ensuring(Effect.sync(() => {
            if (--entry.followers === 0) entry.unfollowed.openUnsafe()
          }))
        )
      }))
    })

  const logs: EngineShape["logs"] = (ref, logsOptions) =>
    Effect.map(find(ref), (entry) => ({
      tty: entry.stored.Config.Tty === true,
      entries: Stream.unwrap(Effect.gen(function*() {
        // Only a follower listens for the run's end; a plain read buffers nothing of the live output.
        const subscription = logsOptions.follow === true && entry.streaming ? yield* PubSub.subscribe(entry.output) : undefined
        const entries = yield* followLog(entry, logsOptions, subscription)
        return Stream.mapError(entries, (error) => internal(`reading the log of ${entry.id} failed: ${error.message}`, error))
      }))
    }))

  const resize: EngineShape["resize"] = (ref, height, width) =>
    Effect.gen(function*() {
      const entry = yield* find(ref)
      const task = yield* taskOf(entry)
      yield* lib(task.resize(width, height))
    })

  const execs = new Map<string, ExecEntry>()
  // As dockerd's execCommandGC: an exec that exited more than 5 minutes ago is
  // forgotten, so a long-lived container's execs do not pile up.
  const execRetention = Duration.toMillis(Duration.fromInputUnsafe(options.execRetention ?? EXEC_RETENTION))
  yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
    yield* Effect.sleep(Duration.millis(execRetention / 5))
    const now = yield* Clock.currentTimeMillis
    for (const exec of execs.values()) {
      if (exec.exitedAt !== undefined && now - exec.exitedAt > execRetention) execs.delete(exec.id)
    }
  })))
  /** Exec processes live in the engine's scope, each in a child scope closed when it is deleted. */
  const engineScope = yield* Effect.scope

  const findExec = (execId: string) =>
    Effect.suspend(() => {
      const exec = execs.get(execId)
      return exec === undefined ? Effect.fail(notFound(`No such exec instance: ${execId}`)) : Effect.succeed(exec)
    })

  const execCreate: EngineShape["execCreate"] = (ref, config) =>
    Effect.gen(function*() {
      const entry = yield* find(ref)
      const state = yield* stateOf(entry)
      if (!state.Running) return yield* Effect.fail(conflict(`Container ${entry.id} is not running`))
      if (state.Paused) return yield* Effect.fail(conflict(`Container ${entry.id} is paused, unpause the container before exec`))
      if (config.Cmd === undefined || config.Cmd === null || config.Cmd.length === 0) {
        return yield* Effect.fail(badRequest("No exec command specified"))
      }
      if (config.Privileged === true) return yield* Effect.fail(badRequest("privileged execs are not supported"))
      const id = crypto.randomBytes(32).toString("hex")
      execs.set(id, {
        id,
        containerId: entry.id,
        config,
        started: false,
        exitCode: undefined,
        exitedAt: undefined,
        pid: 0,
        process: undefined,
        exited: yield* Deferred.make<number>()
      })
      yield* publish(entry, `exec_create: ${config.Cmd.join(" ")}`, { execID: id })
      return { Id: id }
    })

  const execStart: EngineShape["execStart"] = (execId, startOptions) =>
    Effect.gen(function*() {
      const exec = yield* findExec(execId)
      if (exec.started) return yield* Effect.fail(conflict(`exec ${execId} has already been started`))
      const entry = yield* find(exec.containerId)
      const task = yield* taskOf(entry)
      if (entry.paused) return yield* Effect.fail(conflict(`Container ${entry.id} is paused, unpause the container before exec`))
      exec.started = true
      const { config } = exec
      const attached = !startOptions.detach
      const withStdin = attached && config.AttachStdin === true
      const tty = config.Tty === true
      const scope = yield* Scope.fork(engineScope)
      const process = yield* lib(task.exec(execId, {
        args: config.Cmd ?? [],
        env: config.Env ?? undefined,
        workingDir: config.WorkingDir || undefined,
        user: config.User || undefined,
        tty,
        stdio: attached ? Stdio.pipe({ stdin: withStdin }) : Stdio.null
      })).pipe(Scope.provide(scope), Effect.onError(() => Scope.close(scope, Exit.void)))
      // One reader (the client), so a queue, ended with the output (or with the exec's scope).
      const output = yield* Queue.unbounded<{ readonly stream: "stdout" | "stderr"; readonly data: Uint8Array }, Cause.Done>()
      yield* Scope.addFinalizer(scope, Queue.end(output))
      const input = withStdin ? yield* Queue.unbounded<Uint8Array, Cause.Done>() : undefined
      if (attached) {
        const forward = (stream: "stdout" | "stderr", source: Stream.Stream<Uint8Array, ContainerdError>) =>
          Stream.runForEach(source, (data) => Queue.offer(output, { stream, data })).pipe(Effect.ignore)
        yield* Effect.forkIn(
          Effect.all([forward("stdout", process.stdout), forward("stderr", process.stderr)], { concurrency: 2, discard: true }).pipe(
            Effect.andThen(Queue.end(output))
          ),
          scope
        )
        if (input !== undefined) yield* Effect.forkIn(feedStdin(process, input), scope)
      }
      yield* lib(process.start).pipe(Effect.onError(() => Scope.close(scope, Exit.void)))
      exec.process = process
      exec.pid = process.pid
      yield* publish(entry, `exec_start: ${(config.Cmd ?? []).join(" ")}`, { execID: execId })
      // The exit comes from the hub; then the process is deleted and its scope closed.
      yield* Effect.forkIn(
        Effect.gen(function*() {
          const status = yield* process.wait
          yield* process.delete.pipe(Effect.ignore)
          exec.exitCode = status.code
          exec.exitedAt = yield* Clock.currentTimeMillis
          exec.process = undefined
          yield* publish(entry, "exec_die", { execID: execId, exitCode: String(status.code) })
          yield* Deferred.succeed(exec.exited, status.code)
          yield* Scope.close(scope, Exit.void)
        }),
        engineScope
      )
      const session: AttachSession = {
        tty,
        output: attached ? Stream.fromQueue(output) : Stream.empty,
        write: input === undefined ? undefined : (data) => Effect.asVoid(Queue.offer(input, data)),
        endInput: input === undefined ? Effect.void : Effect.asVoid(Queue.end(input))
      }
      return { session, exited: Deferred.await(exec.exited) }
    })

  const execResize: EngineShape["execResize"] = (execId, height, width) =>
    Effect.gen(function*() {
      const exec = yield* findExec(execId)
      if (exec.process === undefined) return yield* Effect.fail(conflict(`exec ${execId} is not running`))
      yield* lib(exec.process.resize(width, height))
    })

  const execInspect: EngineShape["execInspect"] = (execId) =>
    Effect.map(findExec(execId), (exec) => ({
      ID: exec.id,
      ContainerID: exec.containerId,
      Running: exec.process !== undefined,
      ExitCode: exec.exitCode ?? null,
      Pid: exec.pid,
      OpenStdin: exec.config.AttachStdin === true,
      OpenStdout: exec.config.AttachStdout === true,
      OpenStderr: exec.config.AttachStderr === true,
      CanRemove: false,
      DetachKeys: exec.config.DetachKeys ?? "",
      ProcessConfig: {
        tty: exec.config.Tty === true,
        entrypoint: exec.config.Cmd?.[0] ?? "",
        arguments: exec.config.Cmd?.slice(1) ?? [],
        privileged: false,
        user: exec.config.User ?? ""
      }
    }))

  const counts: EngineShape["counts"] = Effect.gen(function*() {
    const states = yield* Effect.forEach([...byId.values()], stateOf)
    const paused = states.filter((s) => s.Paused).length
    const running = states.filter((s) => s.Running && !s.Paused).length
    return { total: states.length, running, paused, stopped: states.length - running - paused }
  })

  // At start, as dockerd's restore: containers whose policy says so run again,
  // and leftovers of automatic removal go.
  yield* Effect.forEach([...byId.values()], (entry) =>
    Effect.gen(function*() {
      const state = yield* stateOf(entry)
      // An exit still to be handled here (running, or stopped with its task not yet
      // deleted by recovery): starts wait for it.
      if (state.Running || (yield* trackedOf(entry))?.task !== undefined) entry.handled = yield* Deferred.make<void>()
      // A shim-logged container's log is still being written: `logs -f` follows it to its end.
      if (state.Running && shimLogged(entry)) entry.streaming = true
      if (state.Running || entry.removing || entry.restarting) return
      // As dockerd's restore: every --rm container not running goes (its exit is not recorded).
      if (entry.stored.HostConfig.AutoRemove === true) {
        return yield* schedule(entry, remove(entry.id, { force: false }), "remove")
      }
      if ((entry.policy.name === "always" || entry.policy.name === "unless-stopped") && !entry.manuallyStopped && state.Status !== "created") {
        yield* schedule(entry, Effect.andThen(settled(entry), startTask(entry)), "restore")
      }
    }), { discard: true })
  yield* Deferred.succeed(ready, undefined)

  return Engine.of({
    create,
    start,
    stop,
    restart,
    kill,
    pause,
    unpause,
    wait,
    remove,
    inspect,
    list,
    top,
    attach,
    logs,
    resize,
    execCreate,
    execStart,
    execResize,
    execInspect,
    counts
  })
})

/** The engine, with its monitors, over the library's services. */
export const engineLayer = (
  options: EngineOptions
): Layer.Layer<Engine, never, Containerd | Runtime | Events | Images | EventLog | BackoffQueue> =>
  Layer.effect(Engine, makeEngine(options))
