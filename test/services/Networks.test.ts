/**
 * The Networks layer against the real CNI plugins, iptables and network
 * namespaces of this host (no containerd: an attachment is checked from inside
 * its netns with nsenter). Every bridge, subnet and directory is this file's
 * own (`CniHost`) and is removed at the end. Where a failure is injected it is
 * a script placed before the real plugins that fails one command and hands the
 * others to the real plugin.
 */
import { afterAll, assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option, Scope, Stream } from "effect"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import * as Cni from "../../src/internal/Cni.ts"
import * as Iptables from "../../src/internal/Iptables.ts"
import { Networks } from "../../src/services/Networks.ts"
import { eventually } from "../support/Engines.ts"
import {
  addressesIn,
  askUdp,
  bridgeRules,
  leftovers,
  list,
  makeCniHost,
  nothingLeft,
  out,
  pluginTime,
  readFrom,
  reasonOf,
  run,
  serveIn,
  timed
} from "../support/CniHost.ts"

const host = makeCniHost()
const { fakePlugin, freshOptions, newNetwork, root, subnets, tag } = host
afterAll(host.cleanup)

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

  it.live("DEL is harmless twice over and after the netns is gone (what a retried or late detach does)", () => {
    const options = freshOptions()
    const network = newNetwork()
    return Effect.gen(function*() {
      const networks = yield* Networks
      yield* networks.define(network)
      const id = `twice-${tag}`
      const scope = yield* Scope.make()
      yield* networks.attach("ns", id, { networks: [{ network: network.name }] }).pipe(Scope.provide(scope))
      const record = JSON.parse(fs.readFileSync(path.join(options.confDir, "attachments", `ns@${id}.json`), "utf8"))
      yield* Scope.close(scope, Exit.void)
      const cni = { pluginDirs: ["/usr/lib/cni"], timeout: "10 seconds" as const }
      const invocation = { containerId: id, netns: record.netns, ifname: "eth0", args: record.networks[0].args }
      const list = JSON.parse(record.networks[0].conflist)
      yield* Cni.delList(cni, list, invocation, record.networks[0].result)
      yield* Cni.delList(cni, list, { ...invocation, netns: "" }, undefined)
      assert.deepStrictEqual(leftovers(options, network, [id]), nothingLeft)
      yield* networks.remove(network.name)
    }).pipe(Effect.scoped, Effect.provide(Networks.layer(options)))
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

  /** A bridge plugin whose DEL fails while `flag` exists, and a network of its own. */
  const failingDel = () => {
    const options = freshOptions(
      fakePlugin("bridge", `[ "$CNI_COMMAND" = DEL ] && [ -e $STATE/fail ] && { cat >/dev/null; echo '{"code":5,"msg":"injected"}'; exit 1; }`)
    )
    return { options, flag: path.join(options.pluginDirs![0]!, "fail"), network: newNetwork() }
  }

  it.live("a DEL that fails is retried, then reported with the record kept; a later detach finishes the job", () => {
    const { flag, network, options } = failingDel()
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

  it.live("a scope's release whose DEL keeps failing is tried again in the background until it succeeds; a new attach of the container releases the old one first", () => {
    const { flag, network, options } = failingDel()
    return Effect.gen(function*() {
      const networks = yield* Networks
      yield* networks.define(network)
      const id = `later-${tag}`
      const held = { ...nothingLeft, ips: 1, veths: 1, netns: 1, records: 1 }
      // The scope closes while DEL fails: nothing is dropped, the release goes on behind it.
      fs.writeFileSync(flag, "")
      yield* Effect.scoped(networks.attach("ns", id, { networks: [{ network: network.name }] }))
      assert.deepStrictEqual(leftovers(options, network), held, "still held while its DEL fails")
      fs.rmSync(flag)
      yield* eventually("the background release", Effect.sync(() => JSON.stringify(leftovers(options, network)) === JSON.stringify(nothingLeft)))
      assert.isTrue(Option.isNone(yield* networks.get("ns", id)))

      // Failing again; before the retry gets through, the container is attached anew: the old one goes first.
      fs.writeFileSync(flag, "")
      yield* Effect.scoped(networks.attach("ns", id, { networks: [{ network: network.name }] }))
      fs.rmSync(flag)
      const again = yield* networks.attach("ns", id, { networks: [{ network: network.name }] })
      assert.deepStrictEqual(leftovers(options, network), held, "one attachment: the old one was released")
      assert.deepStrictEqual((yield* networks.get("ns", id)).pipe(Option.map((a) => a.endpoints[0]!.address)), Option.some(again.endpoints[0]!.address))
      yield* networks.detach("ns", id)
      assert.deepStrictEqual(leftovers(options, network), nothingLeft)
      yield* networks.remove(network.name)
    }).pipe(Effect.scoped, Effect.provide(Networks.layer(options)))
  }, 60_000)

  it.live("a plugin past its deadline is killed and the attach undone; a missing or too old plugin fails the layer naming it", () => {
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
      const oldDirs = fakePlugin("loopback", `[ "$CNI_COMMAND" = VERSION ] && { echo '{"cniVersion":"0.4.0","supportedVersions":["0.3.1","0.4.0"]}'; exit 0; }`)
      const tooOld = yield* Effect.exit(Networks.use(() => Effect.void).pipe(Effect.provide(Networks.layer(freshOptions(oldDirs)))))
      assert.strictEqual(reasonOf(tooOld)?._tag, "FailedPrecondition")
      assert.include(reasonOf(tooOld)!.message, `${oldDirs[0]}/loopback supports 0.3.1, 0.4.0, not CNI 1.0.0`)
    })
  })

  it.live("our jumps are there once however many layers start at once, a copy a racing start added is removed", () =>
    Effect.gen(function*() {
      // A second copy, as two daemons checking at once without the lock would leave (harmless to traffic meanwhile).
      out("iptables", ["-w", "-I", "FORWARD", "1", "-j", "EFC-FORWARD"])
      yield* Effect.all(Array.from({ length: 4 }, () => Iptables.ensureChains), { concurrency: "unbounded" })
      const dump = out("iptables-save", []).split("\n")
      for (const jump of ["-A FORWARD -j EFC-FORWARD", "-A EFC-FORWARD -j EFC-ISOLATION-STAGE-1", "-A POSTROUTING -j EFC-POSTROUTING"]) {
        assert.strictEqual(dump.filter((line) => line === jump).length, 1, jump)
      }
    }))

  it.live("bad definitions are refused before anything is written; a network in use cannot be removed", () => {
    const options = freshOptions()
    const network = newNetwork()
    return Effect.gen(function*() {
      const networks = yield* Networks
      yield* networks.define(network)
      yield* networks.define(network) // the same again: nothing changes
      const listed = yield* networks.definitions
      assert.deepStrictEqual(listed, [{ ...network, gateway: network.subnet.replace(/0\/24$/, "1") }])
      yield* networks.define(listed[0]!) // as listed: the same network
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
      const nowhere = yield* Effect.exit(
        networks.attach("ns", `nobody-${tag}`, { networks: [], ports: [{ hostPort: 0, containerPort: 80, protocol: "tcp" }] }).pipe(Effect.scoped)
      )
      assert.strictEqual(reasonOf(nowhere)?._tag, "InvalidArgument")
      const badIp = yield* Effect.exit(
        networks.attach("ns", `nobody-${tag}`, { networks: [{ network: network.name, ip: "10.0.0.5" }] }).pipe(Effect.scoped)
      )
      assert.strictEqual(reasonOf(badIp)?._tag, "InvalidArgument")
      assert.deepStrictEqual(leftovers(options, network, [`nobody-${tag}`]), { ...nothingLeft, ips: 1, veths: 1, netns: 1, records: 1 })
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
        ports: [{ hostPort: 0, containerPort: 8080, protocol: "tcp" }, { hostPort: 0, containerPort: 8081, protocol: "udp" }]
      })))
      const hostPort = a.ports[0]!.hostPort
      const [low, high] = fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number)
      assert.isTrue(hostPort >= low! && hostPort <= high!, `${hostPort} in ${low}-${high}`)
      yield* serveIn(a.netns, 8080)
      assert.strictEqual(yield* readFrom(hostPort), `hello from ${a.endpoints[0]!.gateway}`)
      assert.strictEqual(yield* askUdp(a.ports[1]!.hostPort), "udp ping")

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

      // Two at once for one free port: one gets it (the check and the claim are one step, before the probe yields).
      const racers = yield* Effect.forEach([`r1-${tag}`, `r2-${tag}`], (id) =>
        networks.attach("ns", id, { networks: [{ network: network.name }], ports: [{ hostPort: busy, containerPort: 80, protocol: "tcp" }] })
          .pipe(Effect.exit), { concurrency: "unbounded" })
      assert.deepStrictEqual(racers.map((exit) => Exit.isSuccess(exit) ? "ok" : reasonOf(exit)?._tag).sort(), ["AlreadyExists", "ok"])
      yield* networks.detach("ns", `r1-${tag}`)
      yield* networks.detach("ns", `r2-${tag}`)

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

  it.live("a connect whose ADD fails leaves the attachment as it was", () => {
    const options = freshOptions(
      fakePlugin("bridge", `[ "$CNI_COMMAND" = ADD ] && [ "$CNI_IFNAME" = eth1 ] && { cat >/dev/null; echo '{"code":100,"msg":"injected"}'; exit 1; }`)
    )
    const first = newNetwork()
    const second = newNetwork()
    return Effect.gen(function*() {
      const networks = yield* Networks
      yield* networks.define(first)
      yield* networks.define(second)
      const id = `conn-${tag}`
      const attached = yield* networks.attach("ns", id, { networks: [{ network: first.name }] })
      const failed = yield* Effect.exit(networks.connect("ns", id, { network: second.name }))
      assert.include(reasonOf(failed)?.message, "CNI plugin bridge ADD failed (code 100): injected")
      assert.deepStrictEqual(yield* networks.get("ns", id), Option.some(attached))
      assert.deepStrictEqual(Object.keys(addressesIn(attached.netns)).sort(), ["eth0", "lo"])
      const record = JSON.parse(fs.readFileSync(path.join(options.confDir, "attachments", `ns@${id}.json`), "utf8"))
      assert.deepStrictEqual(record.networks.map((n: { network: string }) => n.network), [first.name])
      assert.deepStrictEqual(leftovers(options, second), { ...nothingLeft, netns: 1, records: 1 })
    }).pipe(
      Effect.scoped,
      Effect.andThen(Networks.use((networks) => Effect.andThen(networks.remove(first.name), networks.remove(second.name)))),
      Effect.provide(Networks.layer(options))
    )
  })

  it.live("two networks are isolated from each other (Docker's two-stage rules); the same network and the host are reachable", () => {
    const options = freshOptions()
    const left = newNetwork()
    const right = newNetwork()
    const ping = (netns: string, ip: string) => run("nsenter", [`--net=${netns}`, "busybox", "ping", "-c1", "-W1", ip]).status
    return Effect.gen(function*() {
      const networks = yield* Networks
      yield* networks.define(left)
      yield* networks.define(right)
      const a = yield* networks.attach("ns", `left-${tag}`, { networks: [{ network: left.name }] })
      const b = yield* networks.attach("ns", `right-${tag}`, { networks: [{ network: right.name }] })
      const c = yield* networks.attach("ns", `left2-${tag}`, { networks: [{ network: left.name }] })
      assert.strictEqual(ping(c.netns, a.endpoints[0]!.address), 0)
      // The host forwards between the bridges (b reaches a's gateway, an address of the host) but drops b → a.
      assert.strictEqual(ping(b.netns, a.endpoints[0]!.gateway), 0)
      assert.strictEqual(ping(b.netns, a.endpoints[0]!.address), 1)
    }).pipe(
      Effect.scoped,
      Effect.andThen(Networks.use((networks) => Effect.andThen(networks.remove(left.name), networks.remove(right.name)))),
      Effect.provide(Networks.layer(options))
    )
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
      // The same address for another container: dockerd's words, and nothing left of the attempt.
      const twice = yield* Effect.exit(networks.attach("ns", `same-ip-${tag}`, {
        networks: [{ network: second.name, ip: second.subnet.replace(/0\/24$/, "77") }]
      }).pipe(Effect.scoped))
      assert.strictEqual(reasonOf(twice)?._tag, "AlreadyExists")
      assert.include(reasonOf(twice)!.message, "Address already in use")
      assert.deepStrictEqual(leftovers(options, second, [`same-ip-${tag}`]), { ...nothingLeft, ips: 1, veths: 1, netns: 1, records: 1 })
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
        assert.deepStrictEqual((yield* networks.definitions).map((d) => d.name), [network.name])
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

  it.live("24 attachments at once on one network (one of them asked twice: AlreadyExists), then all detached: nothing left", () => {
    const options = freshOptions()
    const network = newNetwork()
    const ids = Array.from({ length: 24 }, (_, i) => `par${i}-${tag}`)
    return Effect.gen(function*() {
      const networks = yield* Networks
      yield* networks.define(network)
      const scope = yield* Scope.make("parallel")
      const [exits, attachWall] = yield* timed(
        Effect.forEach(
          [...ids, ids[0]!],
          (id) => networks.attach("ns", id, { networks: [{ network: network.name }] }).pipe(Scope.provide(scope), Effect.exit),
          { concurrency: "unbounded" }
        )
      )
      const attached = exits.filter(Exit.isSuccess).map((exit) => exit.value)
      assert.deepStrictEqual(exits.filter(Exit.isFailure).map((exit) => reasonOf(exit)?._tag), ["AlreadyExists"])
      assert.strictEqual(new Set(attached.map((a) => a.endpoints[0]!.address)).size, ids.length)
      assert.deepStrictEqual(leftovers(options, network, ids), { ...nothingLeft, ips: 24, veths: 24, netns: 24, records: 24 })
      const [, detachWall] = yield* timed(Scope.close(scope, Exit.void))
      assert.deepStrictEqual(leftovers(options, network, ids), nothingLeft)
      yield* Effect.log(`24 in parallel: attach ${attachWall.toFixed(0)} ms, detach ${detachWall.toFixed(0)} ms wall`)
      yield* networks.remove(network.name)
    }).pipe(Effect.scoped, Effect.provide(Networks.layer(options)))
  })
})
