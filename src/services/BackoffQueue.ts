/**
 * A per-key backoff queue for events whose handling failed, as containerd CRI's
 * event monitor has it.
 *
 * After a handler fails, `enqueue(key, event)` puts the event in its key's queue.
 * While a key has a queue ("is in backoff"), later events for it must be queued
 * behind (check `isInBackoff` first), so a key's events are always handled in
 * order; other keys are not affected. A ticker (src/fibers/BackoffTicker.ts)
 * looks every `tick` (default 1 s) for keys whose delay has expired and retries
 * their events in order, each key in its own fiber. If one fails, its key's delay
 * doubles (default 1 s doubling to 5 min, as CRI) and it and the events behind it
 * stay queued; once all succeed, the key leaves backoff.
 *
 * Unlike CRI's, whose retries run on its one event loop, a key stays in backoff
 * while its retry runs, so an event arriving meanwhile is queued behind instead
 * of overtaking.
 */
import { Clock, Duration, Effect, Exit, Metric, type Scope } from "effect"
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

/** A backoff queue of events of type `E` by key `K`. */
export interface BackoffQueue<K, E> {
  /** Queues an event behind its key's (creating the key's queue with the first delay). */
  readonly enqueue: (key: K, event: E) => Effect.Effect<void>
  /** Whether the key has queued events (so a new one must be queued too). */
  readonly isInBackoff: (key: K) => Effect.Effect<boolean>
  /** Drops a key and its events (its subject is gone). */
  readonly remove: (key: K) => Effect.Effect<void>
  /** Keys and events queued. */
  readonly size: Effect.Effect<{ readonly keys: number; readonly events: number }>
}

interface KeyQueue<E> {
  readonly events: Array<E>
  delayMillis: number
  expiresAt: number
  retrying: boolean
}

/** What the ticker needs from a queue's internals. */
export interface BackoffState<K> {
  /** Keys whose delay has expired and that are not being retried. */
  readonly due: (now: number) => ReadonlyArray<K>
  /** Retries a key's events in order; see the module header. */
  readonly retry: (key: K) => Effect.Effect<void>
}

/**
 * Makes a queue whose events are retried with `handle`; its ticker fiber lives in
 * the current scope.
 */
export const makeBackoffQueue = <K, E, R>(
  handle: (key: K, event: E) => Effect.Effect<void, unknown, R>,
  options: BackoffOptions = {}
): Effect.Effect<BackoffQueue<K, E>, never, R | Scope.Scope> =>
  Effect.gen(function*() {
    const initialMillis = Duration.toMillis(Duration.fromInputUnsafe(options.initialDelay ?? "1 second"))
    const maxMillis = Duration.toMillis(Duration.fromInputUnsafe(options.maxDelay ?? "5 minutes"))
    // Retries run in the ticker's fibers, with the context the queue was made in.
    const context = yield* Effect.context<R>()
    const queues = new Map<K, KeyQueue<E>>()
    let events = 0
    const publish = Effect.suspend(() =>
      Effect.andThen(Metric.update(BackoffKeys, queues.size), Metric.update(BackoffEvents, events))
    )

    const enqueue = (key: K, event: E) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const queue = queues.get(key)
        if (queue === undefined) {
          queues.set(key, { events: [event], delayMillis: initialMillis, expiresAt: now + initialMillis, retrying: false })
        } else {
          queue.events.push(event)
        }
        events++
        return publish
      })

    const retry = (key: K) =>
      Effect.gen(function*() {
        const queue = queues.get(key)
        if (queue === undefined) return
        queue.retrying = true
        while (queue.events.length > 0) {
          const result = yield* Effect.exit(Effect.provideContext(handle(key, queue.events[0]!), context))
          if (queues.get(key) !== queue) return // removed while retrying
          if (Exit.isFailure(result)) {
            queue.delayMillis = Math.min(queue.delayMillis * 2, maxMillis)
            queue.expiresAt = (yield* Clock.currentTimeMillis) + queue.delayMillis
            queue.retrying = false
            if (!Exit.hasInterrupts(result)) yield* Effect.logWarning("retry failed; backing off", result.cause)
            return
          }
          queue.events.shift()
          events--
        }
        queues.delete(key)
      }).pipe(Effect.ensuring(publish))

    const state: BackoffState<K> = {
      due: (now) => [...queues].filter(([, q]) => !q.retrying && q.expiresAt <= now).map(([key]) => key),
      retry
    }
    yield* runBackoffTicker(state, options.tick ?? "1 second")

    return {
      enqueue,
      isInBackoff: (key) => Effect.sync(() => queues.has(key)),
      remove: (key) =>
        Effect.suspend(() => {
          const queue = queues.get(key)
          if (queue !== undefined) {
            queues.delete(key)
            events -= queue.events.length
          }
          return publish
        }),
      size: Effect.sync(() => ({ keys: queues.size, events }))
    }
  })
