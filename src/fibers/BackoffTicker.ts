/**
 * The fiber that drives a backoff queue: every `tick` it takes the keys whose
 * delay has expired and starts retrying each in its own fiber, so a slow retry
 * never holds up the others or the next tick. It lives in the queue's scope,
 * and so do the retries it starts.
 */
import { Clock, Duration, Effect, Schedule, type Scope } from "effect"
import type { BackoffState } from "../services/BackoffQueue.ts"

/** Forks the ticker of `state` into the current scope. */
export const runBackoffTicker = <K>(state: BackoffState<K>, tick: Duration.Input): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const check = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.forEach(state.due(now), (key) => Effect.forkIn(state.retry(key), scope), { discard: true }))
    yield* check.pipe(
      Effect.repeat(Schedule.spaced(Duration.fromInputUnsafe(tick))),
      Effect.forkScoped
    )
  })
