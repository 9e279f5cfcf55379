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

const logged = <A, E, R>(operation: string, effect: Effect.Effect<A, E, R>) =>
  Effect.tapError(effect, (error) =>
    Effect.andThen(
      Metric.update(RetriedFailures, operation),
      Effect.logWarning(`${operation} failed; retrying: ${error instanceof Error ? error.message : String(error)}`)
    ))

/** Runs `effect`, retrying each failure on the persistent schedule until it succeeds. */
export const retryForever = <A, E, R>(operation: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, never, R> =>
  logged(operation, effect).pipe(
    Effect.retry(persistentSchedule),
    // The schedule never ends: no failure gets past it.
    Effect.orDie
  )

/**
 * Runs `effect`, retrying each failure on the persistent schedule for as long
 * as `retryWhile(error)` holds (its subject is still there, the failure is one
 * that passes); the last failure is returned once it no longer does.
 */
export const retryWhile = <A, E, R>(
  operation: string,
  effect: Effect.Effect<A, E, R>,
  retryWhile: (error: E) => boolean
): Effect.Effect<A, E, R> =>
  logged(operation, effect).pipe(Effect.retry({ schedule: persistentSchedule, while: retryWhile }))
