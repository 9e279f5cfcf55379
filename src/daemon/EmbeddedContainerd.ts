/**
 * The daemon's own containerd: written config, started, supervised, stopped.
 *
 * Mirrors dockerd's `libcontainerd/supervisor`: a containerd private to the
 * daemon, with everything under `<dataRoot>/containerd/` — `config.toml`,
 * `root/`, `state/`, `containerd.sock`, `containerd.log` (stdout and stderr,
 * appended) and `containerd.pid`. A fiber in the caller's scope watches the
 * process and restarts it when it dies, on a `Schedule` (100 ms doubling to
 * 5 s), at most `maxRestarts` times in a row; a restart count is forgiven once
 * containerd has served for `restartWindow`. When the supervisor gives up it
 * logs an error and fails `join`, so the daemon can exit.
 *
 * Closing the scope stops containerd (SIGTERM, SIGKILL after `stopTimeout`) and
 * removes its sockets and pid file. Only containerd's own PID is signalled:
 * the runc shims it started run in sessions of their own and keep running, so
 * containers survive a restart of the daemon (dockerd's live-restore), and the
 * next containerd on the same state reconnects to them.
 *
 * Gotchas:
 * - A unix socket path is at most 107 bytes, and containerd adds `.ttrpc` for
 *   its ttrpc socket, so `<dataRoot>/containerd/containerd.sock` must fit in 101.
 *   A longer data root is rejected before anything is written.
 * - A containerd left running by a previous run of ours (the daemon was killed
 *   before it could stop it) is adopted, as dockerd does: the pid file names a
 *   live `containerd --config <our config.toml>`. It keeps the configuration it
 *   was started with; it is watched by polling its PID (it is not our child),
 *   and stopped or restarted like one we started. If it does not serve within
 *   `startTimeout` it is stopped and a fresh one started.
 * - Anything else listening on our socket fails the start with `AddressInUse`:
 *   containerd would unlink a live socket and take it over. A socket file that
 *   nobody listens on (left by a crash) is removed.
 * - stdout and stderr are the log file itself, not pipes, so a containerd that
 *   outlives the daemon never dies of a closed pipe.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { Clock, Deferred, Duration, Effect, Exit, Option, Pull, Result, Schedule, Schema, type Scope } from "effect"
import { removeFile } from "../internal/Files.ts"
import { probeSocket } from "../internal/UnixSocket.ts"
import { Containerd } from "../services/Containerd.ts"

/** Why the embedded containerd could not be set up, started or kept running. */
export class EmbeddedContainerdError extends Schema.TaggedError<EmbeddedContainerdError>()("EmbeddedContainerdError", {
  reason: Schema.Literals(["InvalidOptions", "AddressInUse", "StartFailed", "GaveUp"]),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/** Plugins neither the daemon nor the tests use: CRI, the snapshotters besides overlayfs and native, tracing. */
export const DISABLED_PLUGINS: ReadonlyArray<string> = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"
]

/** The longest unix socket path Linux accepts (`sun_path` is 108 bytes with its NUL). */
export const MAX_SOCKET_PATH_BYTES = 107

/** containerd's log levels (`[debug] level`). */
export type ContainerdLogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "panic"

/** What a containerd config.toml says. */
export interface ContainerdConfig {
  readonly root: string
  readonly state: string
  /** The gRPC socket path; containerd puts its ttrpc socket at `<address>.ttrpc`. */
  readonly address: string
  readonly logLevel?: ContainerdLogLevel | undefined
  /** Defaults to `DISABLED_PLUGINS`. */
  readonly disabledPlugins?: ReadonlyArray<string> | undefined
}

// A JSON string is a valid TOML basic string (same escapes, `\uXXXX` included).
const tomlString = (value: string): string => JSON.stringify(value)

/** A version 2 containerd config.toml. */
export const containerdConfigToml = (config: ContainerdConfig): string =>
  [
    `version = 2`,
    `root = ${tomlString(config.root)}`,
    `state = ${tomlString(config.state)}`,
    `disabled_plugins = [${(config.disabledPlugins ?? DISABLED_PLUGINS).map(tomlString).join(", ")}]`,
    ``,
    `[grpc]`,
    `  address = ${tomlString(config.address)}`,
    ``,
    ...(config.logLevel === undefined ? [] : [`[debug]`, `  level = ${tomlString(config.logLevel)}`, ``])
  ].join("\n")

/** How to run the embedded containerd. */
export interface EmbeddedContainerdOptions {
  /** The daemon's data root; containerd's files go under `<dataRoot>/containerd/`. */
  readonly dataRoot: string
  readonly logLevel?: ContainerdLogLevel | undefined
  /** The containerd executable; defaults to `containerd` on the PATH. */
  readonly binary?: string | undefined
  /** How long containerd may take to serve `Version` after a start; defaults to 30 s. */
  readonly startTimeout?: Duration.Input | undefined
  /** How long containerd may take to exit after SIGTERM before it is SIGKILLed; defaults to 10 s. */
  readonly stopTimeout?: Duration.Input | undefined
  /** Restarts in a row before the supervisor gives up; defaults to 5. */
  readonly maxRestarts?: number | undefined
  /** How long containerd must serve for its restart count to be forgiven; defaults to 1 minute. */
  readonly restartWindow?: Duration.Input | undefined
}

/** A running, supervised containerd. */
export interface EmbeddedContainerd {
  /** The gRPC socket path, for `Containerd.layer({ address })`. */
  readonly address: string
  readonly root: string
  readonly state: string
  readonly configFile: string
  readonly logFile: string
  /** The PID of the containerd serving now; `undefined` while it is being restarted (until it serves again). */
  readonly pid: () => number | undefined
  /** How many times the supervisor has restarted containerd. */
  readonly restarts: () => number
  /** Fails with the supervisor's `GaveUp` error; never succeeds while the scope is open. */
  readonly join: Effect.Effect<never, EmbeddedContainerdError>
}

/** One containerd process: our child, or adopted from a previous run. */
interface Daemon {
  readonly pid: number
  /** Completes when the process has exited, saying how. */
  readonly exited: Effect.Effect<string>
  readonly kill: (signal: NodeJS.Signals) => void
}

interface Paths {
  readonly dir: string
  readonly config: string
  readonly root: string
  readonly state: string
  readonly address: string
  readonly log: string
  readonly pidFile: string
}

const fail = (reason: EmbeddedContainerdError["reason"], message: string, cause?: unknown) =>
  Effect.fail(new EmbeddedContainerdError({ reason, message, ...(cause === undefined ? {} : { cause }) }))

const pathsOf = (dataRoot: string): Effect.Effect<Paths, EmbeddedContainerdError> => {
  const dir = path.join(path.resolve(dataRoot), "containerd")
  const address = path.join(dir, "containerd.sock")
  const limit = MAX_SOCKET_PATH_BYTES - ".ttrpc".length
  const bytes = Buffer.byteLength(address)
  if (bytes > limit) {
    return fail(
      "InvalidOptions",
      `containerd's socket ${address} would be ${bytes} bytes long; unix socket paths are limited to ` +
        `${MAX_SOCKET_PATH_BYTES} bytes and containerd adds ".ttrpc" for its ttrpc socket, so at most ${limit}: ` +
        `choose a data root of at most ${limit - (bytes - Buffer.byteLength(path.resolve(dataRoot)))} bytes`
    )
  }
  return Effect.succeed({
    dir,
    config: path.join(dir, "config.toml"),
    root: path.join(dir, "root"),
    state: path.join(dir, "state"),
    address,
    log: path.join(dir, "containerd.log"),
    pidFile: path.join(dir, "containerd.pid")
  })
}

/** Whether a PID names a live, non-zombie process. */
const isAlive = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // The state follows the parenthesised command name, which may contain spaces.
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    return false
  }
}

