/**
 * Healthchecks, as moby's `daemon/health.go` and `container/health.go`: a
 * container whose config (the request's over its image's `HEALTHCHECK`) names a
 * `CMD` or `CMD-SHELL` probe gets a monitor fiber for each run. It sleeps the
 * interval, runs the probe as an exec on the engine's exec path (the one `docker
 * exec` takes, so the probes are `exec_create`/`exec_start`/`exec_die` events
 * too), and keeps the status (starting → healthy, or unhealthy after `Retries`
 * failures in a row; failures inside the start period do not count until a
 * probe succeeds), the failing streak and the last five results. A change of
 * status is a `health_status: <status>` event.
 *
 * The monitors are fibers of one `FiberMap` keyed by container, in the engine's
 * scope: each start replaces the container's, its exit, pause and removal end
 * it, and its fiber ends by itself when its task exits. Nothing is shared between
 * containers, so their probes run in parallel.
 *
 * Ending a monitor (the run's exit, a pause) leaves the status `unhealthy`, as
 * dockerd's does; the next start or unpause probes again.
 *
 * The state is in memory, as dockerd's (which persists it only best-effort): a
 * daemon restarted while the container runs starts its health again at
 * `starting`, with an empty log.
 */
import { Clock, Duration, Effect, FiberMap, Option, Result, Schema, Stream } from "effect"
import type { DockerError } from "../DockerError.ts"
import { HealthConfig, type HealthJson, type HealthResultJson } from "../Model.ts"
import { type Environment, publish, trackedOf } from "./Environment.ts"
import type { Execs } from "./Exec.ts"
import { isPaused, isRunning } from "./State.ts"
import type { Entry } from "./Store.ts"

/** A container's health, as `State.Health` shows it. */
export interface HealthState {
  status: HealthJson["Status"]
  failingStreak: number
  /** The last `MAX_LOG` results, oldest first. */
  log: ReadonlyArray<HealthResultJson>
}

const NS_PER_MS = 1_000_000
/** dockerd's defaults: 30 s between probes (and before the first), 30 s per probe, no start period, 3 retries. */
const DEFAULT_INTERVAL_MS = 30_000
const DEFAULT_TIMEOUT_MS = 30_000
const DEFAULT_RETRIES = 3
/** dockerd keeps the first 4096 bytes of a probe's output (then "..."), and the last 5 results. */
const MAX_OUTPUT = 4096
const MAX_LOG = 5
/** As dockerd's exec on a cancelled context: SIGTERM, then SIGKILL if it is still there this much later. */
const TERM_GRACE = Duration.seconds(10)

/** A probe, ready to run: its argv and its timing (ms). */
export interface Probe {
  readonly argv: ReadonlyArray<string>
  readonly intervalMs: number
  readonly timeoutMs: number
  readonly startPeriodMs: number
  readonly retries: number
}

const decodeConfig = Schema.decodeUnknownOption(HealthConfig)

/** dockerd's checks of a create's Healthcheck (`verifyContainerSettings`): durations of 1 ms at least, retries not negative. */
export const checkHealthcheck = (config: HealthConfig | null | undefined): Result.Result<void, string> => {
  if (config === null || config === undefined) return Result.void
  for (const field of ["Interval", "Timeout", "StartPeriod"] as const) {
    const value = config[field] ?? 0
    if (value !== 0 && value < NS_PER_MS) return Result.fail(`${field} in Healthcheck cannot be less than 1ms`)
  }
  if ((config.Retries ?? 0) < 0) return Result.fail("Retries in Healthcheck cannot be negative")
  return Result.void
}

/** The warning for a Test whose type is none of Docker's (dockerd runs nothing and only logs it). */
export const healthcheckWarning = (config: HealthConfig | null | undefined): ReadonlyArray<string> => {
  const type = config?.Test?.[0]
  return type === undefined || type === "CMD" || type === "CMD-SHELL" || type === "NONE"
    ? []
    : [`Healthcheck type ${JSON.stringify(type)} is unknown (expected CMD, CMD-SHELL or NONE): no health check runs`]
}

const strings = (value: unknown): ReadonlyArray<string> | undefined =>
  Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === "string") ? value : undefined

