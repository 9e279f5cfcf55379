/**
 * Runs the benchmarks: all of them, or those named on the command line.
 *
 *   npm run bench            # everything
 *   npm run bench -- rpc     # one
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { execBench } from "./exec.ts"
import { hubBench } from "./hub.ts"
import { lifecycleBench } from "./lifecycle.ts"
import { rpcBench } from "./rpc.ts"

const benchmarks: Record<string, Effect.Effect<void, unknown>> = {
  rpc: rpcBench,
  hub: hubBench,
  lifecycle: lifecycleBench,
  exec: execBench
}

const selected = process.argv.slice(2)
const unknown = selected.filter((name) => !(name in benchmarks))

const program = unknown.length > 0
  ? Console.error(`unknown benchmark(s): ${unknown.join(", ")}; known: ${Object.keys(benchmarks).join(", ")}`).pipe(
    Effect.andThen(Effect.fail(new Error("unknown benchmark")))
  )
  : Effect.forEach(selected.length > 0 ? selected : Object.keys(benchmarks), (name) => benchmarks[name]!, {
    discard: true
  })

NodeRuntime.runMain(program)
