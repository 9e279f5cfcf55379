/**
 * The Networks layer against the real CNI plugins, iptables and network
 * namespaces of this host (no containerd: an attachment is checked from inside
 * its netns with nsenter). Every bridge, subnet and directory is this file's
 * own (random names, subnets not routed on the host) and is removed at the end.
 * Where a failure is injected it is a script placed before the real plugins
 * that fails one command and hands the others to the real plugin.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Metric, Option, Scope, Stream } from "effect"
import { execFileSync, spawn, spawnSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type { ContainerdError } from "../../src/domain/ContainerdError.ts"
import { CniExecTime } from "../../src/internal/Cni.ts"
import { Networks, type NetworksOptions } from "../../src/services/Networks.ts"

const run = (command: string, args: ReadonlyArray<string>) => spawnSync(command, args, { encoding: "utf8", timeout: 10_000 })
const out = (command: string, args: ReadonlyArray<string>) =>
  execFileSync(command, args, { encoding: "utf8", timeout: 10_000, stdio: ["ignore", "pipe", "ignore"] })

const tag = crypto.randomBytes(2).toString("hex")
const root = fs.mkdtempSync(path.join(os.tmpdir(), "efc-net-"))
let dirs = 0
/** Fresh state directories for one test (a second layer over the same ones is a restart). */
const freshOptions = (pluginDirs?: ReadonlyArray<string>): NetworksOptions => {
  const dir = path.join(root, String(dirs++))
  return { confDir: path.join(dir, "conf"), runRoot: path.join(dir, "run"), ipamDir: path.join(dir, "ipam"), pluginDirs }
}

/** /24s in 10.254.128.0/17 that no route on this host covers (other tests define theirs at the same time). */
const routed = out("ip", ["-4", "route", "show", "table", "all"])
const subnets = (() => {
  const start = crypto.randomInt(0, 128)
  const free: Array<string> = []
  for (let i = 0; i < 128 && free.length < 16; i++) {
    const third = 128 + ((start + i) % 128)
    if (!routed.includes(`10.254.${third}.`)) free.push(`10.254.${third}.0/24`)
  }
  return free
})()
let networksMade = 0
/** A definition of a new network of this file's own (bridge `efct<tag><n>`). */
const newNetwork = (extra?: { readonly internal?: boolean }) => {
  const n = networksMade++
  return { name: `efct-${tag}-${n}`, bridge: `efct${tag}${n}`, subnet: subnets[n]!, ...extra }
}

/** The IPv4 addresses inside a netns, by interface. */
const addressesIn = (netns: string): Record<string, Array<string>> => {
  const links = JSON.parse(out("nsenter", [`--net=${netns}`, "ip", "-j", "-4", "addr"])) as Array<
    { ifname: string; addr_info: Array<{ local: string; prefixlen: number }> }
  >
  return Object.fromEntries(links.map((link) => [link.ifname, link.addr_info.map((a) => `${a.local}/${a.prefixlen}`)]))
}

const list = (dir: string) => fs.existsSync(dir) ? fs.readdirSync(dir) : []
/** What an attachment may leave: host-local IP files, veths on the bridge, the bridge's and portmap's rules, netns pins, records. */
const leftovers = (options: NetworksOptions, network: { name: string; bridge: string }, containerIds: ReadonlyArray<string> = []) => {
  const rules = out("iptables-save", []).split("\n")
  return {
    ips: list(path.join(options.ipamDir!, network.name)).filter((file) => /^\d+\.\d+\.\d+\.\d+$/.test(file)).length,
    veths: (run("ip", ["-br", "link", "show", "master", network.bridge]).stdout ?? "").split("\n").filter((l) => l.trim() !== "").length,
    portmapRules: rules.filter((line) => containerIds.some((id) => line.includes(id))).length,
    netns: list(path.join(options.runRoot, "netns")).length,
    records: list(path.join(options.confDir, "attachments")).length
  }
}
const nothingLeft = { ips: 0, veths: 0, portmapRules: 0, netns: 0, records: 0 }
const bridgeRules = (bridge: string) => out("iptables-save", []).split("\n").filter((line) => line.includes(`efc:${bridge}`))