const fileSize = (file: string): number => {
  try {
    return fs.statSync(file).size
  } catch {
    return 0
  }
}

/** The whole lines appended to the log since `offset`, at most its last 2 KiB. */
const logSince = (file: string, offset: number): string => {
  try {
    const fd = fs.openSync(file, "r")
    try {
      const size = fs.fstatSync(fd).size
      const start = Math.max(offset, size - 2048, 0)
      const buffer = Buffer.alloc(Math.max(size - start, 0))
      fs.readSync(fd, buffer, 0, buffer.length, start)
      const text = buffer.toString("utf8")
      return (start > offset ? text.slice(text.indexOf("\n") + 1) : text).trim()
    } finally {
      fs.closeSync(fd)
    }
  } catch {
    return ""
  }
}

/** Starts `containerd --config <config>` with its output appended to the log. */
const spawnDaemon = (binary: string, paths: Paths): Effect.Effect<Daemon, EmbeddedContainerdError> =>
  Effect.try({
    try: () => {
      const log = fs.openSync(paths.log, "a")
      try {
        // A session of its own (as dockerd's supervisor): a Ctrl-C meant for the
        // daemon must not reach containerd, which the daemon stops in order itself.
        const child = spawn(binary, ["--config", paths.config], { stdio: ["ignore", log, log], detached: true })
        const exited = Deferred.makeUnsafe<string>()
        child.once("exit", (code, signal) =>
          Deferred.doneUnsafe(exited, Exit.succeed(signal === null ? `exited with code ${code}` : `was killed by ${signal}`)))
        // Also keeps a failed spawn (ENOENT, EACCES) from being an unhandled 'error' event.
        child.on("error", (error) => Deferred.doneUnsafe(exited, Exit.succeed(`could not be run: ${error.message}`)))
        return { child, exited }
      } finally {
        fs.closeSync(log)
      }
    },
    catch: (cause) => new EmbeddedContainerdError({ reason: "StartFailed", message: `could not spawn ${binary}`, cause })
  }).pipe(Effect.flatMap(({ child, exited }) =>
    child.pid === undefined
      ? Effect.flatMap(Deferred.await(exited), (how) => fail("StartFailed", `${binary} ${how}`))
      : Effect.succeed<Daemon>({
        pid: child.pid,
        exited: Deferred.await(exited),
        // Through the ChildProcess, which never signals a PID it has already reaped.
        kill: (signal) => void child.kill(signal)
      })
  ))

