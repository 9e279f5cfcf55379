/**
 * The daemon against `ctr`, side by side on one private containerd:
 * `docker run -d` + `docker wait` + `docker rm`, and `docker run --rm` (one CLI
 * process, attached), against `ctr run --rm`; and 50 `docker exec` at once in
 * one container.
 * - containerd RPCs per cycle, counted by the proxy the daemon talks through
 *   (first cycle, and after: the image is known by then);
 * - wall time per cycle over 20 runs each: with the docker CLI (three CLI
 *   processes per cycle), through the HTTP API directly (what dockerode pays),
 *   and `ctr run --rm` (one process).
 * Targets: at most 8 RPCs per cycle after the first (7 for `run --rm`); no
 * slower than ctr; 50 execs within 1.4 s on the reference machine.
 */
import { Effect } from "effect"
import { startDaemon } from "../test/support/DaemonHarness.ts"
import { percentile, report } from "./Report.ts"
import { benchDaemon, countedBy, FIXTURE_IMAGE, NAMESPACE, timed } from "./Setup.ts"

const RUNS = 20

export const daemonBench = Effect.gen(function*() {
  const { ctr, instance, proxy } = yield* benchDaemon
  const daemon = yield* startDaemon({ containerd: proxy.address, namespace: NAMESPACE })
  const docker = (...args: ReadonlyArray<string>) =>
    Effect.flatMap(daemon.docker(args), (r) =>
      r.code === 0 ? Effect.succeed(r.stdout.trim()) : Effect.fail(new Error(`docker ${args.join(" ")}: ${r.stderr}`)))
  const cliCycle = Effect.gen(function*() {
    const id = yield* docker("run", "-d", FIXTURE_IMAGE, "true")
    yield* docker("wait", id)
    yield* docker("rm", id)
  })
  const api = (method: string, path: string, body?: unknown) =>
    Effect.flatMap(daemon.request(method, path, body === undefined ? undefined : JSON.stringify(body)), (r) =>
      r.status < 300 ? Effect.succeed(r.body) : Effect.fail(new Error(`${method} ${path}: ${r.status} ${r.body}`)))
  const apiCycle = Effect.gen(function*() {
    const { Id } = JSON.parse(yield* api("POST", "/v1.47/containers/create", { Image: FIXTURE_IMAGE, Cmd: ["true"] })) as { Id: string }
    yield* api("POST", `/v1.47/containers/${Id}/start`)
    yield* api("POST", `/v1.47/containers/${Id}/wait`)
    yield* api("DELETE", `/v1.47/containers/${Id}`)
  })
  const ctrCycle = (name: string) => ctr(instance.address, ["run", "--rm", FIXTURE_IMAGE, name, "true"])
  const runRm = docker("run", "--rm", FIXTURE_IMAGE, "true")

  const first = yield* countedBy(proxy, cliCycle)
  const again = yield* countedBy(proxy, cliCycle)
  const ctrRpcs = yield* countedBy(proxy, ctr(proxy.address, ["run", "--rm", FIXTURE_IMAGE, "ctr-rpc", "true"]))
  const runRmRpcs = yield* countedBy(proxy, runRm)

  // Alternating, so drift in the machine falls on each alike.
  const cli: Array<number> = []
  const direct: Array<number> = []
  const attached: Array<number> = []
  const theirs: Array<number> = []
  yield* ctrCycle("ctr-warm")
  for (let i = 0; i < RUNS; i++) {
    cli.push((yield* timed(cliCycle)).ms)
    direct.push((yield* timed(apiCycle)).ms)
    attached.push((yield* timed(runRm)).ms)
    theirs.push((yield* timed(ctrCycle(`ctr-${i}`))).ms)
  }

  // 50 `docker exec` at once in one container.
  const box = yield* docker("run", "-d", FIXTURE_IMAGE, "sleep", "600")
  yield* docker("exec", box, "true")
  const execs = yield* timed(Effect.forEach(Array.from({ length: 50 }), () => docker("exec", box, "true"), {
    concurrency: "unbounded",
    discard: true
  }))
  yield* docker("rm", "-f", box)
  const p50 = (xs: ReadonlyArray<number>) => Math.round(percentile(xs, 50) * 10) / 10
  const ratio = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) =>
    Math.round((percentile(a, 50) / percentile(b, 50)) * 100) / 100
  yield* report("daemon: docker run -d + wait + rm of `true` vs ctr run --rm (same containerd, one run)", [
    { name: "containerd RPCs per cycle, ours (first)", value: first.calls, unit: "" },
    { name: "containerd RPCs per cycle, ours (after; target <= 8)", value: again.calls, unit: "" },
    { name: "containerd RPCs, ctr run --rm", value: ctrRpcs.calls, unit: "" },
    { name: `wall time p50, docker CLI cycle (${RUNS} runs)`, value: p50(cli), unit: "ms" },
    { name: `wall time p50, the same through the HTTP API (${RUNS} runs)`, value: p50(direct), unit: "ms" },
    { name: `wall time p50, ctr run --rm (${RUNS} runs)`, value: p50(theirs), unit: "ms" },
    { name: "ratio docker CLI cycle / ctr (target <= 1)", value: ratio(cli, theirs), unit: "x" },
    { name: "ratio HTTP API cycle / ctr", value: ratio(direct, theirs), unit: "x" },
    { name: "containerd RPCs, docker run --rm (target <= 7)", value: runRmRpcs.calls, unit: "" },
    { name: `wall time p50, docker run --rm (${RUNS} runs)`, value: p50(attached), unit: "ms" },
    { name: "ratio docker run --rm / ctr run --rm (target <= 1)", value: ratio(attached, theirs), unit: "x" },
    { name: "50 docker exec at once in one container", value: Math.round(execs.ms), unit: "ms" }
  ])
}).pipe(Effect.scoped)
