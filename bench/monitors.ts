/**
 * The exit monitors, fed by the in-memory event source (the real event stream,
 * exit hub and monitors; containerd's side a no-op):
 * - 200 containers exiting at the same moment (their 200 TaskExit envelopes
 *   arrive at once, already encoded, as from the wire), each handler doing 20 ms
 *   of I/O-like waiting: time from the exits to the last handler finished, with
 *   the monitors in parallel, vs the same 200 handlers run one at a time;
 * - exit (envelopes arrived) to handler start: p50 and p99 over those 200;
 * - the heap of 10,000 monitored containers, and the cost of one.
 *
 * The burst figures are medians over 10 bursts, after 20 to warm up (a daemon
 * that has been running a while is warm).
 */
import { Effect } from "effect"
import { envelopes } from "../test/support/InMemoryEvents.ts"
import { inMemoryMonitors } from "../test/support/InMemoryMonitors.ts"
import { millisBetween, percentile, report } from "./Report.ts"
import { monitorStats } from "../test/support/Gauges.ts"

const CONTAINERS = 200
const HANDLER_WORK = "20 millis"
const MANY = 10_000

const heapMiB = () => {
  globalThis.gc?.()
  return process.memoryUsage().heapUsed / 1024 / 1024
}

const parallel = Effect.gen(function*() {
  const starts: Array<number> = []
  let finished = 0
  let lastFinish = 0
  const { run, upstream } = yield* inMemoryMonitors(() =>
    Effect.gen(function*() {
      starts.push(performance.now())
      yield* Effect.sleep(HANDLER_WORK)
      finished++
      lastFinish = performance.now()
    })
  )
  for (let i = 0; i < CONTAINERS; i++) yield* run(`c${i}`, i + 1)
  const exits = Array.from({ length: CONTAINERS }, (_, i) => envelopes.taskExit(`c${i}`, "", i + 1, 0))
  const exitedAt = performance.now()
  for (const exit of exits) yield* upstream.emit(exit)
  while (finished < CONTAINERS) yield* Effect.sleep("1 millis")
  return { elapsed: lastFinish - exitedAt, latencies: starts.map((t) => t - exitedAt) }
}).pipe(Effect.scoped)

const oneAtATime = Effect.gen(function*() {
  const start = performance.now()
  yield* Effect.forEach(Array.from({ length: CONTAINERS }), () => Effect.sleep(HANDLER_WORK), { discard: true })
  return performance.now() - start
})

const memory = Effect.gen(function*() {
  const before = heapMiB()
  const { run } = yield* inMemoryMonitors(() => Effect.void)
  for (let i = 0; i < MANY; i++) yield* run(`m${i}`, i + 1)
  const stats = yield* monitorStats
  const after = heapMiB()
  return { before, after, monitors: stats.monitors }
}).pipe(Effect.scoped)

const WARMUP = 20
const MEASURED = 10

export const monitorsBench = Effect.gen(function*() {
  yield* Effect.replicateEffect(parallel, WARMUP, { discard: true })
  const runs = yield* Effect.replicateEffect(parallel, MEASURED)
  const median = (values: ReadonlyArray<number>) => percentile(values, 50)
  const elapsed = median(runs.map((r) => r.elapsed))
  const p50 = median(runs.map((r) => percentile(r.latencies, 50)))
  const p99 = median(runs.map((r) => percentile(r.latencies, 99)))
  const sequential = yield* oneAtATime
  const { after, before, monitors } = yield* memory
  const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits
  yield* report(`monitors: ${CONTAINERS} containers exiting at once, handlers doing ${HANDLER_WORK} (in-memory source)`, [
    { name: "exits to last handler done, monitors in parallel", value: millisBetween(0, elapsed), unit: "ms" },
    { name: "the same handlers one at a time", value: millisBetween(0, sequential), unit: "ms" },
    { name: "ratio one-at-a-time / parallel", value: round(sequential / elapsed), unit: "x" },
    { name: "exit to handler start, p50", value: round(p50, 2), unit: "ms" },
    { name: "exit to handler start, p99", value: round(p99, 2), unit: "ms" },
    { name: `heap of ${MANY} monitored containers`, value: round(after - before), unit: `MiB (${monitors} monitor fibers)` },
    { name: "heap per monitored container", value: Math.round(((after - before) * 1024 * 1024) / MANY), unit: "bytes" },
    { name: "process heap with them", value: round(after), unit: `MiB (node, Effect, grpc-js and our modules: ${round(before)} MiB)` }
  ])
})
