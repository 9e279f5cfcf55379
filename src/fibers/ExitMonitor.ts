/**
 * The exit monitor of one started task, as containerd CRI's event monitor runs
 * them: wait for the exit (through the exit hub: no RPC), then have it handled —
 * in order for this container, in parallel with every other container.
 *
 * The monitor fiber only waits; handling runs in a fiber of the container's own
 * scope, so a handler that restarts the container (and so starts a new monitor
 * under the same key) never interrupts itself. Handling takes the container's
 * lock; if the container's key is in backoff, the exit is queued behind the
 * failed ones instead, and a handling that fails, times out or dies goes to the
 * backoff queue — never past the monitor system.
 */
import { Effect, Exit, type Semaphore } from "effect"
import type { ExitStatus } from "../domain/ExitStatus.ts"
import type { BackoffQueue } from "../services/BackoffQueue.ts"

/** How one container's exits are handled in order. */
export interface OrderedHandling<E> {
  readonly key: string
  /** The container's lock: one handling at a time. */
  readonly lock: Semaphore.Semaphore
  readonly backoff: BackoffQueue<string, E>
  /** Handles one exit (already bounded by the handler timeout). */
  readonly handle: (event: E) => Effect.Effect<void, unknown>
}

/** Handles `event` now, or queues it behind the container's failed events. */
export const handleInOrder = <E>(handling: OrderedHandling<E>, event: E): Effect.Effect<void> =>
  handling.lock.withPermit(
    Effect.flatMap(handling.backoff.isInBackoff(handling.key), (inBackoff) =>
      inBackoff
        ? handling.backoff.enqueue(handling.key, event)
        : Effect.flatMap(Effect.exit(handling.handle(event)), (result) =>
          Exit.isFailure(result) && !Exit.hasInterrupts(result)
            ? Effect.andThen(
              Effect.logWarning(`handling an exit of ${handling.key} failed; it will be retried`, result.cause),
              handling.backoff.enqueue(handling.key, event)
            )
            : Effect.void))
  )

/**
 * The monitor: waits for the task's exit, then `onExit` records it and forks its
 * ordered handling into the container's scope. Everything a handling needs is
 * built once the exit is there, so a waiting monitor holds little more than its
 * fiber: a host with thousands of containers pays for each only that.
 */
export const exitMonitor = (wait: Effect.Effect<ExitStatus>, onExit: (status: ExitStatus) => Effect.Effect<void>) =>
  Effect.flatMap(wait, onExit)
