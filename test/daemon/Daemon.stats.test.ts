/**
 * `GET /containers/{id}/stats` as dockerd 20.10 answers it: the refusals (404
 * before the stream/one-shot 400) and a stopped container's empty frame
 * compared with dockerd's where it is installed; `docker stats --no-stream`
 * (the `-m` limit, PIDS, a bridge container's NET I/O); dockerode's
 * `stream: false` (two samples a second apart, CPU moving); one-shot (one
 * sample, no precpu); a stream's frames chained until `rm -f` ends it.
 */
import { assert, layer } from "@effect/vitest"
import Docker from "dockerode"
import * as http from "node:http"
import { Effect, Fiber } from "effect"
import { bothEngines, type Engine, engines, Engines, eventually, ok } from "../support/Engines.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"

const API = "/v1.41"

interface Cpu {
  readonly cpu_usage: { readonly total_usage: number }
  readonly system_cpu_usage?: number
  readonly online_cpus?: number
}
interface Frame {
  readonly read: string
  readonly preread: string
  readonly name: string
  readonly id: string
  readonly pids_stats: { readonly current?: number }
  readonly cpu_stats: Cpu
  readonly precpu_stats: Cpu
  readonly memory_stats: { readonly usage?: number; readonly limit?: number; readonly stats?: Record<string, number> }
  readonly networks?: Record<string, { readonly rx_bytes: number }>
}

const get = (engine: Engine, path: string) => engine.request("GET", `${API}${path}`).pipe(Effect.orDie)

const refusal = (engine: Engine, path: string) =>
  Effect.map(get(engine, path), (r) => ({ status: r.status, message: (JSON.parse(r.body) as { message: string }).message }))

/** The frames of a stream, in `frames` as they come; succeeds when the daemon ends the answer. */
const streamFrames = (socket: string, path: string, frames: Array<Frame>) =>
  Effect.callback<number>((resume) => {
    const req = http.request({ socketPath: socket, path: `${API}${path}`, agent: false }, (res) => {
      let pending = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => {
        pending += chunk
        const lines = pending.split("\n")
        pending = lines.pop() ?? ""
        for (const line of lines) if (line !== "") frames.push(JSON.parse(line) as Frame)
      })
      res.on("end", () => resume(Effect.succeed(res.statusCode ?? 0)))
    })
    req.on("error", (cause) => resume(Effect.die(cause)))
    req.end()
    return Effect.sync(() => req.destroy())
  })

const promise = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: (cause) => cause }).pipe(Effect.orDie)