/** The containerd our pid file names, if it is still alive and running on our config. */
const adoptable = (paths: Paths): Daemon | undefined => {
  let pid: number
  let argv: Array<string>
  try {
    pid = Number(fs.readFileSync(paths.pidFile, "utf8").trim())
    if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined
    argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")
  } catch {
    return undefined
  }
  const config = argv.indexOf("--config")
  if (path.basename(argv[0] ?? "") !== "containerd" || config < 0 || argv[config + 1] !== paths.config) return undefined
  return {
    pid,
    // Not our child: no exit event, so poll.
    exited: Effect.sync(() => isAlive(pid)).pipe(
      Effect.repeat({ schedule: Schedule.spaced("100 millis"), while: (alive) => alive }),
      Effect.as("exited")
    ),
    kill: (signal) => {
      if (!isAlive(pid)) return
      try {
        process.kill(pid, signal)
      } catch {
        // Exited in between.
      }
    }
  }
}

/** Restart delays: 100 ms doubling, at most 5 s apart, at most `times` restarts. */
const restartSchedule = (times: number): Schedule.Schedule<unknown> =>
  Schedule.min([Schedule.exponential("100 millis"), Schedule.spaced("5 seconds")]).pipe(Schedule.upTo({ times }))

/**
 * Starts containerd under `<dataRoot>/containerd/` (or adopts the one a previous
 * run left), waits until it serves `Version`, and supervises it until the scope
 * closes, which stops it but not its shims.
 */
