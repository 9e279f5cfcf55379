/**
 * The daemon against `ctr` (and dockerd 20.10 when Debian's docker.io is
 * installed), side by side on one private containerd: `docker run -d` +
 * `docker wait` + `docker rm`, and `docker run --rm` (one CLI process,
 * attached), against `ctr run --rm`; and 50 `docker exec` at once in one container.
 * - containerd RPCs, counted by the proxy a first daemon talks through (first
 *   cycle, and after: the image is known by then);
 * - wall times with every engine straight on containerd (the proxy adds a hop
 *   per call, which would weigh on ctr's 42 calls and our 8 unequally), over 20
 *   runs alternating between engines so drift falls on each alike: with the
 *   docker CLI (three CLI processes per cycle), through the HTTP API directly
 *   (what dockerode pays), and `ctr run --rm` (one process);
 * - the same CLI workloads against an engine that answers at once and does
 *   nothing (bench/StubEngine.ts): what the docker CLI costs on its own, the
 *   part no engine can remove.
 * Targets: at most 8 RPCs per cycle after the first (7 for `run --rm`); no
 * slower than ctr; 50 execs within 1.4 s on the reference machine (where
 * dockerd takes 3.1 s).
 */
import { Effect, Option } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { dockerCli, requestOver, startDaemon } from "../test/support/DaemonHarness.ts"
import { startDockerd } from "../test/support/Dockerd.ts"
import { startStubEngine } from "./StubEngine.ts"
import { percentile, report, type Figure } from "./Report.ts"
import { benchDaemon, countedBy, FIXTURE_IMAGE, NAMESPACE, timed } from "./Setup.ts"

const RUNS = 20
const EXEC_ROUNDS = 3

/** The workloads, against the engine on `socket`. */
const workloads = (socket: string, dockerConfig: string) => {
  const cli = dockerCli(socket, dockerConfig)
  const docker = (...args: ReadonlyArray<string>) =>
    Effect.flatMap(cli(args), (r) =>
      r.code === 0 ? Effect.succeed(r.stdout.trim()) : Effect.fail(new Error(`docker ${args.join(" ")}: ${r.stderr}`)))
  const request = requestOver(socket)
  // API 1.41: the newest dockerd 20.10 speaks, and one we do.
  const api = (method: string, url: string, body?: unknown) =>
    Effect.flatMap(request(method, `/v1.41${url}`, body === undefined ? undefined : JSON.stringify(body)), (r) =>
      r.status < 300 ? Effect.succeed(r.body) : Effect.fail(new Error(`${method} ${url}: ${r.status} ${r.body}`)))
  return {
    docker,
    cliCycle: Effect.gen(function*() {
      const id = yield* docker("run", "-d", FIXTURE_IMAGE, "true")
      yield* docker("wait", id)
      yield* docker("rm", id)
    }),
    apiCycle: Effect.gen(function*() {
      const { Id } = JSON.parse(yield* api("POST", "/containers/create", { Image: FIXTURE_IMAGE, Cmd: ["true"] })) as { Id: string }
      yield* api("POST", `/containers/${Id}/start`)
      yield* api("POST", `/containers/${Id}/wait`)
      yield* api("DELETE", `/containers/${Id}`)
    }),
    runRm: docker("run", "--rm", FIXTURE_IMAGE, "true"),
    /** 50 `docker exec` at once in one running container: the wall time in ms. */
    execs: Effect.gen(function*() {
      const box = yield* docker("run", "-d", FIXTURE_IMAGE, "sleep", "600")
      return yield* Effect.gen(function*() {
        yield* docker("exec", box, "true")
        const { ms } = yield* timed(Effect.forEach(Array.from({ length: 50 }), () => docker("exec", box, "true"), {
          concurrency: "unbounded",
          discard: true
        }))
        return ms
      }).pipe(Effect.ensuring(Effect.ignore(docker("rm", "-f", box))))
    })
  }
}

