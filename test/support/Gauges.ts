/**
 * The library's gauges, read as tests and benchmarks check for leaks: what the
 * monitors track, their fibers, the backoff queue, the exit hub's waits and the
 * singleflight's keys. Each service sets its gauges from its own counts when it
 * is made, so the figures are those of the service a test built last.
 */
import { Effect, Metric } from "effect"
import { BackoffEvents, BackoffKeys } from "../../src/services/BackoffQueue.ts"
import { ExitWaitsPending } from "../../src/services/ExitHub.ts"
import { ExitMonitorFibers, MonitoredContainers } from "../../src/services/Monitors.ts"
import { SingleflightKeys } from "../../src/services/Singleflight.ts"

const gauge = (metric: Metric.Gauge<number>): Effect.Effect<number> => Effect.map(Metric.value(metric), (state) => state.value)

/** Processes whose exit someone waits for. */
export const exitWaitsPending = gauge(ExitWaitsPending)

/** Keys with work in flight. */
export const singleflightKeys = gauge(SingleflightKeys)

/** Keys and retries queued for backoff. */
export const backoffSize = Effect.all({ keys: gauge(BackoffKeys), events: gauge(BackoffEvents) })

/** The monitors' counts, the backoff queue's included. */
export const monitorStats = Effect.all({
  tracked: gauge(MonitoredContainers),
  monitors: gauge(ExitMonitorFibers),
  backoffKeys: gauge(BackoffKeys),
  backoffEvents: gauge(BackoffEvents)
})
