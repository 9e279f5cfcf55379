/**
 * A whole `run --rm` (create container from an image already present, create
 * task, start, exit observed, delete task, delete container and snapshot), ours
 * vs `ctr run --rm`, side by side against one private containerd:
 * - RPCs per lifecycle, counted by the proxy for both (ours: first use of the
 *   image, and after);
 * - wall time per lifecycle over 20 runs each, directly on the daemon's socket.
 */
import { Effect } from "effect"
import { Runtime } from "../src/services/Runtime.ts"
import { benchDaemon, countedBy, FIXTURE_IMAGE, timed } from "./Setup.ts"
import { percentile, report } from "./Report.ts"

const RUNS = 20

const ourLifecycle = (id: string) =>
  Effect.scoped(Effect.gen(function*() {
    const runtime = yield* Runtime
    const container = yield* runtime.containers.create({ id, image: FIXTURE_IMAGE, command: ["true"] })
    const task = yield* container.newTask()
    yield* task.start
    yield* task.wait
    yield* task.delete
    yield* container.delete()
  }))

export const lifecycleBench = Effect.gen(function*() {
  const { ctr, instance, proxy, runtime } = yield* benchDaemon

  const rpcs = yield* Effect.gen(function*() {
    const first = yield* countedBy(proxy, ourLifecycle("rpc-first"))
    const again = yield* countedBy(proxy, ourLifecycle("rpc-again"))
    return { first: first.calls, again: again.calls }
  }).pipe(Effect.provide(runtime(proxy.address)))
  const ctrRpcs = (yield* countedBy(proxy, ctr(proxy.address, ["run", "--rm", FIXTURE_IMAGE, "ctr-rpc", "true"]))).calls

  const ours = yield* Effect.gen(function*() {
    yield* ourLifecycle("warm")
    const times: Array<number> = []
    for (let i = 0; i < RUNS; i++) times.push((yield* timed(ourLifecycle(`ours-${i}`))).ms)
    return times
  }).pipe(Effect.provide(runtime(instance.address)))
  const theirs: Array<number> = []
  yield* ctr(instance.address, ["run", "--rm", FIXTURE_IMAGE, "ctr-warm", "true"])
  for (let i = 0; i < RUNS; i++) {
    theirs.push((yield* timed(ctr(instance.address, ["run", "--rm", FIXTURE_IMAGE, `ctr-${i}`, "true"]))).ms)
  }

  const p50 = (xs: ReadonlyArray<number>) => Math.round(percentile(xs, 50) * 10) / 10
  yield* report("lifecycle: run --rm of `true`, ours vs ctr (same containerd, one run)", [
    { name: "RPCs, ours (first use of the image)", value: rpcs.first, unit: "" },
    { name: "RPCs, ours (image used before)", value: rpcs.again, unit: "" },
    { name: "RPCs, ctr run --rm", value: ctrRpcs, unit: "" },
    { name: `wall time p50, ours (${RUNS} runs)`, value: p50(ours), unit: "ms" },
    { name: `wall time p50, ctr run --rm (${RUNS} runs)`, value: p50(theirs), unit: "ms" },
    { name: "wall time ratio ours / ctr", value: Math.round((percentile(ours, 50) / percentile(theirs, 50)) * 100) / 100, unit: "x" }
  ])
}).pipe(Effect.scoped)