layer(engines("stats", [], { bridge: true }), { excludeTestServices: true, timeout: 60_000 })("stats", (it) => {
  it.effect("a missing container is a 404 before stream+one-shot is a 400; a stopped one answers its empty frame, as dockerd", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        const name = `${engine.name}-st-stopped`
        assert.deepStrictEqual(yield* refusal(engine, `/containers/${engine.name}-st-nosuch/stats?stream=1&one-shot=1`), {
          status: 404,
          message: `No such container: ${engine.name}-st-nosuch`
        })
        const id = (yield* ok(engine, ["create", "--name", name, FIXTURE_IMAGE, "true"])).trim()
        assert.deepStrictEqual(yield* refusal(engine, `/containers/${name}/stats?stream=true&one-shot=true`), {
          status: 400,
          message: "cannot have stream=true and one-shot=true"
        })
        const answer = yield* get(engine, `/containers/${name}/stats?stream=false`)
        assert.strictEqual(answer.status, 200)
        const zero = { cpu_usage: { total_usage: 0, usage_in_kernelmode: 0, usage_in_usermode: 0 }, throttling_data: { periods: 0, throttled_periods: 0, throttled_time: 0 } }
        const blkio = ["io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive", "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive", "io_time_recursive", "sectors_recursive"]
        assert.deepStrictEqual(JSON.parse(answer.body), {
          read: "0001-01-01T00:00:00Z",
          preread: "0001-01-01T00:00:00Z",
          pids_stats: {},
          blkio_stats: Object.fromEntries(blkio.map((key) => [key, null])),
          num_procs: 0,
          storage_stats: {},
          cpu_stats: zero,
          precpu_stats: zero,
          memory_stats: {},
          name: `/${name}`,
          id
        })
        yield* ok(engine, ["rm", name])
      })))

  it.effect("docker stats --no-stream prints the -m limit, the pids and a bridge container's NET I/O; none on --network none", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      yield* ok(ours, ["run", "-d", "--name", "st-cli", "-m", "64m", FIXTURE_IMAGE, "sh", "-c", "sleep 1000 & sleep 1000"])
      yield* ok(ours, ["run", "-d", "--name", "st-none", "--network", "none", FIXTURE_IMAGE, "sleep", "1000"])
      const line = yield* ok(ours, ["stats", "--no-stream", "--format", "{{.Name}}|{{.MemUsage}}|{{.NetIO}}|{{.PIDs}}", "st-cli"])
      const [name, memory, net, pids] = line.trim().split("|")
      assert.strictEqual(name, "st-cli")
      assert.match(memory ?? "", /^[\d.]+[KMG]?i?B \/ 64MiB$/)
      assert.match(net ?? "", /^[\d.]+[kMG]?B \/ [\d.]+[kMG]?B$/)
      // Two sleeps (the shell execs the last one).
      assert.strictEqual(Number(pids), 2)
      const bridged = JSON.parse((yield* get(ours, "/containers/st-cli/stats?stream=0&one-shot=1")).body) as Frame
      assert.deepStrictEqual(Object.keys(bridged.networks ?? {}), ["eth0"])
      assert.strictEqual(bridged.memory_stats.limit, 64 * 1024 * 1024)
      assert.isAbove(bridged.memory_stats.stats?.["total_inactive_file"] ?? -1, -1)
      const none = yield* get(ours, "/containers/st-none/stats?stream=0&one-shot=1")
      const unlimited = JSON.parse(none.body) as Frame
      assert.isUndefined(unlimited.networks)
      // No limit: the host's memory, while the cgroup's 2^63-4096 is written exactly (a bigint, not a rounded number).
      assert.isAbove(unlimited.memory_stats.limit ?? 0, 64 * 1024 * 1024)
      assert.include(none.body, `"hierarchical_memory_limit":9223372036854771712`)
      yield* ok(ours, ["rm", "-f", "st-cli", "st-none"])
    }))

  it.effect("dockerode stream:false answers two samples a second apart (CPU moving); one-shot answers one sample without precpu", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const docker = new Docker({ socketPath: ours.socket })
      const id = (yield* ok(ours, ["run", "-d", "--name", "st-busy", FIXTURE_IMAGE, "sh", "-c", "while :; do :; done"])).trim()
      const frame = (yield* promise(() => docker.getContainer("st-busy").stats({ stream: false }))) as unknown as Frame
      assert.strictEqual(frame.name, "/st-busy")
      assert.strictEqual(frame.id, id)
      assert.notStrictEqual(frame.preread, "0001-01-01T00:00:00Z")
      assert.isAbove(Date.parse(frame.read) - Date.parse(frame.preread), 500)
      assert.isAbove(frame.precpu_stats.cpu_usage.total_usage, 0)
      assert.isAbove(frame.cpu_stats.cpu_usage.total_usage, frame.precpu_stats.cpu_usage.total_usage)
      assert.isAbove(frame.cpu_stats.system_cpu_usage ?? 0, frame.precpu_stats.system_cpu_usage ?? 0)
      assert.isAtLeast(frame.cpu_stats.online_cpus ?? 0, 1)
      const oneShot = (yield* promise(() => docker.getContainer("st-busy").stats({ stream: false, "one-shot": true } as { stream: false }))) as unknown as Frame
      assert.isAbove(oneShot.cpu_stats.cpu_usage.total_usage, 0)
      assert.strictEqual(oneShot.preread, "0001-01-01T00:00:00Z")
      assert.deepStrictEqual(oneShot.precpu_stats.cpu_usage.total_usage, 0)
      assert.isUndefined(oneShot.precpu_stats.system_cpu_usage)
      assert.isAbove(oneShot.pids_stats.current ?? 0, 0)
      yield* ok(ours, ["rm", "-f", "st-busy"])
    }))

  it.effect("a stream sends a frame a second, each with the one before as its precpu, and ends when the container is removed", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      yield* ok(ours, ["run", "-d", "--name", "st-stream", FIXTURE_IMAGE, "sleep", "1000"])
      const frames: Array<Frame> = []
      const fiber = yield* Effect.forkChild(streamFrames(ours.socket, "/containers/st-stream/stats", frames))
      yield* eventually("two frames", Effect.sync(() => frames.length >= 2))
      const [first, second] = frames as [Frame, Frame]
      assert.strictEqual(first.preread, "0001-01-01T00:00:00Z")
      assert.strictEqual(second.preread, first.read)
      assert.deepStrictEqual(second.precpu_stats, first.cpu_stats)
      yield* ok(ours, ["rm", "-f", "st-stream"])
      assert.strictEqual(yield* Fiber.join(fiber).pipe(Effect.timeout("5 seconds"), Effect.orDie), 200)
    }))
})
