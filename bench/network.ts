/**
 * Networking against dockerd 20.10, side by side on one private containerd:
 * `docker run -d -p 127.0.0.1:<port>:80` of busybox's httpd, an HTTP request to
 * the published port until it answers, `docker rm -f` — ours on CNI (bridge +
 * host-local + portmap), dockerd with its own bridge, iptables and
 * docker-proxy (its defaults).
 * - containerd RPCs per cycle, counted by the proxy a first daemon of ours talks
 *   through;
 * - wall time per cycle, both engines straight on containerd, alternating so
 *   drift falls on each alike; and the CPU time our daemon and dockerd spent
 *   (from /proc/<pid>/stat), per cycle.
 * Every address is on this machine: the published ports on 127.0.0.1, the
 * bridges on private pools (ours 10.253/16, dockerd's 10.252.0.1/24).
 * Target: ahead of dockerd.
 */
import { Effect, Option, Schedule } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { dockerCli, startDaemon } from "../test/support/DaemonHarness.ts"
import { startDockerd } from "../test/support/Dockerd.ts"
import { percentile, report, type Figure } from "./Report.ts"
import { benchDaemon, countedBy, cpuMs, FIXTURE_IMAGE, NAMESPACE, timed } from "./Setup.ts"

const RUNS = 15

/** Our daemon's networking flags: a pool of its own, away from dockerd's and any real network. */
const OUR_NETWORK_FLAGS = ["--bip", "10.253.0.1/24", "--default-address-pool", "base=10.253.0.0/16,size=24"]

/** One GET to 127.0.0.1:`port`, retried until something answers over HTTP (any status). */
const reach = (port: number) =>
  Effect.callback<number, Error>((resume) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/", timeout: 2_000 }, (res) => {
      res.resume()
      res.on("end", () => resume(Effect.succeed(res.statusCode ?? 0)))
    })
    req.on("timeout", () => req.destroy(new Error("timed out")))
    req.on("error", (cause) => resume(Effect.fail(cause)))
    return Effect.sync(() => req.destroy())
  }).pipe(Effect.retry({ schedule: Schedule.spaced("10 millis"), times: 500 }))

/** A cycle against the engine on `socket`: run with a published port, reach it, remove. */
const cycleOn = (socket: string, dockerConfig: string) => {
  const cli = dockerCli(socket, dockerConfig)
  const docker = (...args: ReadonlyArray<string>) =>
    Effect.flatMap(cli(args), (r) =>
      r.code === 0 ? Effect.succeed(r.stdout.trim()) : Effect.fail(new Error(`docker ${args.join(" ")}: ${r.stderr}`)))
  return (port: number) =>
    Effect.gen(function*() {
      const id = yield* docker("run", "-d", "-p", `127.0.0.1:${port}:80`, FIXTURE_IMAGE, "httpd", "-f", "-p", "80")
      yield* reach(port)
      yield* docker("rm", "-f", id)
    })
}

export const networkBench = Effect.gen(function*() {
  const { image, instance, proxy } = yield* benchDaemon
  const dockerConfig = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-docker-config-"))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

  const rpcs = yield* Effect.scoped(Effect.gen(function*() {
    const counted = yield* startDaemon({ containerd: proxy.address, namespace: NAMESPACE, flags: OUR_NETWORK_FLAGS, bridge: true })
    const cycle = cycleOn(counted.socket, dockerConfig)
    yield* cycle(17990)
    return (yield* countedBy(proxy, cycle(17991))).calls
  }))

  // dockerd's, the same way (when installed): a second dockerd through the proxy.
  const theirRpcs = yield* Effect.scoped(Effect.gen(function*() {
    const counted = yield* startDockerd(proxy.address, image, { bridge: { bip: "10.252.1.1/24" } })
    if (Option.isNone(counted)) return Option.none<number>()
    const cycle = cycleOn(counted.value.socket, dockerConfig)
    yield* cycle(17992)
    return Option.some((yield* countedBy(proxy, cycle(17993))).calls)
  }))

  const ours = yield* startDaemon({ containerd: instance.address, namespace: NAMESPACE, flags: OUR_NETWORK_FLAGS, bridge: true })
  const dockerd = yield* startDockerd(instance.address, image, { bridge: { bip: "10.252.0.1/24" } })
  const oursCycle = cycleOn(ours.socket, dockerConfig)
  const theirCycle = Option.map(dockerd, (d) => cycleOn(d.socket, dockerConfig))
  yield* oursCycle(18000)
  if (Option.isSome(theirCycle)) yield* theirCycle.value(19000)

  const wall = { ours: [] as Array<number>, dockerd: [] as Array<number> }
  const cpu = { ours: 0, dockerd: 0 }
  const dockerdPid = Option.map(dockerd, (d) => d.pid)
  for (let i = 1; i <= RUNS; i++) {
    const before = cpuMs(ours.pid()!)
    wall.ours.push((yield* timed(oursCycle(18000 + i))).ms)
    cpu.ours += cpuMs(ours.pid()!) - before
    if (Option.isSome(theirCycle) && Option.isSome(dockerdPid)) {
      const theirsBefore = cpuMs(dockerdPid.value)
      wall.dockerd.push((yield* timed(theirCycle.value(19000 + i))).ms)
      cpu.dockerd += cpuMs(dockerdPid.value) - theirsBefore
    }
  }
  const p50 = (xs: ReadonlyArray<number>) => Math.round(percentile(xs, 50))
  const theirs: ReadonlyArray<Figure> = Option.isNone(theirCycle)
    ? [{ name: "dockerd 20.10: not installed (apt install docker.io), not compared", value: 0, unit: "" }]
    : [
      { name: "containerd RPCs per cycle, dockerd", value: Option.getOrElse(theirRpcs, () => 0), unit: "" },
      { name: `wall time p50, dockerd (${RUNS} runs)`, value: p50(wall.dockerd), unit: "ms" },
      { name: "dockerd CPU time per cycle", value: Math.round(cpu.dockerd / RUNS), unit: "ms" },
      { name: "ratio ours / dockerd, wall time p50 (target < 1)", value: Math.round((p50(wall.ours) / p50(wall.dockerd)) * 100) / 100, unit: "x" },
      { name: "ratio ours / dockerd, daemon CPU time (target < 1)", value: Math.round((cpu.ours / cpu.dockerd) * 100) / 100, unit: "x" }
    ]
  yield* report("network: docker run -d -p + reach the port + docker rm -f, ours vs dockerd 20.10 (same containerd, one run)", [
    { name: "containerd RPCs per cycle, ours", value: rpcs, unit: "" },
    { name: `wall time p50, ours (${RUNS} runs)`, value: p50(wall.ours), unit: "ms" },
    { name: "our daemon's CPU time per cycle", value: Math.round(cpu.ours / RUNS), unit: "ms" },
    ...theirs
  ])
}).pipe(Effect.scoped)
