/**
 * Retrying what must not be given up: reconnect probes, reconciles after missed
 * events, recovery at start. A failure on those paths that is logged and left
 * loses an exit or leaks a container, so each is retried on a `Schedule` until it
 * succeeds or its subject is gone, with a log line and a metric per failure.
 */
import { Effect, Metric, Schedule } from "effect"

/** Failures of operations that are retried until they succeed, by operation. */
export const RetriedFailures = Metric.frequency("effect_containerd_retried_failures", {
  description: "failures of operations the library retries until they succeed, by operation"
})

/** 100 ms doubling, capped at 5 s, forever: for what waits on containerd coming back. */
export const persistentSchedule: Schedule.Schedule<unknown> = Schedule.min([
  Schedule.exponential("100 millis"),
  Schedule.spaced("5 seconds")
])

/**
 * Runs `effect`, retrying each failure on `schedule` (default `persistentSchedule`)
 * for as long as `retryWhile()` holds (default: always); the last failure is
 * returned once it stops holding.
 */
export const retryPersistently = <A, E, R>(
  operation: string,
  effect: Effect.Effect<A, E, R>,
  options?: {
    readonly schedule?: Schedule.Schedule<unknown> | undefined
    readonly retryWhile?: (() => boolean) | undefined
  }
): Effect.Effect<A, E, R> =>
  effect.pipe(
    Effect.tapError((error) =>
      Effect.andThen(
        Metric.update(RetriedFailures, operation),
        Effect.logWarning(`${operation} failed; retrying`, error)
      )
    ),
    Effect.retry({
      schedule: options?.schedule ?? persistentSchedule,
      while: () => options?.retryWhile?.() ?? true
    })
  )