/** A plugin dir holding one script `plugin` that runs `body` (sh) and else hands over to the real plugin. */
const fakePlugin = (plugin: string, body: string) => {
  const dir = fs.mkdtempSync(path.join(root, "plugins-"))
  fs.writeFileSync(path.join(dir, plugin), `#!/bin/sh\nSTATE=${dir}\n${body}\nexec /usr/lib/cni/${plugin}\n`, { mode: 0o755 })
  return [dir, "/usr/lib/cni"]
}

const reasonOf = <A>(exit: Exit.Exit<A, ContainerdError>) =>
  Exit.isFailure(exit) && exit.cause.reasons[0]?._tag === "Fail" ? (exit.cause.reasons[0].error as ContainerdError).reason : undefined

/** A one-reply TCP server inside a netns (python3: the host's static busybox misbehaves under nsenter). */
const serveIn = (netns: string, port: number) =>
  Effect.acquireRelease(
    Effect.callback<ReturnType<typeof spawn>>((resume) => {
      const server = spawn("nsenter", [
        `--net=${netns}`,
        "python3",
        "-c",
        `import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(("0.0.0.0",${port}))\ns.listen()\nprint("ready",flush=True)\nwhile True:\n  c,a=s.accept()\n  c.sendall(b"hello from "+a[0].encode())\n  c.close()`
      ], { stdio: ["ignore", "pipe", "inherit"] })
      server.stdout!.once("data", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.sync(() => server.kill("SIGKILL"))
  )

const readFrom = (port: number) =>
  Effect.callback<string, Error>((resume) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    const chunks: Array<Buffer> = []
    socket.on("data", (chunk) => chunks.push(chunk))
    socket.on("end", () => resume(Effect.succeed(Buffer.concat(chunks).toString())))
    socket.on("error", (error) => resume(Effect.fail(error)))
  }).pipe(Effect.timeout("3 seconds"))

/** Total ms spent in plugin execs (Cni.exec's own timer), by `plugin command`, while `effect` ran. */
const pluginTime = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const pairs = ["loopback ADD", "bridge ADD", "portmap ADD", "portmap DEL", "bridge DEL"]
    const read = Effect.forEach(pairs, (pair) => {
      const [plugin, command] = pair.split(" ") as [string, string]
      return Metric.value(Metric.withAttributes(CniExecTime, { plugin, command }))
    })
    const before = yield* read
    const value = yield* effect
    const after = yield* read
    const figures = pairs.map((pair, i) => `${pair} ${(after[i]!.sum - before[i]!.sum).toFixed(0)} ms`)
      .filter((figure) => !figure.endsWith(" 0 ms"))
    return [value, figures.join(", ")] as const
  })

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    const value = yield* effect
    return [value, performance.now() - start] as const
  })

/** Whatever a failed test left: netns pins, our bridges and their rules, the directories. */
afterAll(() => {
  for (const dir of list(root)) {
    for (const file of list(path.join(root, dir, "run", "netns"))) run("umount", ["-l", path.join(root, dir, "run", "netns", file)])
  }
  for (const line of out("ip", ["-br", "link"]).split("\n")) {
    const device = line.split(/\s+/)[0]!
    if (device.startsWith(`efct${tag}`)) run("ip", ["link", "del", device])
  }
  const ours = out("iptables-save", []).split("\n").filter((line) => line.startsWith("-A ") && line.includes(`efc:efct${tag}`))
  const restore = (table: string, lines: Array<string>) =>
    lines.length === 0 ? "" : `*${table}\n${lines.map((l) => `-D${l.slice(2)}`).join("\n")}\nCOMMIT\n`
  const input = restore("filter", ours.filter((l) => !l.startsWith("-A EFC-POSTROUTING"))) +
    restore("nat", ours.filter((l) => l.startsWith("-A EFC-POSTROUTING")))
  if (input !== "") spawnSync("iptables-restore", ["--noflush", "-w"], { input })
  fs.rmSync(root, { recursive: true, force: true })
})

