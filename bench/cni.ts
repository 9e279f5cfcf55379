/**
 * Network setup per container: our `Networks.attach` + `detach` (netns pinned,
 * loopback, bridge + host-local, portmap with one published port; DEL in
 * reverse, netns removed) against the same plugins, with the same conflist,
 * run directly by a loop of `spawnSync`s — what the plugins cost on their own,
 * the part no runtime can remove. Alternating, on a bridge and a pool of the
 * benchmark's own (10.253.250.0/24), removed at the end.
 */
import { Effect, Layer } from "effect"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Networks } from "../src/services/Networks.ts"
import { percentile, report } from "./Report.ts"
import { timed } from "./Setup.ts"

const RUNS = 20
const PLUGINS = "/usr/lib/cni"

/** One plugin exec, as the CNI spec says: its result (stdout, JSON). */
const plugin = (type: string, command: string, conf: unknown, env: Record<string, string>) => {
  const run = spawnSync(path.join(PLUGINS, type), [], {
    input: JSON.stringify(conf),
    encoding: "utf8",
    env: { ...process.env, ...env, CNI_COMMAND: command, CNI_PATH: PLUGINS }
  })
  if (run.status !== 0) throw new Error(`${type} ${command}: ${run.stdout}${run.stderr}`)
  return run.stdout === "" ? undefined : JSON.parse(run.stdout) as unknown
}

/** What Networks.attach + detach does, done by hand with the same conflist: its wall time in ms. */
const direct = (list: { cniVersion: string; name: string; plugins: ReadonlyArray<Record<string, unknown>> }, dir: string, i: number) => {
  const start = performance.now()
  const netns = path.join(dir, `direct-${i}`)
  fs.writeFileSync(netns, "")
  spawnSync("unshare", [`--net=${netns}`, "true"])
  const env = { CNI_CONTAINERID: `direct-${i}`, CNI_NETNS: netns }
  const input = (conf: Record<string, unknown>, prevResult: unknown) => ({
    ...conf, cniVersion: list.cniVersion, name: list.name,
    ...(prevResult === undefined ? {} : { prevResult }),
    ...(conf["type"] === "portmap" ? { runtimeConfig: { portMappings: [{ hostPort: 21000 + i, containerPort: 80, protocol: "tcp" }] } } : {})
  })
  plugin("loopback", "ADD", { cniVersion: list.cniVersion, name: "loopback", type: "loopback" }, { ...env, CNI_IFNAME: "lo" })
  let result: unknown
  for (const conf of list.plugins) result = plugin(String(conf["type"]), "ADD", input(conf, result), { ...env, CNI_IFNAME: "eth0" })
  for (const conf of [...list.plugins].reverse()) plugin(String(conf["type"]), "DEL", input(conf, result), { ...env, CNI_IFNAME: "eth0" })
  spawnSync("umount", [netns])
  fs.rmSync(netns)
  return performance.now() - start
}

export const cniBench = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-cni-bench-"))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )
  const options = { confDir: path.join(dir, "conf"), runRoot: path.join(dir, "run") }
  const network = { name: "efc-bench", bridge: "efcbench0", subnet: "10.253.250.0/24" }
  const samples = yield* Effect.gen(function*() {
    const networks = yield* Networks
    yield* networks.define(network)
    yield* Effect.addFinalizer(() => Effect.ignore(networks.remove(network.name)))
    const list = JSON.parse(fs.readFileSync(path.join(options.confDir, `${network.name}.conflist`), "utf8"))
    const ours: Array<number> = []
    const theirs: Array<number> = []
    for (let i = 0; i < RUNS; i++) {
      const { ms } = yield* timed(Effect.scoped(networks.attach("bench", `ours-${i}`, {
        networks: [{ network: network.name }],
        ports: [{ hostPort: 20000 + i, containerPort: 80, protocol: "tcp" }]
      })))
      ours.push(ms)
      theirs.push(yield* Effect.try(() => direct(list, dir, i)))
    }
    return { ours, theirs }
  }).pipe(Effect.provide(Layer.fresh(Networks.layer(options))), Effect.scoped)
  const p50 = (xs: ReadonlyArray<number>) => Math.round(percentile(xs, 50))
  yield* report("cni: a container's network set up and torn down (loopback, bridge, portmap with one port), ours vs the plugins run directly", [
    { name: `wall time p50, Networks.attach + detach (${RUNS} runs)`, value: p50(samples.ours), unit: "ms" },
    { name: "wall time p50, the same plugins and conflist run directly", value: p50(samples.theirs), unit: "ms" },
    { name: "ratio ours / plugins alone", value: Math.round((p50(samples.ours) / p50(samples.theirs)) * 100) / 100, unit: "x" }
  ])
}).pipe(Effect.scoped)
