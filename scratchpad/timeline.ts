/**
 * Where the time of a docker CLI cycle goes: CLI processes, HTTP requests (seen
 * by a pass-through socket in front of the daemon) and containerd calls (seen
 * by the counting proxy), on one time line, with `ctr run --rm` after it for comparison in milliseconds from the cycle's start.
 *
 *   node --experimental-transform-types --no-warnings scratchpad/timeline.ts [cycles]
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { benchDaemon, FIXTURE_IMAGE, NAMESPACE } from "../bench/Setup.ts"
import { startDaemon } from "../test/support/DaemonHarness.ts"

const cycles = Number(process.argv[2] ?? 3)
const now = () => performance.timeOrigin + performance.now()

const program = Effect.gen(function*() {
  const { ctr, proxy } = yield* benchDaemon
  const daemon = yield* startDaemon({ containerd: proxy.address, namespace: NAMESPACE })
  const front = path.join(daemon.dir, "front.sock")
  const marks: Array<{ at: number; what: string }> = []
  const mark = (what: string) => marks.push({ at: now(), what })
  const server = net.createServer((client) => {
    const upstream = net.connect(daemon.socket)
    client.on("data", (chunk) => {
      const line = chunk.toString("latin1").split("\r\n")[0]!
      if (/^[A-Z]+ \//.test(line)) mark(`  http > ${line.replace(/ HTTP\/1\.1$/, "")}`)
      upstream.write(chunk)
    })
    upstream.on("data", (chunk) => {
      const line = chunk.toString("latin1").split("\r\n")[0]!
      if (line.startsWith("HTTP/1.1")) mark(`  http < ${line}`)
      client.write(chunk)
    })
    client.on("end", () => upstream.end())
    upstream.on("end", () => client.end())
    client.on("error", () => upstream.destroy())
    upstream.on("error", () => client.destroy())
  })
  yield* Effect.callback<void>((resume) => void server.listen(front, () => resume(Effect.void)))
  const docker = (...args: Array<string>) =>
    Effect.callback<string>((resume) => {
      mark(`docker ${args.join(" ")}`)
      execFile("docker", ["--host", `unix://${front}`, ...args], { env: { ...process.env, DOCKER_CLI_HINTS: "false" } }, (_e, stdout) => {
        mark(`docker ${args[0]} exited`)
        resume(Effect.succeed(stdout.trim()))
      })
    })
  const cycle = Effect.gen(function*() {
    const id = yield* docker("run", "-d", FIXTURE_IMAGE, "true")
    yield* docker("wait", id)
    yield* docker("rm", id)
  })
  yield* cycle
  for (let i = 0; i < cycles; i++) {
    marks.length = 0
    const from = proxy.timeline().length
    const start = now()
    yield* cycle
    yield* docker("run", "--rm", FIXTURE_IMAGE, "true")
    mark("ctr run --rm (through the proxy)")
    yield* ctr(proxy.address, ["run", "--rm", FIXTURE_IMAGE, `ctr-${i}`, "true"])
    mark("ctr exited")
    const rows = [
      ...marks,
      ...proxy.timeline().slice(from).map((c) => ({
        at: c.start,
        what: `    rpc ${c.method.split("/").slice(-2).join(".")} ${(c.end - c.start).toFixed(1)} ms`
      }))
    ].sort((a, b) => a.at - b.at)
    console.log(`--- cycle ${i}`)
    for (const row of rows) console.log(`${(row.at - start).toFixed(1).padStart(7)}  ${row.what}`)
  }
  server.close()
  fs.rmSync(front, { force: true })
}).pipe(Effect.scoped)

NodeRuntime.runMain(program)
