/**
 * A container's restart manager, as moby's `restartmanager`: whether an exit is
 * followed by a restart under the container's policy, and after how long — the
 * delay starts at 100 ms and doubles per restart up to 1 minute, back to 100 ms
 * once a run lasted 10 s. It also remembers what Docker persists about restarts:
 * the count, and a stop by hand (which `always` and `unless-stopped` respect).
 */
import { Clock, Duration, Effect } from "effect"
import type { RestartPolicy } from "./HostConfig.ts"

/** dockerd's restart delays, in ms. */
export const RESTART_DELAY_MIN = 100
export const RESTART_DELAY_MAX = 60_000
/** A run at least this long (ms) resets the delay. */
export const RESTART_RESET_AFTER = 10_000

/** One container's restart bookkeeping. */
export interface RestartManager {
  /** The policy now; `docker update` changes it (`setPolicy`). */
  readonly policy: RestartPolicy
  /** How often the policy restarted it. */
  readonly count: number
  /** Stopped by hand: no policy restart until it is started again. */
  readonly manuallyStopped: boolean
  /** Whether an exit with `code` is followed by a restart; `blocked`: a removal or AutoRemove rules it out. */
  readonly restarts: (code: number, blocked: boolean) => boolean
  /** The delay before the coming restart of a run that began at `startedAt` (ms, if known); doubles each time. */
  readonly nextDelay: (startedAt: number | undefined) => Effect.Effect<Duration.Duration>
  /** Counts a restart that is about to happen; returns the new count. */
  readonly restarted: Effect.Effect<number>
  readonly setManuallyStopped: (stopped: boolean) => void
  /** The policy for the exits to come (the count and the delay go on). */
  readonly setPolicy: (policy: RestartPolicy) => void
}

/** Whether the policy restarts after an exit with `code` (before any delay). */
export const shouldRestart = (policy: RestartPolicy, count: number, code: number): boolean => {
  switch (policy.name) {
    case "always":
    case "unless-stopped":
      return true
    case "on-failure":
      return code !== 0 && (policy.max === 0 || count < policy.max)
    case "no":
      return false
  }
}

/** A restart manager for a container with `policy`, resuming from what its labels recorded. */
export const makeRestartManager = (
  initial: RestartPolicy,
  recorded: { readonly count: number; readonly manuallyStopped: boolean }
): RestartManager => {
  let policy = initial
  let count = recorded.count
  let manuallyStopped = recorded.manuallyStopped
  let delay = RESTART_DELAY_MIN
  return {
    get policy() {
      return policy
    },
    get count() {
      return count
    },
    get manuallyStopped() {
      return manuallyStopped
    },
    restarts: (code, blocked) => !blocked && !manuallyStopped && shouldRestart(policy, count, code),
    nextDelay: (startedAt) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        if (startedAt !== undefined && now - startedAt >= RESTART_RESET_AFTER) delay = RESTART_DELAY_MIN
        const wait = delay
        delay = Math.min(delay * 2, RESTART_DELAY_MAX)
        return Duration.millis(wait)
      }),
    restarted: Effect.sync(() => ++count),
    setManuallyStopped: (stopped) => {
      manuallyStopped = stopped
    },
    setPolicy: (next) => {
      policy = next
    }
  }
}
