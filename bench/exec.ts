/**
 * Execs in one container, ours vs `ctr task exec`, side by side:
 * - RPCs per exec from start to exit status, counted by the proxy;
 * - 50 execs of `sh -c 'echo hi'` started at once, output read: ours (the
 *   per-task start bound keeps containerd 1.6's shim below its cliff), ctr with
 *   all 50 at once, and ctr 8 at a time.
 */
import { Effect, Stream } from "effect"
import { Runtime, Stdio, type Task } from "../src/services/Runtime.ts"
import { report } from "./Report.ts"
import { benchDaemon, countedBy, FIXTURE_IMAGE, timed } from "./Setup.ts"

const EXECS = 50
/** ctr's 50-at-once run is the cliff itself; give up on it after this long. */
const CTR_LIMIT = "180 seconds"

const ourExec = (task: Task, id: string) =>
  Effect.scoped(Effect.gen(function*() {
    const process = yield* task.exec(id, { args: ["sh", "-c", "echo hi"], stdio: Stdio.pipe() })
    yield* Effect.forkChild(Stream.runDrain(process.stdout))
    yield* process.start
    yield* process.wait
    yield* process.delete
  }))

/** A running container of ours; its task is killed and deleted with the scope. */
const sleeper = (id: string) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const runtime = yield* Runtime
      const container = yield* runtime.containers.create({ id, image: FIXTURE_IMAGE, command: ["sleep", "3600"] })
      const task = yield* container.newTask()
      yield* task.start
      return { container, task }
    }),
    ({ container, task }) =>
      Effect.gen(function*() {
        yield* task.kill("KILL", { all: true })
        yield* task.wait
        yield* task.delete
        yield* container.delete()
      }).pipe(Effect.ignore)
  )

export const execBench = Effect.gen(function*() {
  const { ctr, instance, proxy, runtime } = yield* benchDaemon

  const ourRpcs = yield* Effect.scoped(Effect.gen(function*() {
    const { task } = yield* sleeper("rpc-ours")
    return (yield* countedBy(proxy, ourExec(task, "counted"))).calls
  })).pipe(Effect.provide(runtime(proxy.address)))

  const ours = yield* Effect.scoped(Effect.gen(function*() {
    const { task } = yield* sleeper("ours")
    yield* ourExec(task, "warm")
    return (yield* timed(Effect.forEach(Array.from({ length: EXECS }, (_, i) => `e${i}`), (id) => ourExec(task, id), {
      concurrency: "unbounded",
      discard: true
    }))).ms
  })).pipe(Effect.provide(runtime(instance.address)))

  // ctr's container, and ctr's execs against it.
  yield* ctr(instance.address, ["run", "-d", FIXTURE_IMAGE, "ctr-box", "sleep", "3600"])
  const ctrExec = (address: string, id: string) => ctr(address, ["task", "exec", "--exec-id", id, "ctr-box", "sh", "-c", "echo hi"])
  const ctrRpcs = (yield* countedBy(proxy, ctrExec(proxy.address, "counted"))).calls
  const ctrAtOnce = yield* timed(Effect.forEach(Array.from({ length: EXECS }, (_, i) => `a${i}`), (id) => ctrExec(instance.address, id), {
    concurrency: "unbounded",
    discard: true
  })).pipe(Effect.timeoutOption(CTR_LIMIT))
  const ctrEight = yield* timed(Effect.forEach(Array.from({ length: EXECS }, (_, i) => `b${i}`), (id) => ctrExec(instance.address, id), {
    concurrency: 8,
    discard: true
  }))
  yield* ctr(instance.address, ["task", "kill", "--signal", "KILL", "--all", "ctr-box"]).pipe(Effect.ignore)

  const seconds = (ms: number) => Math.round(ms / 10) / 100
  yield* report("exec: one container, ours vs ctr (same containerd, one run)", [
    { name: "RPCs per exec, ours (Exec, Start, DeleteProcess)", value: ourRpcs, unit: "" },
    { name: "RPCs per exec, ctr task exec", value: ctrRpcs, unit: "" },
    { name: `${EXECS} execs at once, ours`, value: seconds(ours), unit: "s" },
    {
      name: `${EXECS} execs at once, ctr`,
      value: ctrAtOnce._tag === "Some" ? seconds(ctrAtOnce.value.ms) : Number.NaN,
      unit: ctrAtOnce._tag === "Some" ? "s" : `s (gave up after ${CTR_LIMIT})`
    },
    { name: `${EXECS} execs 8 at a time, ctr`, value: seconds(ctrEight.ms), unit: "s" },
    { name: "ratio ours / ctr 8-at-a-time", value: Math.round((ours / ctrEight.ms) * 100) / 100, unit: "x" }
  ])
}).pipe(Effect.scoped)