export const embeddedContainerd = Effect.fn("EmbeddedContainerd.start")(function*(
  options: EmbeddedContainerdOptions
): Effect.fn.Return<EmbeddedContainerd, EmbeddedContainerdError, Scope.Scope> {
  const paths = yield* pathsOf(options.dataRoot)
  const binary = options.binary ?? "containerd"
  const startTimeout = Duration.fromInputUnsafe(options.startTimeout ?? "30 seconds")
  const stopTimeout = Duration.fromInputUnsafe(options.stopTimeout ?? "10 seconds")
  const restartWindow = Duration.fromInputUnsafe(options.restartWindow ?? "1 minute")
  const maxRestarts = options.maxRestarts ?? 5
  if (!Number.isInteger(maxRestarts) || maxRestarts < 0) {
    return yield* fail("InvalidOptions", `maxRestarts must be a non-negative integer, not ${maxRestarts}`)
  }

  yield* Effect.try({
    try: () => {
      for (const dir of [paths.dir, paths.root, paths.state]) fs.mkdirSync(dir, { recursive: true, mode: 0o711 })
      fs.writeFileSync(
        paths.config,
        containerdConfigToml({ root: paths.root, state: paths.state, address: paths.address, logLevel: options.logLevel })
      )
    },
    catch: (cause) => new EmbeddedContainerdError({ reason: "StartFailed", message: `could not write ${paths.config}`, cause })
  })

  let current: Daemon | undefined
  // Whether `current` has served `Version` since it was started or adopted.
  let serving = false
  let owned = false
  let stopping = false
  let restarts = 0
  let servingSince = 0
  const gaveUp = yield* Deferred.make<never, EmbeddedContainerdError>()

  const stop = Effect.fn("EmbeddedContainerd.stop")(function*(daemon: Daemon) {
    yield* Effect.sync(() => daemon.kill("SIGTERM"))
    if (Option.isNone(yield* Effect.timeoutOption(daemon.exited, stopTimeout))) {
      yield* Effect.logWarning(`containerd (pid ${daemon.pid}) did not exit within ${Duration.format(stopTimeout)} of SIGTERM; killing it`)
      yield* Effect.sync(() => daemon.kill("SIGKILL"))
      yield* Effect.timeoutOption(daemon.exited, "5 seconds")
    }
  })

  /** Waits until `daemon` serves `Version`; if it does not in time, stops it and removes its pid file. */
  const awaitServing = Effect.fn("EmbeddedContainerd.awaitServing")(function*(daemon: Daemon, logOffset: number) {
    const ping = Containerd.use((client) => client.version.version({}, { timeout: "1 second" })).pipe(
      Effect.provide(Containerd.layer({ address: paths.address }))
    )
    const failure = (what: string) =>
      new EmbeddedContainerdError({
        reason: "StartFailed",
        message: `containerd (pid ${daemon.pid}) ${what}; the tail of ${paths.log}:\n${logSince(paths.log, logOffset)}`
      })
    yield* ping.pipe(
      Effect.retry(Schedule.spaced("50 millis")),
      Effect.orDie, // retried forever: only the timeout or the exit below ends it
      Effect.raceFirst(Effect.flatMap(daemon.exited, (how) => Effect.fail(failure(`${how} before serving`)))),
      Effect.timeoutOrElse({
        duration: startTimeout,
        orElse: () => Effect.fail(failure(`did not serve within ${Duration.format(startTimeout)}`))
      }),
      Effect.tapError(() => Effect.andThen(stop(daemon), removeFile(paths.pidFile)))
    )
    servingSince = yield* Clock.currentTimeMillis
    serving = true
  })

  /** Spawns containerd, records it (at once, so the finalizer sees it), and waits until it serves. */
  const start = Effect.fn("EmbeddedContainerd.spawn")(function*() {
    const logOffset = fileSize(paths.log)
    const daemon = yield* Effect.uninterruptible(spawnDaemon(binary, paths).pipe(
      Effect.tap((daemon) =>
        Effect.sync(() => {
          current = daemon
          owned = true
          fs.writeFileSync(paths.pidFile, `${daemon.pid}\n`)
        })
      )
    ))
    yield* awaitServing(daemon, logOffset)
    yield* Effect.logInfo(`containerd (pid ${daemon.pid}) serves ${paths.address}`)
  })

  // Added before anything starts, so that a start interrupted half-way is stopped too.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      stopping = true
      if (current !== undefined) yield* stop(current)
      current = undefined
      serving = false
      if (owned) {
        for (const file of [paths.address, `${paths.address}.ttrpc`, paths.pidFile]) yield* removeFile(file)
      }
    })
  )

  const adopted = adoptable(paths)
  if (adopted !== undefined) {
    current = adopted
    owned = true
    const served = yield* Effect.exit(awaitServing(adopted, fileSize(paths.log)))
    if (served._tag === "Success") {
      yield* Effect.logInfo(`adopted containerd (pid ${adopted.pid}) left running by a previous run`)
    } else {
      yield* Effect.logWarning(`containerd (pid ${adopted.pid}) left by a previous run does not serve; starting a new one`, served.cause)
      current = undefined
    }
  }
  if (current === undefined) {
    const socket = yield* probeSocket(paths.address)
    if (socket === "listening") {
      return yield* fail(
        "AddressInUse",
        `a process not started by this daemon already listens on ${paths.address}; stop it or use another data root`
      )
    }
    if (socket === "other") return yield* fail("AddressInUse", `${paths.address} exists and is not a socket`)
    if (socket === "stale") yield* removeFile(paths.address)
    yield* start()
  }

  /** Waits for containerd to die, then restarts it; returns only when giving up (or stopping). */
  const supervise = Effect.gen(function*() {
    let step = yield* Schedule.toStepWithSleep(restartSchedule(maxRestarts))
    let inRow = 0
    while (true) {
      const daemon = current
      if (daemon === undefined) return
      let how = yield* daemon.exited
      if (stopping) return
      current = undefined
      serving = false
      const uptime = (yield* Clock.currentTimeMillis) - servingSince
      if (uptime >= Duration.toMillis(restartWindow)) {
        step = yield* Schedule.toStepWithSleep(restartSchedule(maxRestarts))
        inRow = 0
      }
      while (current === undefined) {
        const exhausted = yield* step(undefined).pipe(Effect.as(false), Pull.catchDone(() => Effect.succeed(true)))
        if (exhausted) {
          return yield* fail(
            "GaveUp",
            `containerd (pid ${daemon.pid}) ${how} after ${inRow} restart(s) in a row; giving up`
          )
        }
        inRow += 1
        restarts += 1
        yield* Effect.logWarning(`containerd (pid ${daemon.pid}) ${how}; restarting it (${inRow} of at most ${maxRestarts} in a row)`)
        const restarted = yield* Effect.result(start())
        if (Result.isFailure(restarted)) {
          how = `could not be restarted: ${restarted.failure.message}`
          current = undefined
        }
      }
    }
  })
  yield* supervise.pipe(
    Effect.tapError((error) => Effect.logError(error.message)),
    Effect.catch((error) => Deferred.fail(gaveUp, error)),
    Effect.forkScoped
  )

  return {
    address: paths.address,
    root: paths.root,
    state: paths.state,
    configFile: paths.config,
    logFile: paths.log,
    pid: () => (serving ? current?.pid : undefined),
    restarts: () => restarts,
    join: Deferred.await(gaveUp)
  }
})