describe("Networks (real CNI plugins, iptables, netns)", () => {
  it.live("a plugin failing mid-list leaves no IP, veth, rule, netns or record, and frees the host port", () => {
    const options = freshOptions(fakePlugin("portmap", `[ "$CNI_COMMAND" = ADD ] && { cat >/dev/null; echo '{"cniVersion":"1.0.0","code":100,"msg":"injected"}'; exit 1; }`))
    const network = newNetwork()
    return Effect.gen(function*() {
      const networks = yield* Networks
      yield* networks.define(network)
      const id = `fail-${tag}`
      const exit = yield* networks.attach("ns", id, { networks: [{ network: network.name }], ports: [{ hostPort: 0, containerPort: 80, protocol: "tcp" }] })
        .pipe(Effect.scoped, Effect.exit)
      const reason = reasonOf(exit)
      assert.strictEqual(reason?._tag, "Unknown")
      assert.include(reason!.message, "CNI plugin portmap ADD failed (code 100): injected")
      assert.deepStrictEqual(leftovers(options, network, [id]), nothingLeft)
      assert.isTrue(Option.isNone(yield* networks.get("ns", id)))
      yield* networks.remove(network.name)
    }).pipe(Effect.provide(Networks.layer(options)))
  })

  it.live("a plugin that says 'try again later' (code 11) is run again", () => {
    const options = freshOptions(
      fakePlugin("portmap", `[ "$CNI_COMMAND" = ADD ] && [ ! -e $STATE/tried ] && { touch $STATE/tried; cat >/dev/null; echo '{"code":11,"msg":"busy"}'; exit 1; }`)
    )
    const network = newNetwork()
    return Effect.gen(function*() {
      const networks = yield* Networks
      yield* networks.define(network)
      const attachment = yield* networks.attach("ns", `again-${tag}`, {
        networks: [{ network: network.name }],
        ports: [{ hostPort: 0, containerPort: 80, protocol: "tcp" }]
      })
      assert.isTrue(fs.existsSync(path.join(options.pluginDirs![0]!, "tried")))
      assert.strictEqual(attachment.endpoints.length, 1)
    }).pipe(Effect.scoped, Effect.andThen(Networks.use((networks) => networks.remove(network.name))), Effect.provide(Networks.layer(options)))
  })

  it.live("a DEL that fails is retried, then reported with the record kept; a later detach finishes the job", () => {
    const options = freshOptions(
      fakePlugin("bridge", `[ "$CNI_COMMAND" = DEL ] && [ -e $STATE/fail ] && { cat >/dev/null; echo '{"code":5,"msg":"injected"}'; exit 1; }`)
    )
    const flag = path.join(options.pluginDirs![0]!, "fail")
    const network = newNetwork()
    return Effect.gen(function*() {
      const networks = yield* Networks
      yield* networks.define(network)
      const id = `stuck-${tag}`
      yield* networks.attach("ns", id, { networks: [{ network: network.name }] })
      fs.writeFileSync(flag, "")
      const failed = yield* Effect.exit(networks.detach("ns", id))
      assert.strictEqual(reasonOf(failed)?._tag, "Unknown")
      assert.include(reasonOf(failed)!.message, "CNI plugin bridge DEL failed (code 5): injected")
      assert.deepStrictEqual(leftovers(options, network), { ...nothingLeft, ips: 1, veths: 1, netns: 1, records: 1 })
      assert.isTrue(Option.isSome(yield* networks.get("ns", id)))
      fs.rmSync(flag)
      yield* networks.detach("ns", id)
      assert.deepStrictEqual(leftovers(options, network), nothingLeft)
      yield* networks.remove(network.name)
    }).pipe(Effect.scoped, Effect.provide(Networks.layer(options)))
  })

  it.live("a plugin past its deadline is killed and the attach undone; a missing plugin fails the layer naming the directory", () => {
    const options = {
      ...freshOptions(fakePlugin("bridge", `[ "$CNI_COMMAND" = ADD ] && exec sleep 30`)),
      pluginTimeout: "300 millis" as const
    }
    const network = newNetwork()
    return Effect.gen(function*() {
      const slow = yield* Effect.gen(function*() {
        const networks = yield* Networks
        yield* networks.define(network)
        const exit = yield* Effect.exit(networks.attach("ns", `slow-${tag}`, { networks: [{ network: network.name }] }).pipe(Effect.scoped))
        assert.deepStrictEqual(leftovers(options, network), nothingLeft)
        yield* networks.remove(network.name)
        return exit
      }).pipe(Effect.provide(Networks.layer(options)))
      assert.include(reasonOf(slow)?.message, "CNI plugin bridge ADD failed: did not answer within 300ms")
      const empty = fs.mkdtempSync(path.join(root, "plugins-"))
      const missing = yield* Effect.exit(Networks.use(() => Effect.void).pipe(Effect.provide(Networks.layer(freshOptions([empty])))))
      assert.strictEqual(reasonOf(missing)?._tag, "FailedPrecondition")
      assert.include(reasonOf(missing)!.message, `no plugin loopback in ${empty}`)
    })
  })

  it.live("bad definitions are refused before anything is written; a network in use cannot be removed", () => {
    const options = freshOptions()
    const network = newNetwork()
    return Effect.gen(function*() {
      const networks = yield* Networks
      yield* networks.define(network)
      yield* networks.define(network) // the same again: nothing changes
      assert.strictEqual(bridgeRules(network.bridge).length, 7)
      const refused = (definition: Parameters<typeof networks.define>[0]) => Effect.map(Effect.exit(networks.define(definition)), reasonOf)
      const other = { name: `efct-${tag}-x`, bridge: `efct${tag}x` }
      assert.strictEqual((yield* refused({ ...other, subnet: "10.254.300.0/24" }))?._tag, "InvalidArgument")
      assert.strictEqual((yield* refused({ ...other, subnet: "10.254.1.0" }))?._tag, "InvalidArgument")
      assert.strictEqual((yield* refused({ ...other, subnet: network.subnet, gateway: "10.0.0.1" }))?._tag, "InvalidArgument")
      const overlap = yield* refused({ ...other, subnet: network.subnet.replace(/\.0\/24$/, ".128/25") })
      assert.strictEqual(overlap?._tag, "InvalidArgument")
      assert.include(overlap!.message, "Pool overlaps with other one on this address space")
      assert.strictEqual((yield* refused({ ...other, bridge: "a-much-too-long-bridge", subnet: subnets[15]! }))?._tag, "InvalidArgument")
      assert.strictEqual((yield* refused({ ...network, subnet: subnets[15]! }))?._tag, "AlreadyExists")
      assert.deepStrictEqual(bridgeRules(other.bridge), [])
      assert.deepStrictEqual(list(options.confDir).filter((f) => f.endsWith(".conflist")), [`${network.name}.conflist`])

      const scope = yield* Scope.make()
      yield* networks.attach("ns", `user-${tag}`, { networks: [{ network: network.name }] }).pipe(Scope.provide(scope))
      assert.strictEqual(reasonOf(yield* Effect.exit(networks.remove(network.name)))?._tag, "FailedPrecondition")
      const unknown = yield* Effect.exit(networks.attach("ns", `nobody-${tag}`, { networks: [{ network: "no-such" }] }).pipe(Effect.scoped))
      assert.strictEqual(reasonOf(unknown)?._tag, "NotFound")
      yield* Scope.close(scope, Exit.void)
      yield* networks.remove(network.name)
      assert.deepStrictEqual(bridgeRules(network.bridge), [])
      assert.strictEqual(run("ip", ["link", "show", network.bridge]).status, 1)
      assert.deepStrictEqual(yield* networks.definitions, [])
    }).pipe(Effect.provide(Networks.layer(options)))
  })

  it.live("published ports: reachable on 127.0.0.1, 0 picks a free one, a taken port is AlreadyExists with dockerd's words and nothing made", () => {
    const options = freshOptions()
    const network = newNetwork()
    return Effect.gen(function*() {
      const networks = yield* Networks
      yield* networks.define(network)
      // Warm: the first ADD on a network also makes its bridge.
      yield* networks.attach("ns", `warm-${tag}`, { networks: [{ network: network.name }] })
      yield* networks.detach("ns", `warm-${tag}`)
      const [[a, addWithPorts], addPlugins] = yield* pluginTime(timed(networks.attach("ns", `web-${tag}`, {
        networks: [{ network: network.name }],
        ports: [{ hostPort: 0, containerPort: 8080, protocol: "tcp" }]
      })))
      const hostPort = a.ports[0]!.hostPort
      const [low, high] = fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number)
      assert.isTrue(hostPort >= low! && hostPort <= high!, `${hostPort} in ${low}-${high}`)
      yield* serveIn(a.netns, 8080)
      assert.strictEqual(yield* readFrom(hostPort), `hello from ${a.endpoints[0]!.gateway}`)

      const taken = yield* Effect.exit(networks.attach("ns", `second-${tag}`, {
        networks: [{ network: network.name }],
        ports: [{ hostPort, containerPort: 80, protocol: "tcp" }]
      }).pipe(Effect.scoped))
      assert.strictEqual(reasonOf(taken)?._tag, "AlreadyExists")
      assert.strictEqual(reasonOf(taken)?.message, `Bind for 0.0.0.0:${hostPort} failed: port is already allocated`)
      assert.deepStrictEqual(leftovers(options, network, [`second-${tag}`]), { ...nothingLeft, ips: 1, veths: 1, netns: 1, records: 1 })

      // A port a host process listens on.
      const listener = net.createServer()
      yield* Effect.callback<void>((resume) => void listener.listen(0, "0.0.0.0", () => resume(Effect.void)))
      const busy = (listener.address() as net.AddressInfo).port
      const host = yield* Effect.exit(networks.attach("ns", `third-${tag}`, {
        networks: [{ network: network.name }],
        ports: [{ hostPort: busy, containerPort: 80, protocol: "tcp" }]
      }).pipe(Effect.scoped))
      listener.close()
      assert.strictEqual(reasonOf(host)?._tag, "AlreadyExists")
      assert.include(reasonOf(host)!.message, `${busy}: bind: address already in use`)

      const [[, delWithPorts], delPlugins] = yield* pluginTime(timed(networks.detach("ns", `web-${tag}`)))
      assert.deepStrictEqual(leftovers(options, network, [`web-${tag}`]), nothingLeft)
      // The port is free again.
      yield* networks.attach("ns", `fourth-${tag}`, { networks: [{ network: network.name }], ports: [{ hostPort, containerPort: 80, protocol: "udp" }] })
      yield* networks.detach("ns", `fourth-${tag}`)
      yield* Effect.log(
        `with ports: attach ${addWithPorts.toFixed(0)} ms (${addPlugins}), detach ${delWithPorts.toFixed(0)} ms (${delPlugins})`
      )
    }).pipe(Effect.scoped, Effect.andThen(Networks.use((networks) => networks.remove(network.name))), Effect.provide(Networks.layer(options)))
  })

  it.live("connect adds eth1 to a live attachment, disconnect takes it away; changes are published", () => {
    const options = freshOptions()
    const first = newNetwork()
    const second = newNetwork({ internal: true })
    return Effect.gen(function*() {
      const networks = yield* Networks
      yield* networks.define(first)
      yield* networks.define(second)
      assert.isTrue(bridgeRules(second.bridge).some((rule) => rule.includes("-j DROP") && rule.includes(`-i ${second.bridge} ! -o`)))
      assert.isFalse(bridgeRules(second.bridge).some((rule) => rule.includes("MASQUERADE")))
      assert.isTrue(bridgeRules(first.bridge).some((rule) => rule.includes(`-s ${first.subnet} ! -o ${first.bridge}`) && rule.includes("MASQUERADE")))
      yield* networks.attach("ns", `warm-${tag}`, { networks: [{ network: first.name }] })
      yield* networks.detach("ns", `warm-${tag}`)
      const changes = yield* networks.changes
      const seen = yield* Stream.take(changes, 4).pipe(Stream.runCollect, Effect.forkChild)
      const id = `multi-${tag}`
      const [[attached, addNoPorts], addPlugins] = yield* pluginTime(timed(networks.attach("ns", id, { networks: [{ network: first.name }] })))
      const connected = yield* networks.connect("ns", id, {
        network: second.name,
        ip: second.subnet.replace(/0\/24$/, "77"),
        mac: "02:42:0a:fe:00:77"
      })
      assert.strictEqual(connected.endpoints[1]?.mac, "02:42:0a:fe:00:77")
      assert.deepStrictEqual(connected.endpoints.map((e) => [e.ifname, e.address]), [
        ["eth0", attached.endpoints[0]!.address],
        ["eth1", second.subnet.replace(/0\/24$/, "77")]
      ])
      assert.deepStrictEqual(addressesIn(attached.netns).eth1, [`${second.subnet.replace(/0\/24$/, "77")}/24`])
      const disconnected = yield* networks.disconnect("ns", id, second.name)
      assert.deepStrictEqual(disconnected.endpoints.map((e) => e.ifname), ["eth0"])
      assert.isUndefined(addressesIn(attached.netns).eth1)
      assert.deepStrictEqual(leftovers(options, second), { ...nothingLeft, netns: 1, records: 1 })
      const [[, delNoPorts], delPlugins] = yield* pluginTime(timed(networks.detach("ns", id)))
      const tags = [...(yield* Fiber.join(seen))].map((change) => `${change._tag}:${change.attachment.endpoints.length}`)
      assert.deepStrictEqual(tags, ["Attached:1", "Attached:2", "Attached:1", "Detached:1"])
      yield* Effect.log(
        `without ports: attach ${addNoPorts.toFixed(0)} ms (${addPlugins}), detach ${delNoPorts.toFixed(0)} ms (${delPlugins})`
      )
      yield* networks.remove(first.name)
      yield* networks.remove(second.name)
    }).pipe(Effect.scoped, Effect.provide(Networks.layer(options)))
  })

  it.live("after a restart: records are live, adopt takes one into a scope, sweep releases the rest; re-define duplicates no rule", () => {
    const options = freshOptions()
    const network = newNetwork()
    const ids = [`kept-${tag}`, `gone-${tag}`]
    return Effect.gen(function*() {
      // The first run attaches and is killed: its scopes are never closed.
      const before = yield* Effect.gen(function*() {
        const networks = yield* Networks
        yield* networks.define(network)
        const never = yield* Scope.make()
        return yield* Effect.forEach(ids, (id) =>
          networks.attach("ns", id, { networks: [{ network: network.name }], ports: [{ hostPort: 0, containerPort: 80, protocol: "tcp" }] })
            .pipe(Scope.provide(never)))
      }).pipe(Effect.provide(Networks.layer(options)))
      const rules = bridgeRules(network.bridge)

      yield* Effect.gen(function*() {
        const networks = yield* Networks
        yield* networks.define(network)
        assert.deepStrictEqual(bridgeRules(network.bridge), rules)
        assert.deepStrictEqual((yield* networks.attachments).map((a) => a.containerId).sort(), [...ids].sort())
        // Its ports are still taken.
        const taken = yield* Effect.exit(networks.attach("ns", `new-${tag}`, {
          networks: [{ network: network.name }],
          ports: [{ hostPort: before[0]!.ports[0]!.hostPort, containerPort: 80, protocol: "tcp" }]
        }).pipe(Effect.scoped))
        assert.strictEqual(reasonOf(taken)?._tag, "AlreadyExists")
        const scope = yield* Scope.make()
        const adopted = yield* networks.adopt("ns", ids[0]!).pipe(Scope.provide(scope))
        assert.deepStrictEqual(Option.map(adopted, (a) => a.endpoints), Option.some(before[0]!.endpoints))
        assert.isTrue(Option.isNone(yield* networks.adopt("ns", `never-${tag}`).pipe(Effect.scoped)))
        yield* networks.sweep("ns", new Set([ids[0]!]))
        assert.deepStrictEqual((yield* networks.attachments).map((a) => a.containerId), [ids[0]])
        assert.deepStrictEqual(leftovers(options, network, [ids[1]!]), { ...nothingLeft, ips: 1, veths: 1, netns: 1, records: 1 })
        yield* Scope.close(scope, Exit.void)
        assert.deepStrictEqual(leftovers(options, network, ids), nothingLeft)
        yield* networks.remove(network.name)
      }).pipe(Effect.provide(Networks.layer(options)))
    })
  })

  it.live("24 attachments at once on one network, then all detached: nothing left", () => {
    const options = freshOptions()
    const network = newNetwork()
    const ids = Array.from({ length: 24 }, (_, i) => `par${i}-${tag}`)
    return Effect.gen(function*() {
      const networks = yield* Networks
      yield* networks.define(network)
      const scope = yield* Scope.make("parallel")
      const [attached, attachWall] = yield* timed(
        Effect.forEach(ids, (id) => networks.attach("ns", id, { networks: [{ network: network.name }] }).pipe(Scope.provide(scope)), {
          concurrency: "unbounded"
        })
      )
      assert.strictEqual(new Set(attached.map((a) => a.endpoints[0]!.address)).size, ids.length)
      assert.deepStrictEqual(leftovers(options, network, ids), { ...nothingLeft, ips: 24, veths: 24, netns: 24, records: 24 })
      const [, detachWall] = yield* timed(Scope.close(scope, Exit.void))
      assert.deepStrictEqual(leftovers(options, network, ids), nothingLeft)
      yield* Effect.log(`24 in parallel: attach ${attachWall.toFixed(0)} ms, detach ${detachWall.toFixed(0)} ms wall`)
      yield* networks.remove(network.name)
    }).pipe(Effect.scoped, Effect.provide(Networks.layer(options)))
  })
})
