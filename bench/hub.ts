/**
 * The exit hub alone, fed by the in-memory event source: every cycle registers a
 * wait, records the start, publishes a TaskExit envelope (decoded and fanned out
 * exactly as containerd's would be) and awaits the exit.
 *
 * - 100,000 cycles over 1,000 concurrent processes: cycles/s, and the heap after.
 * - The same 10,000 cycles run one at a time and 100 at a time: if the hub
 *   serialised processes, the two would take equally long.
 */
import { Effect } from "effect"
import { makeEvents } from "../src/services/Events.ts"
import { makeExitHub } from "../src/services/ExitHub.ts"
import { envelopes, makeInMemoryUpstream } from "../test/support/InMemoryEvents.ts"
import { millisBetween, report } from "./Report.ts"
import { exitWaitsPending } from "../test/support/Gauges.ts"

const setup = Effect.gen(function*() {
  const upstream = yield* makeInMemoryUpstream
  const events = yield* makeEvents(upstream, { capacity: 16_384 })
  const hub = yield* makeExitHub({
    events,
    lookup: () => Effect.succeed({ _tag: "Missing" as const }),
    currentNamespace: Effect.succeed("default")
  })
  let next = 0
  const cycle = Effect.scoped(Effect.gen(function*() {
    const n = next++
    const id = `c${n}`
    const exit = yield* hub.awaitExit(id)
    yield* hub.started(id, "", n + 1)
    yield* upstream.emit(envelopes.taskExit(id, "", n + 1, n % 256))
    yield* exit
  }))
  return { hub, cycle }
})

/** Runs `total` cycles with `concurrency` processes in flight; returns the wall time in ms. */
const run = <E>(cycle: Effect.Effect<void, E>, total: number, concurrency: number) =>
  Effect.gen(function*() {
    const start = performance.now()
    yield* Effect.forEach(Array.from({ length: concurrency }), () =>
      Effect.replicateEffect(cycle, total / concurrency, { discard: true }), { concurrency: "unbounded", discard: true })
    return performance.now() - start
  })

const heapMiB = () => {
  globalThis.gc?.()
  return Math.round((process.memoryUsage().heapUsed / 1024 / 1024) * 10) / 10
}

export const hubBench = Effect.gen(function*() {
  const { cycle } = yield* setup
  yield* run(cycle, 10_000, 100) // warm up
  const heapBefore = heapMiB()
  const elapsed = yield* run(cycle, 100_000, 1_000)
  const heapAfter = heapMiB()
  const one = yield* run(cycle, 10_000, 1)
  const hundred = yield* run(cycle, 10_000, 100)
  yield* report("hub: start/exit cycles through the event stream and the exit hub (in-memory source)", [
    { name: "100,000 cycles, 1,000 in flight", value: millisBetween(0, elapsed), unit: "ms" },
    { name: "throughput", value: Math.round(100_000 / (elapsed / 1000)), unit: "cycles/s" },
    { name: "heap before / after", value: heapAfter, unit: `MiB (before: ${heapBefore} MiB${globalThis.gc ? "" : ", no --expose-gc"})` },
    { name: "pending registrations after", value: yield* exitWaitsPending, unit: "" },
    { name: "10,000 cycles one at a time", value: millisBetween(0, one), unit: "ms" },
    { name: "10,000 cycles 100 at a time", value: millisBetween(0, hundred), unit: "ms" },
    { name: "ratio one-at-a-time / 100-at-a-time", value: Math.round((one / hundred) * 100) / 100, unit: "x" }
  ])
}).pipe(Effect.scoped)
