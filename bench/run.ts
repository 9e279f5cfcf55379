/**
 * Runs the benchmarks: all of them, or those named on the command line.
 *
 *   npm run bench            # everything
 *   npm run bench -- rpc     # one
 *
 * Each benchmark's module is loaded only when it runs, so a benchmark's heap
 * figures carry nothing of the others' dependencies.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"

const benchmarks: Record<string, () => Promise<Effect.Effect<void, unknown>>> = {
  rpc: () => import("./rpc.ts").then((m) => m.rpcBench),
  hub: () => import("./hub.ts").then((m) => m.hubBench),
  lifecycle: () => import("./lifecycle.ts").then((m) => m.lifecycleBench),
  exec: () => import("./exec.ts").then((m) => m.execBench),
  monitors: () => import("./monitors.ts").then((m) => m.monitorsBench),
  pull: () => import("./pull.ts").then((m) => m.pullBench),
  daemon: () => import("./daemon.ts").then((m) => m.daemonBench),
  network: () => import("./network.ts").then((m) => m.networkBench),
  cni: () => import("./cni.ts").then((m) => m.cniBench),
  stats: () => import("./stats.ts").then((m) => m.statsBench),
  compose: () => import("./compose.ts").then((m) => m.composeBench)
}

const selected = process.argv.slice(2)
const unknown = selected.filter((name) => !(name in benchmarks))

const program = unknown.length > 0
  ? Console.error(`unknown benchmark(s): ${unknown.join(", ")}; known: ${Object.keys(benchmarks).join(", ")}`).pipe(
    Effect.andThen(Effect.fail(new Error("unknown benchmark")))
  )
  : Effect.forEach(
    selected.length > 0 ? selected : Object.keys(benchmarks),
    (name) => Effect.flatMap(Effect.promise(benchmarks[name]!), (bench) => bench),
    { discard: true }
  )

NodeRuntime.runMain(program)
