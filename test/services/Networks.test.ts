/**
 * The Networks layer against the real CNI plugins, iptables and network
 * namespaces of this host (no containerd: an attachment is checked from inside
 * its netns with nsenter). Every bridge, subnet and directory is this file's
 * own (random names, subnets not routed on the host) and is removed at the end.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Scope } from "effect"
import { execFileSync, spawnSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Networks, type NetworksOptions } from "../../src/services/Networks.ts"

const run = (command: string, args: ReadonlyArray<string>) =>
  spawnSync(command, args, { encoding: "utf8", timeout: 10_000 })
const out = (command: string, args: ReadonlyArray<string>) => execFileSync(command, args, { encoding: "utf8", timeout: 10_000 })

const tag = crypto.randomBytes(2).toString("hex")
const root = fs.mkdtempSync(path.join(os.tmpdir(), "efc-net-"))
const baseOptions: NetworksOptions = {
  confDir: path.join(root, "conf"),
  runRoot: path.join(root, "run"),
  ipamDir: path.join(root, "ipam")
}

/** /24s in 10.254.128.0/17 that no route on this host covers (other tests define theirs at the same time). */
const routed = out("ip", ["-4", "route", "show", "table", "all"])
const freeSubnets = (() => {
  const start = crypto.randomInt(0, 96)
  const subnets: Array<string> = []
  for (let i = 0; i < 128 && subnets.length < 8; i++) {
    const third = 128 + ((start + i) % 128)
    if (!routed.includes(`10.254.${third}.`)) subnets.push(`10.254.${third}.0/24`)
  }
  return subnets
})()
const bridge = (n: number) => `efct${tag}${n}`

const networksLayer = (options: NetworksOptions = baseOptions) => Networks.layer(options)

/** The IPv4 addresses inside a netns, by interface. */
const addressesIn = (netns: string): Record<string, Array<string>> => {
  const links = JSON.parse(out("nsenter", [`--net=${netns}`, "ip", "-j", "-4", "addr"])) as Array<
    { ifname: string; addr_info: Array<{ local: string; prefixlen: number }> }
  >
  return Object.fromEntries(links.map((link) => [link.ifname, link.addr_info.map((a) => `${a.local}/${a.prefixlen}`)]))
}

const ipamFiles = (network: string) => {
  const dir = path.join(baseOptions.ipamDir!, network)
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((file) => /^\d+\.\d+\.\d+\.\d+$/.test(file)) : []
}
const vethsOn = (br: string) =>
  out("ip", ["-br", "link", "show", "master", br]).split("\n").filter((line) => line.trim() !== "").length
const rulesOf = (br: string) => out("iptables-save", []).split("\n").filter((line) => line.includes(`efc:${br}`))
const netnsFiles = () => {
  const dir = path.join(baseOptions.runRoot, "netns")
  return fs.existsSync(dir) ? fs.readdirSync(dir) : []
}
const records = () => {
  const dir = path.join(baseOptions.confDir, "attachments")
  return fs.existsSync(dir) ? fs.readdirSync(dir) : []
}

/** Whatever a failed test left: netns pins, our bridges and their rules, the directories. */
afterAll(() => {
  for (const file of netnsFiles()) run("umount", ["-l", path.join(baseOptions.runRoot, "netns", file)])
  for (const line of out("ip", ["-br", "link"]).split("\n")) {
    const device = line.split(/\s+/)[0]!
    if (device.startsWith(`efct${tag}`)) run("ip", ["link", "del", device])
  }
  const ours = out("iptables-save", []).split("\n").filter((line) => line.startsWith("-A ") && line.includes(`efc:efct${tag}`))
  const restore = (table: string, lines: Array<string>) => lines.length === 0 ? "" : `*${table}\n${lines.map((l) => `-D${l.slice(2)}`).join("\n")}\nCOMMIT\n`
  const input = restore("filter", ours.filter((l) => !l.startsWith("-A EFC-POSTROUTING"))) +
    restore("nat", ours.filter((l) => l.startsWith("-A EFC-POSTROUTING")))
  if (input !== "") spawnSync("iptables-restore", ["--noflush", "-w"], { input })
  fs.rmSync(root, { recursive: true, force: true })
})

describe("Networks (real CNI plugins, iptables, netns)", () => {
  it.live("attach: eth0 with an address of the subnet and lo up; a second container reaches the first; detach leaves nothing", () =>
    Effect.gen(function*() {
      const networks = yield* Networks
      const name = `efct-${tag}-a`
      yield* networks.define({ name, bridge: bridge(0), subnet: freeSubnets[0]! })
      const scope = yield* Effect.scope
      const containers = yield* Scope.fork(scope)
      const a = yield* networks.attach("ns1", `a-${tag}`, { networks: [{ network: name }] }).pipe(Scope.provide(containers))
      const b = yield* networks.attach("ns1", `b-${tag}`, { networks: [{ network: name }] }).pipe(Scope.provide(containers))
      assert.strictEqual(a.netns, networks.netnsPath("ns1", `a-${tag}`))
      const [endpoint] = a.endpoints
      assert.strictEqual(endpoint?.ifname, "eth0")
      assert.match(endpoint!.mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/)
      assert.strictEqual(endpoint!.gateway, freeSubnets[0]!.replace(/0\/24$/, "1"))
      const inside = addressesIn(a.netns)
      assert.deepStrictEqual(inside.eth0, [`${endpoint!.address}/${endpoint!.prefixLength}`])
      assert.deepStrictEqual(inside.lo, ["127.0.0.1/8"])
      const ping = run("nsenter", [`--net=${b.netns}`, "busybox", "ping", "-c1", "-W2", endpoint!.address])
      assert.strictEqual(ping.status, 0, ping.stdout + ping.stderr)
      assert.strictEqual(ipamFiles(name).length, 2)

      yield* Scope.close(containers, Exit.void)
      assert.deepStrictEqual(ipamFiles(name), [])
      assert.strictEqual(vethsOn(bridge(0)), 0)
      assert.deepStrictEqual(netnsFiles(), [])
      assert.deepStrictEqual(records(), [])
      assert.isTrue(Option.isNone(yield* networks.get("ns1", `a-${tag}`)))
      // Idempotent: a second detach of what is gone does nothing.
      yield* networks.detach("ns1", `a-${tag}`)
      yield* networks.remove(name)
      assert.deepStrictEqual(rulesOf(bridge(0)), [])
      assert.strictEqual(run("ip", ["link", "show", bridge(0)]).status, 1)
    }).pipe(Effect.scoped, Effect.provide(networksLayer())))
})
