/**
 * `docker stats --no-stream` of 20 running containers against dockerd 20.10,
 * side by side on one private containerd: wall time per call (p50) and the CPU
 * time the daemon spent per call (from /proc/<pid>/stat), both engines
 * alternating so drift falls on each alike. The CLI asks each container's
 * `stream=false` answer at once: two samples a second apart on both engines
 * (dockerd's collector ticks each second), so wall time is near 1 s by design.
 * Target: ahead of dockerd.
 */
import { Effect, Option } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { dockerCli, startDaemon } from "../test/support/DaemonHarness.ts"
import { startDockerd } from "../test/support/Dockerd.ts"
import { percentile, report, type Figure } from "./Report.ts"
import { benchDaemon, cpuMs, FIXTURE_IMAGE, NAMESPACE, timed } from "./Setup.ts"

const CONTAINERS = 20
const RUNS = 7

/** The engine on `socket` with `CONTAINERS` sleeping containers; its stats call. */
const prepared = (socket: string, dockerConfig: string) =>
  Effect.gen(function*() {
    const cli = dockerCli(socket, dockerConfig)
    const docker = (...args: ReadonlyArray<string>) =>
      Effect.flatMap(cli(args, { timeout: 60_000 }), (r) =>
        r.code === 0 ? Effect.succeed(r.stdout.trim()) : Effect.fail(new Error(`docker ${args.join(" ")}: ${r.stderr}`)))
    yield* Effect.forEach(
      Array.from({ length: CONTAINERS }, (_, i) => i),
      (i) => docker("run", "-d", "--name", `stats-${i}`, FIXTURE_IMAGE, "sleep", "1000"),
      { concurrency: 4, discard: true }
    )
    return Effect.flatMap(docker("stats", "--no-stream"), (out) =>
      out.split("\n").length === CONTAINERS + 1 ? Effect.void : Effect.fail(new Error(`docker stats printed: ${out}`)))
  })

export const statsBench = Effect.gen(function*() {
  const { image, instance } = yield* benchDaemon
  const dockerConfig = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-docker-config-"))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )
  const ours = yield* startDaemon({ containerd: instance.address, namespace: NAMESPACE })
  const dockerd = yield* startDockerd(instance.address, image)
  const oursCall = yield* prepared(ours.socket, dockerConfig)
  const theirCall = Option.isSome(dockerd) ? Option.some(yield* prepared(dockerd.value.socket, dockerConfig)) : Option.none()
  yield* oursCall
  if (Option.isSome(theirCall)) yield* theirCall.value

  const wall = { ours: [] as Array<number>, dockerd: [] as Array<number> }
  const cpu = { ours: 0, dockerd: 0 }
  for (let i = 0; i < RUNS; i++) {
    const before = cpuMs(ours.pid()!)
    wall.ours.push((yield* timed(oursCall)).ms)
    cpu.ours += cpuMs(ours.pid()!) - before
    if (Option.isSome(theirCall) && Option.isSome(dockerd)) {
      const theirsBefore = cpuMs(dockerd.value.pid)
      wall.dockerd.push((yield* timed(theirCall.value)).ms)
      cpu.dockerd += cpuMs(dockerd.value.pid) - theirsBefore
    }
  }
  const p50 = (xs: ReadonlyArray<number>) => Math.round(percentile(xs, 50))
  const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100
  const theirs: ReadonlyArray<Figure> = Option.isNone(theirCall)
    ? [{ name: "dockerd 20.10: not installed (apt install docker.io), not compared", value: 0, unit: "" }]
    : [
      { name: `wall time p50, dockerd (${RUNS} runs)`, value: p50(wall.dockerd), unit: "ms" },
      { name: "dockerd CPU time per call", value: Math.round(cpu.dockerd / RUNS), unit: "ms" },
      { name: "ratio ours / dockerd, wall time p50 (target < 1)", value: ratio(p50(wall.ours), p50(wall.dockerd)), unit: "x" },
      { name: "ratio ours / dockerd, daemon CPU time (target < 1)", value: ratio(cpu.ours, cpu.dockerd), unit: "x" }
    ]
  yield* report(`stats: docker stats --no-stream of ${CONTAINERS} running containers, ours vs dockerd 20.10 (same containerd, one run)`, [
    { name: `wall time p50, ours (${RUNS} runs)`, value: p50(wall.ours), unit: "ms" },
    { name: "our daemon's CPU time per call", value: Math.round(cpu.ours / RUNS), unit: "ms" },
    ...theirs
  ])
}).pipe(Effect.scoped)
