/**
 * The client's cost per RPC: `Version` calls over one channel to a private
 * containerd, one at a time (latency) and 100 at once (throughput). This is the
 * floor every higher-level operation's RPC count multiplies.
 */
import { Effect } from "effect"
import { Containerd } from "../src/services/Containerd.ts"
import { startContainerd } from "../test/support/ContainerdHarness.ts"
import { millisBetween, percentile, report } from "./Report.ts"

const sequential = 1000
const concurrent = 100
const rounds = 20

const measure = Effect.gen(function*() {
  const client = yield* Containerd
  const call = client.version.version()
  yield* Effect.replicateEffect(call, 100, { discard: true }) // warm up the channel and JIT

  const latencies: Array<number> = []
  for (let i = 0; i < sequential; i++) {
    const start = performance.now()
    yield* call
    latencies.push(performance.now() - start)
  }
  const start = performance.now()
  for (let i = 0; i < rounds; i++) {
    yield* Effect.all(Array.from({ length: concurrent }, () => call), { concurrency: "unbounded", discard: true })
  }
  const elapsed = performance.now() - start

  yield* report("rpc: Version round trips over one channel", [
    { name: "sequential p50", value: millisBetween(0, percentile(latencies, 50)), unit: "ms" },
    { name: "sequential p99", value: millisBetween(0, percentile(latencies, 99)), unit: "ms" },
    { name: `${concurrent} in flight`, value: Math.round((rounds * concurrent) / (elapsed / 1000)), unit: "calls/s" }
  ])
})

export const rpcBench = Effect.gen(function*() {
  const instance = yield* startContainerd
  yield* measure.pipe(Effect.provide(Containerd.layer({ address: instance.address })))
}).pipe(Effect.scoped)