export const daemonBench = Effect.gen(function*() {
  const { ctr, image, instance, proxy } = yield* benchDaemon
  const dockerConfig = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-docker-config-"))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

  // RPCs, by a daemon that talks to containerd through the counting proxy.
  const rpcs = yield* Effect.scoped(Effect.gen(function*() {
    const counted = yield* startDaemon({ containerd: proxy.address, namespace: NAMESPACE })
    const { cliCycle, runRm } = workloads(counted.socket, dockerConfig)
    const first = yield* countedBy(proxy, cliCycle)
    const again = yield* countedBy(proxy, cliCycle)
    const attached = yield* countedBy(proxy, runRm)
    return { first: first.calls, again: again.calls, runRm: attached.calls }
  }))
  const ctrRpcs = yield* countedBy(proxy, ctr(proxy.address, ["run", "--rm", FIXTURE_IMAGE, "ctr-rpc", "true"]))

  // Wall times, every engine straight on containerd.
  const daemon = yield* startDaemon({ containerd: instance.address, namespace: NAMESPACE })
  const ours = workloads(daemon.socket, dockerConfig)
  const dockerd = Option.map(yield* startDockerd(instance.address, image), (d) => workloads(d.socket, dockerConfig))
  const stub = workloads((yield* startStubEngine).socket, dockerConfig)
  const samples = new Map<string, Array<number>>()
  const sample = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>) =>
    Effect.map(timed(effect), ({ ms }) => void samples.set(name, [...(samples.get(name) ?? []), ms]))
  const ctrCycle = (name: string) => ctr(instance.address, ["run", "--rm", FIXTURE_IMAGE, name, "true"])
  yield* ctrCycle("ctr-warm")
  yield* ours.cliCycle
  if (Option.isSome(dockerd)) yield* dockerd.value.cliCycle
  for (let i = 0; i < RUNS; i++) {
    yield* sample("ours cli", ours.cliCycle)
    yield* sample("ours api", ours.apiCycle)
    yield* sample("ours run --rm", ours.runRm)
    yield* sample("stub cli", stub.cliCycle)
    yield* sample("stub run --rm", stub.runRm)
    if (Option.isSome(dockerd)) {
      yield* sample("dockerd cli", dockerd.value.cliCycle)
      yield* sample("dockerd api", dockerd.value.apiCycle)
      yield* sample("dockerd run --rm", dockerd.value.runRm)
    }
    yield* sample("ctr", ctrCycle(`ctr-${i}`))
  }
  const execs: Array<number> = []
  const theirExecs: Array<number> = []
  const stubExecs: Array<number> = []
  for (let i = 0; i < EXEC_ROUNDS; i++) {
    execs.push(yield* ours.execs)
    if (Option.isSome(dockerd)) theirExecs.push(yield* dockerd.value.execs)
    stubExecs.push(yield* stub.execs)
  }

  const p50 = (name: string) => Math.round(percentile(samples.get(name) ?? [], 50) * 10) / 10
  const ratio = (name: string) => Math.round((p50(name) / p50("ctr")) * 100) / 100
  const median = (xs: ReadonlyArray<number>) => Math.round(percentile(xs, 50))
  const theirs: ReadonlyArray<Figure> = Option.isNone(dockerd)
    ? [{ name: "dockerd 20.10: not installed (apt install docker.io), not compared", value: 0, unit: "" }]
    : [
      { name: `wall time p50, dockerd: docker CLI cycle`, value: p50("dockerd cli"), unit: "ms" },
      { name: `wall time p50, dockerd: the same through the HTTP API`, value: p50("dockerd api"), unit: "ms" },
      { name: `wall time p50, dockerd: docker run --rm`, value: p50("dockerd run --rm"), unit: "ms" },
      { name: "ratio dockerd CLI cycle / ctr", value: ratio("dockerd cli"), unit: "x" },
      { name: "ratio dockerd docker run --rm / ctr", value: ratio("dockerd run --rm"), unit: "x" },
      { name: `50 docker exec at once, dockerd (median of ${EXEC_ROUNDS})`, value: median(theirExecs), unit: "ms" }
    ]
  yield* report("daemon: docker run -d + wait + rm of `true`, docker run --rm, vs ctr run --rm (same containerd, one run)", [
    { name: "containerd RPCs per cycle, ours (first)", value: rpcs.first, unit: "" },
    { name: "containerd RPCs per cycle, ours (after; target <= 8)", value: rpcs.again, unit: "" },
    { name: "containerd RPCs, docker run --rm, ours (target <= 7)", value: rpcs.runRm, unit: "" },
    { name: "containerd RPCs, ctr run --rm", value: ctrRpcs.calls, unit: "" },
    { name: `wall time p50, ctr run --rm (${RUNS} runs)`, value: p50("ctr"), unit: "ms" },
    { name: `wall time p50, ours: docker CLI cycle`, value: p50("ours cli"), unit: "ms" },
    { name: `wall time p50, ours: the same through the HTTP API`, value: p50("ours api"), unit: "ms" },
    { name: `wall time p50, ours: docker run --rm`, value: p50("ours run --rm"), unit: "ms" },
    { name: "ratio ours CLI cycle / ctr (target <= 1)", value: ratio("ours cli"), unit: "x" },
    { name: "ratio ours HTTP API cycle / ctr", value: ratio("ours api"), unit: "x" },
    { name: "ratio ours docker run --rm / ctr (target <= 1)", value: ratio("ours run --rm"), unit: "x" },
    { name: "wall time p50, the CLI alone: docker CLI cycle against the stub", value: p50("stub cli"), unit: "ms" },
    { name: "wall time p50, the CLI alone: docker run --rm against the stub", value: p50("stub run --rm"), unit: "ms" },
    { name: `50 docker exec at once, ours (median of ${EXEC_ROUNDS})`, value: median(execs), unit: "ms" },
    { name: `50 docker exec at once, the CLI alone against the stub (median of ${EXEC_ROUNDS})`, value: median(stubExecs), unit: "ms" },
    ...theirs
  ])
}).pipe(Effect.scoped)
