/**
 * The daemon's `docker run -d` + `docker wait` + `docker rm` cycle against
 * `ctr run --rm`, side by side on one private containerd:
 * - containerd RPCs per cycle, counted by the proxy the daemon talks through
 *   (first cycle, and after: the image is known by then);
 * - wall time per cycle over 20 runs each: with the docker CLI (three CLI
 *   processes per cycle), through the HTTP API directly (what dockerode pays),
 *   and `ctr run --rm` (one process).
 * Targets: at most 8 RPCs per cycle after the first; no slower than ctr.
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

  const first = yield* countedBy(proxy, cliCycle)
  const again = yield* countedBy(proxy, cliCycle)
  const ctrRpcs = yield* countedBy(proxy, ctr(proxy.address, ["run", "--rm", FIXTURE_IMAGE, "ctr-rpc", "true"]))

  // Alternating, so drift in the machine falls on each alike.
  const cli: Array<number> = []
  const direct: Array<number> = []
  const theirs: Array<number> = []
  yield* ctrCycle("ctr-warm")
  for (let i = 0; i < RUNS; i++) {
    cli.push((yield* timed(cliCycle)).ms)
    direct.push((yield* timed(apiCycle)).ms)
    theirs.push((yield* timed(ctrCycle(`ctr-${i}`))).ms)
  }
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
    { name: "ratio HTTP API cycle / ctr", value: ratio(direct, theirs), unit: "x" }
  ])
}).pipe(Effect.scoped)
