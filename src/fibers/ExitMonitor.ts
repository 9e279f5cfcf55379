/**
 * The exit monitor of one container, as containerd CRI runs one per container:
 * the fiber that owns the container's whole exit handling.
 *
 * For each task it is given (through `next`), it waits for the exit (through the
 * exit hub: no RPC), records it, and handles it — delete the task, record the
 * exit, the consumer's handler — under the container's lock, inside the
 * container's scope, the whole handling bounded (10 s by default, as CRI bounds
 * the handling of one event). It is given the container's next task while it
 * handles the last exit (a handler that restarts the container), so one
 * container's exits are handled in order, and other containers' in parallel.
 * When it has nothing left to watch it ends; the next start makes another.
 *
 * A handling that fails, times out or dies goes to the backoff queue; its retry
 * is *the same* handling — the lock, the bound, the container's scope — so a
 * retry never runs beside a removal, and never after the container is gone
 * (forking into a closed scope runs nothing). While the container's key is in
 * backoff, later exits are queued behind. Only the container going ends this:
 * every other failure, interruptions inside the handler included, is retried.
 *
 * It imports nothing of the services: what it works with is described here.
 */
import { Cause, type Duration, Effect, Fiber, Metric, type Scope, type Semaphore } from "effect"
import type { ExitStatus } from "../domain/ExitStatus.ts"

/** Exit handlings that failed and went to the backoff queue. */
export const ExitHandlingFailures = Metric.counter("effect_containerd_exit_handling_failures", {
  description: "exit handlings that failed, timed out or died, and were queued for a retry",
  incremental: true
})

/** Where failed handlings wait: a per-key backoff queue. */
export interface RetryQueue {
  readonly enqueue: (key: string, retry: Effect.Effect<void, unknown>) => Effect.Effect<void>
  readonly isInBackoff: (key: string) => Effect.Effect<boolean>
}

/** How one container's exits are handled. */
export interface ContainerHandling<X> {
  readonly key: string
  /** The container's lock: one handling (or removal) at a time. */
  readonly lock: Semaphore.Semaphore
  /** The container's scope: handling runs in it, and ends with it. */
  readonly scope: Scope.Scope
  readonly backoff: RetryQueue
  /** The bound of one whole handling. */
  readonly bound: Duration.Duration
  /** Handles one exit: delete, record, the consumer's handler. */
  readonly handle: (exit: X) => Effect.Effect<void, unknown>
}

const isClosed = (scope: Scope.Scope) => scope.state._tag === "Closed"

/** One bounded attempt, under the lock. */
const attempt = <X>(handling: ContainerHandling<X>, exit: X) =>
  handling.lock.withPermit(Effect.timeout(handling.handle(exit), handling.bound))

/**
 * A retry: the same attempt, in the container's scope. It succeeds without doing
 * anything once that scope is closed: the container is gone, and so is its work.
 */
const retryOf = <X>(handling: ContainerHandling<X>, exit: X): Effect.Effect<void, unknown> =>
  Effect.flatMap(Effect.forkIn(attempt(handling, exit), handling.scope), (fiber) =>
    Effect.flatMap(Fiber.await(fiber), (result) =>
      result._tag === "Success" || isClosed(handling.scope) ? Effect.void : Effect.failCause(result.cause)))

/**
 * Handles `exit` now, or queues it behind the container's failed ones; a failed
 * attempt is queued for a retry. Run it in the container's scope.
 */
export const handleExit = <X>(handling: ContainerHandling<X>, exit: X): Effect.Effect<void> =>
  Effect.flatMap(handling.backoff.isInBackoff(handling.key), (inBackoff) =>
    inBackoff
      ? handling.backoff.enqueue(handling.key, retryOf(handling, exit))
      : attempt(handling, exit).pipe(
        Effect.catchCause((cause) =>
          isClosed(handling.scope) ? Effect.void : Effect.andThen(
            Effect.andThen(
              Metric.update(ExitHandlingFailures, 1),
              Effect.logWarning(`handling an exit of ${handling.key} failed; it will be retried`, Cause.pretty(cause))
            ),
            handling.backoff.enqueue(handling.key, retryOf(handling, exit))
          )
        )
      ))

/** A task to watch: how to wait for its exit, and what to do with it once it came. */
export interface Watched<X> {
  readonly wait: Effect.Effect<ExitStatus>
  /** Records the exit (the container's state) and says what to handle. */
  readonly exited: (status: ExitStatus) => Effect.Effect<X>
}

/**
 * The monitor fiber of one container: watches each task `next` gives, handles
 * its exit, and ends when `next` has none (answering `undefined`, atomically
 * with the decision that a new task needs a new monitor).
 */
export const exitMonitor = <X>(
  next: Effect.Effect<Watched<X> | undefined>,
  handling: ContainerHandling<X>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    while (true) {
      const watched = yield* next
      if (watched === undefined) return
      const exit = yield* Effect.flatMap(watched.wait, watched.exited)
      yield* handleExit(handling, exit)
    }
  })