/** The probe of a container's effective config; none without a Healthcheck, with NONE or an unknown type (as dockerd's getProbe). */
export const probeOf = (entry: Entry): Probe | undefined => {
  const config = Option.getOrUndefined(decodeConfig(entry.config.Healthcheck ?? null))
  const test = config?.Test ?? []
  if (config === undefined || (test[0] !== "CMD" && test[0] !== "CMD-SHELL")) return undefined
  // As dockerd's getShell: the container's Shell, else /bin/sh -c.
  const shell = strings(entry.stored.Config.Shell) ?? entry.stored.ImageConfig?.Shell ?? ["/bin/sh", "-c"]
  const ms = (ns: number | null | undefined, fallback: number) => ns ? ns / NS_PER_MS : fallback
  return {
    argv: test[0] === "CMD-SHELL" ? [...shell, ...test.slice(1)] : test.slice(1),
    intervalMs: ms(config.Interval, DEFAULT_INTERVAL_MS),
    timeoutMs: ms(config.Timeout, DEFAULT_TIMEOUT_MS),
    startPeriodMs: ms(config.StartPeriod, 0),
    retries: (config.Retries ?? 0) > 0 ? config.Retries! : DEFAULT_RETRIES
  }
}

/** A duration as Go's `time.Duration` prints it (`200ms`, `1.5s`, `1m30s`), for dockerd's timeout message. */
export const goDuration = (ms: number): string => {
  if (ms < 1000) return `${Number(ms.toPrecision(12))}ms`
  const trim = (n: number) => String(Number(n.toFixed(9)))
  const hours = Math.floor(ms / 3_600_000)
  const minutes = Math.floor((ms % 3_600_000) / 60_000)
  const seconds = (ms % 60_000) / 1000
  return `${hours > 0 ? `${hours}h` : ""}${hours > 0 || minutes > 0 ? `${minutes}m` : ""}${trim(seconds)}s`
}

/** `State.Health`. */
export const healthJson = (health: HealthState): HealthJson => ({
  Status: health.status,
  FailingStreak: health.failingStreak,
  Log: health.log
})

/** What `docker ps` shows of it after `Up ...`, as dockerd's `Health.String`. */
export const healthText = (status: HealthJson["Status"]): string => status === "starting" ? "health: starting" : status

/** The value of `docker ps --filter health=`: `none` without a healthcheck. */
export const healthFilterValue = (health: HealthState | undefined): string => health?.status ?? "none"

/** The values `health=` takes. */
export const HEALTH_FILTER_VALUES: ReadonlyArray<string> = ["starting", "healthy", "unhealthy", "none"]

/** The first `MAX_OUTPUT` bytes written, and whether more came (dockerd's limitedBuffer). */
const limitedBuffer = () => {
  const chunks: Array<Uint8Array> = []
  let size = 0
  let truncated = false
  return {
    write: (data: Uint8Array) => {
      const keep = Math.min(MAX_OUTPUT - size, data.length)
      if (keep > 0) {
        chunks.push(data.subarray(0, keep))
        size += keep
      }
      if (keep < data.length) truncated = true
    },
    // Invalid UTF-8 becomes U+FFFD, as Go's JSON encoding of the string does.
    text: () => new TextDecoder().decode(Buffer.concat(chunks)) + (truncated ? "..." : "")
  }
}

