/**
 * A per-key backoff queue for work whose first attempt failed, as containerd
 * CRI's event monitor has it.
 *
 * After an attempt fails, `enqueue(key, retry)` puts the retry in its key's
 * queue. While a key has a queue ("is in backoff"), later work for it must be
 * queued behind (check `isInBackoff` first), so a key's work is always done in
 * order; other keys are not affected. A ticker (src/fibers/BackoffTicker.ts), a
 * fiber of the queue's layer, looks every `tick` (default 1 s) for keys whose
 * delay has expired and runs their retries in order, each key in its own fiber.
 * If one fails, its key's delay doubles (default 1 s doubling to 5 min, as CRI)
 * and it and the retries behind it stay queued; once all succeed, the key leaves
 * backoff. A retry is an effect the caller built: it carries whatever lock and
 * scope the work needs (the monitors' run their container's handling, under its
 * lock, in its scope).
 *
 * Unlike CRI's, whose retries run on its one event loop, a key stays in backoff
 * while its retry runs, so work arriving meanwhile is queued behind instead of
 * overtaking.
 */
import { Clock, Context, Duration, Effect, Exit, Layer, Metric, type Scope } from "effect"
import { runBackoffTicker } from "../fibers/BackoffTicker.ts"

/** Keys in backoff, across all queues. */
export const BackoffKeys = Metric.gauge("effect_containerd_backoff_keys", {
  description: "keys whose failed events wait in a backoff queue"
})
/** Events in backoff, across all queues. */
export const BackoffEvents = Metric.gauge("effect_containerd_backoff_events", {
  description: "failed events waiting in a backoff queue"
})

/** Durations of a backoff queue. */
export interface BackoffOptions {
  /** How often expired keys are looked for; default 1 second. */
  readonly tick?: Duration.Input | undefined
  /** The first delay; default 1 second. */
  readonly initialDelay?: Duration.Input | undefined
  /** The longest delay; default 5 minutes. */
  readonly maxDelay?: Duration.Input | undefined
}

/** The backoff queue service. */
export interface BackoffQueueShape {
  /** Queues `retry` behind its key's (creating the key's queue with the first delay). */
  readonly enqueue: (key: string, retry: Effect.Effect<void, unknown>) => Effect.Effect<void>
  /** Whether the key has queued retries (so new work for it must be queued too). */
  readonly isInBackoff: (key: string) => Effect.Effect<boolean>
  /** Drops a key and its retries (its subject is gone). */
  readonly remove: (key: string) => Effect.Effect<void>
}

interface KeyQueue {
  readonly retries: Array<Effect.Effect<void, unknown>>
  delayMillis: number
  expiresAt: number
  retrying: boolean
}

/** Makes a queue; its ticker fiber and the retries it runs live in the current scope. */
export const makeBackoffQueue = (options: BackoffOptions = {}): Effect.Effect<BackoffQueueShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const initialMillis = Duration.toMillis(Duration.fromInputUnsafe(options.initialDelay ?? "1 second"))
    const maxMillis = Duration.toMillis(Duration.fromInputUnsafe(options.maxDelay ?? "5 minutes"))
    const queues = new Map<string, KeyQueue>()
    let events = 0
    const publish = Effect.suspend(() =>
      Effect.andThen(Metric.update(BackoffKeys, queues.size), Metric.update(BackoffEvents, events))
    )
    // A new queue starts the gauges from its own counts (one queue per process; tests make several in turn).
    yield* publish

    const enqueue = (key: string, retry: Effect.Effect<void, unknown>) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const queue = queues.get(key)
        if (queue === undefined) {
          queues.set(key, { retries: [retry], delayMillis: initialMillis, expiresAt: now + initialMillis, retrying: false })
        } else {
          queue.retries.push(retry)
        }
        events++
        return publish
      })

    const retry = (key: string) =>
      Effect.gen(function*() {
        const queue = queues.get(key)
        if (queue === undefined) return
        queue.retrying = true
        while (queue.retries.length > 0) {
          const result = yield* Effect.exit(queue.retries[0]!)
          if (queues.get(key) !== queue) return // removed while retrying
          if (Exit.isFailure(result)) {
            queue.delayMillis = Math.min(queue.delayMillis * 2, maxMillis)
            queue.expiresAt = (yield* Clock.currentTimeMillis) + queue.delayMillis
            queue.retrying = false
            yield* Effect.logWarning(`a retry for ${key} failed; backing off ${Duration.format(Duration.millis(queue.delayMillis))}`, result.cause)
            return
          }
          queue.retries.shift()
          events--
        }
        queues.delete(key)
      }).pipe(Effect.ensuring(publish))

    yield* runBackoffTicker({
      due: (now) => [...queues].filter(([, q]) => !q.retrying && q.expiresAt <= now).map(([key]) => key),
      retry
    }, options.tick ?? "1 second")

    return {
      enqueue: (key, retry) => Effect.withSpan(enqueue(key, retry), "BackoffQueue.enqueue"),
      // Asked for every event of every container (the exit monitor's ordering check): no span.
      isInBackoff: (key) => Effect.sync(() => queues.has(key)),
      remove: (key) =>
        Effect.suspend(() => {
          const queue = queues.get(key)
          if (queue !== undefined) {
            queues.delete(key)
            events -= queue.retries.length
          }
          return publish
        }).pipe(Effect.withSpan("BackoffQueue.remove"))
    }
  })

/** The backoff queue service. */
export class BackoffQueue extends Context.Service<BackoffQueue, BackoffQueueShape>()("effect-containerd/BackoffQueue") {
  /** A queue with CRI's durations (1 s doubling to 5 min, looked at every second), or `options`. */
  static readonly layer = (options?: BackoffOptions): Layer.Layer<BackoffQueue> =>
    Layer.effect(BackoffQueue, makeBackoffQueue(options))
}
