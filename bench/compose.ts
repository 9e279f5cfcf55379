/**
 * docker-compose 1.29 against dockerd 20.10, side by side on one private
 * containerd: `up -d` then `down -v` of the acceptance test's application
 * (`test/daemon/compose/docker-compose.yml`: a user network, a published port,
 * a named volume, a healthcheck the second service waits on), alternating the
 * engines so drift falls on each alike.
 * - wall time per cycle (p50), the healthcheck's wait included: both engines
 *   run the same 300 ms probe interval;
 * - the CPU time each daemon spent per cycle (from /proc/<pid>/stat), which the
 *   compose client's own time does not blur.
 * Every address is on this machine: the networks on private pools, the port on
 * the host's loopback and bridges. Target: ahead of dockerd.
 */
import { Effect, Option } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { startDaemon } from "../test/support/DaemonHarness.ts"
import { startDockerd } from "../test/support/Dockerd.ts"
import { percentile, report, type Figure } from "./Report.ts"
import { benchDaemon, cpuMs, FIXTURE_IMAGE, NAMESPACE, timed } from "./Setup.ts"

const RUNS = 5
const COMPOSE_FILE = path.resolve(import.meta.dirname, "../../test/daemon/compose/docker-compose.yml")

/** `docker-compose ARGS` of the bench project against the engine on `socket`. */
const compose = (socket: string, dockerConfig: string, args: ReadonlyArray<string>) =>
  Effect.callback<void, Error>((resume) => {
    execFile(
      "docker-compose",
      ["-f", COMPOSE_FILE, "-p", "benchapp", ...args],
      {
        env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: dockerConfig, FIXTURE_IMAGE },
        timeout: 120_000
      },
      (error, _stdout, stderr) =>
        resume(error ? Effect.fail(new Error(`docker-compose ${args.join(" ")}: ${stderr || error.message}`)) : Effect.void)
    )
  })

/** One cycle: the application up (healthy before its client starts), then down with its volumes. */
const cycleOn = (socket: string, dockerConfig: string) =>
  Effect.andThen(compose(socket, dockerConfig, ["up", "-d"]), compose(socket, dockerConfig, ["down", "-v"]))

export const composeBench = Effect.gen(function*() {
  const { image, instance } = yield* benchDaemon
  const dockerConfig = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-docker-config-"))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )
  const ours = yield* startDaemon({
    containerd: instance.address,
    namespace: NAMESPACE,
    flags: ["--default-address-pool", "base=10.253.0.0/16,size=24"]
  })
  const dockerd = yield* startDockerd(instance.address, image)
  const oursCycle = cycleOn(ours.socket, dockerConfig)
  const theirCycle = Option.map(dockerd, (d) => cycleOn(d.socket, dockerConfig))
  // A first cycle each, unmeasured: compose's and the daemons' first-use costs.
  yield* oursCycle
  if (Option.isSome(theirCycle)) yield* theirCycle.value

  const wall = { ours: [] as Array<number>, dockerd: [] as Array<number> }
  const cpu = { ours: 0, dockerd: 0 }
  for (let i = 0; i < RUNS; i++) {
    const before = cpuMs(ours.pid()!)
    wall.ours.push((yield* timed(oursCycle)).ms)
    cpu.ours += cpuMs(ours.pid()!) - before
    if (Option.isSome(theirCycle) && Option.isSome(dockerd)) {
      const theirsBefore = cpuMs(dockerd.value.pid)
      wall.dockerd.push((yield* timed(theirCycle.value)).ms)
      cpu.dockerd += cpuMs(dockerd.value.pid) - theirsBefore
    }
  }
  const p50 = (xs: ReadonlyArray<number>) => Math.round(percentile(xs, 50))
  const theirs: ReadonlyArray<Figure> = Option.isNone(theirCycle)
    ? [{ name: "dockerd 20.10: not installed (apt install docker.io), not compared", value: 0, unit: "" }]
    : [
      { name: `wall time p50, dockerd (${RUNS} runs)`, value: p50(wall.dockerd), unit: "ms" },
      { name: "dockerd CPU time per cycle", value: Math.round(cpu.dockerd / RUNS), unit: "ms" },
      { name: "ratio ours / dockerd, wall time p50 (target < 1)", value: Math.round((p50(wall.ours) / p50(wall.dockerd)) * 100) / 100, unit: "x" },
      { name: "ratio ours / dockerd, daemon CPU time (target < 1)", value: Math.round((cpu.ours / cpu.dockerd) * 100) / 100, unit: "x" }
    ]
  yield* report("compose: docker-compose up -d + down -v of the test application, ours vs dockerd 20.10 (same containerd, one run)", [
    { name: `wall time p50, ours (${RUNS} runs)`, value: p50(wall.ours), unit: "ms" },
    { name: "our daemon's CPU time per cycle", value: Math.round(cpu.ours / RUNS), unit: "ms" },
    ...theirs
  ])
}).pipe(Effect.scoped)