/** The health monitors of the engine's containers; their fibers live in the caller's scope. */
export const makeHealth = Effect.fnUntraced(function*(env: Environment, execs: Execs) {
  const monitors = yield* FiberMap.make<string>()
  /** The containers whose monitor runs (dockerd's open monitor channel), until `end` even if the fiber ended with its task. */
  const open = new Set<string>()

  /** One run of the probe: its exit code and output; a timeout kills it (its exit code is then -1, as dockerd's). */
  const execute = (entry: Entry, probe: Probe): Effect.Effect<{ readonly code: number; readonly output: string }, DockerError> =>
    Effect.gen(function*() {
      const { Id } = yield* execs.create(entry, { Cmd: probe.argv, AttachStdout: true, AttachStderr: true })
      // Not cut half-way by a stop of the monitor: the exec's own scope then ends with its process.
      const { exited, session } = yield* Effect.uninterruptible(execs.start(Id, { detach: false }))
      const output = limitedBuffer()
      const finished = yield* Stream.runForEach(session.output, (chunk) => Effect.sync(() => output.write(chunk.data))).pipe(
        Effect.andThen(exited),
        Effect.timeoutOption(Duration.millis(probe.timeoutMs))
      )
      if (Option.isSome(finished)) return { code: finished.value, output: output.text() }
      // Waited for, so dying probes do not pile up (as dockerd waits for its probe to return).
      yield* execs.signal(Id, "SIGTERM")
      if (Option.isNone(yield* Effect.timeoutOption(exited, TERM_GRACE))) {
        yield* execs.signal(Id, "SIGKILL")
        yield* Effect.timeoutOption(exited, TERM_GRACE)
      }
      return { code: -1, output: `Health check exceeded timeout (${goDuration(probe.timeoutMs)})` }
    })

  /** A probe's result: an exec that cannot be made or started is a failure (-1, its message), not the monitor's end. */
  const run = (entry: Entry, probe: Probe) =>
    Effect.gen(function*() {
      const start = yield* Clock.currentTimeMillis
      const { code, output } = yield* execute(entry, probe).pipe(
        Effect.catch((error) => Effect.succeed({ code: -1, output: error.message }))
      )
      const end = yield* Clock.currentTimeMillis
      return { start, result: { Start: new Date(start).toISOString(), End: new Date(end).toISOString(), ExitCode: code, Output: output } }
    })

  /** The result recorded, as dockerd's handleProbeResult; a change of status is an event. */
  const record = (entry: Entry, probe: Probe, startedAt: number, start: number, result: HealthResultJson) =>
    Effect.suspend(() => {
      const health = entry.health
      if (health === undefined) return Effect.void
      const before = health.status
      health.log = [...health.log.slice(-(MAX_LOG - 1)), result]
      if (result.ExitCode === 0) {
        health.failingStreak = 0
        health.status = "healthy"
      } else if (before !== "starting" || start - startedAt >= probe.startPeriodMs) {
        health.failingStreak += 1
        if (health.failingStreak >= probe.retries) health.status = "unhealthy"
      }
      return health.status === before ? Effect.void : publish(env, entry, `health_status: ${health.status}`)
    })

  /**
   * Runs the monitor of its current run if it has a probe and runs, the health kept as it is: after
   * an unpause (whose task the monitors may not yet have seen resumed), or from `begin`.
   */
  const resume = (entry: Entry): Effect.Effect<void> =>
    Effect.gen(function*() {
      const probe = probeOf(entry)
      const tracked = yield* trackedOf(env, entry)
      if (probe === undefined || entry.health === undefined || tracked?.task === undefined || !isRunning(tracked.state.status)) return
      const startedAt = tracked.state.startedAt?.getTime() ?? (yield* Clock.currentTimeMillis)
      const loop = Effect.forever(Effect.gen(function*() {
        yield* Effect.sleep(Duration.millis(probe.intervalMs))
        const { result, start } = yield* run(entry, probe)
        yield* record(entry, probe, startedAt, start, result)
      }))
      open.add(entry.id)
      // Its task's exit ends it at once, before the exit is even handled.
      yield* FiberMap.run(monitors, entry.id, Effect.raceFirst(loop, tracked.task.wait))
    })

  /**
   * A run began (a start, or a running container found at the daemon's start): its health is
   * `starting` again, and probed unless it is paused (found so at the daemon's start).
   */
  const begin = (entry: Entry): Effect.Effect<void> =>
    Effect.gen(function*() {
      if (probeOf(entry) === undefined) return
      open.delete(entry.id)
      entry.health = { status: "starting", failingStreak: 0, log: entry.health?.log ?? [] }
      if (!isPaused((yield* trackedOf(env, entry))?.state.status, entry.phase)) yield* resume(entry)
    })

  /**
   * Ends its monitor (an exit, a pause, a removal). As dockerd's CloseMonitorChannel, a container
   * whose monitor ran is then `unhealthy` ("for compatibility reasons"; no event): a stopped or
   * paused container is not reported healthy.
   */
  const end = (entry: Entry): Effect.Effect<void> =>
    Effect.andThen(FiberMap.remove(monitors, entry.id), Effect.sync(() => {
      if (open.delete(entry.id) && entry.health !== undefined) entry.health.status = "unhealthy"
    }))

  return { begin, resume, end }
})

/** The engine's health monitors. */
export type Health = Effect.Success<ReturnType<typeof makeHealth>>
