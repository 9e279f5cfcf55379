/**
 * The fiber that drives a backoff queue: every `tick` it takes the keys whose
 * delay has expired and starts retrying each in its own fiber, so a slow retry
 * never holds up the others or the next tick. It lives in the queue's scope,
 * and so do the retries it starts.
 */
import { Clock, Duration, Effect, Schedule, type Scope } from "effect"

/** What the ticker needs of a queue. */
export interface Retryable<K> {
  /** Keys whose delay has expired and that are not being retried. */
  readonly due: (now: number) => ReadonlyArray<K>
  /** Retries a key's events in order. */
  readonly retry: (key: K) => Effect.Effect<void>
}

/** Forks the ticker of `queue` into the current scope. */
export const runBackoffTicker = <K>(queue: Retryable<K>, tick: Duration.Input): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const check = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.forEach(queue.due(now), (key) => Effect.forkIn(queue.retry(key), scope), { discard: true }))
    yield* check.pipe(
      Effect.repeat(Schedule.spaced(Duration.fromInputUnsafe(tick))),
      Effect.forkScoped
    )
  })
