/**
 * A test file's own corner of this host for the CNI tests: state directories
 * under a temporary root, bridges named `efct<tag><n>`, /24s of 10.254.128.0/17
 * that no route on the host covers (other test files define theirs at the same
 * time), plugin dirs with one injected script before the real plugins, and a
 * `cleanup` that removes whatever a failed test left (netns pins, bridges, their
 * rules, the root). Beside them, what the tests look at: addresses inside a
 * netns, what an attachment may leave behind, servers inside a netns.
 */
import { Effect, Exit, Metric } from "effect"
import { execFileSync, spawn, spawnSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as dgram from "node:dgram"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type { ContainerdError } from "../../src/domain/ContainerdError.ts"
import * as Cni from "../../src/internal/Cni.ts"
import type { NetworksOptions } from "../../src/services/Networks.ts"

/** Runs a command to its end, whatever its status. */
export const run = (command: string, args: ReadonlyArray<string>) => spawnSync(command, args, { encoding: "utf8", timeout: 10_000 })
/** A command's stdout; throws unless it succeeds (its stderr is dropped: iptables warns of legacy tables). */
export const out = (command: string, args: ReadonlyArray<string>) =>
  execFileSync(command, args, { encoding: "utf8", timeout: 10_000, stdio: ["ignore", "pipe", "ignore"] })
/** The names in a directory; none if it is not there. */
export const list = (dir: string) => fs.existsSync(dir) ? fs.readdirSync(dir) : []

/** The IPv4 addresses inside a netns, by interface. */
export const addressesIn = (netns: string): Record<string, Array<string>> => {
  const links = JSON.parse(out("nsenter", [`--net=${netns}`, "ip", "-j", "-4", "addr"])) as Array<
    { ifname: string; addr_info: Array<{ local: string; prefixlen: number }> }
  >
  return Object.fromEntries(links.map((link) => [link.ifname, link.addr_info.map((a) => `${a.local}/${a.prefixlen}`)]))
}

/** What an attachment may leave: host-local IP files, veths on the bridge, the bridge's and portmap's rules, netns pins, records. */
export const leftovers = (options: NetworksOptions, network: { name: string; bridge: string }, containerIds: ReadonlyArray<string> = []) => {
  const rules = out("iptables-save", []).split("\n")
  return {
    ips: list(path.join(options.ipamDir!, network.name)).filter((file) => /^\d+\.\d+\.\d+\.\d+$/.test(file)).length,
    veths: (run("ip", ["-br", "link", "show", "master", network.bridge]).stdout ?? "").split("\n").filter((l) => l.trim() !== "").length,
    portmapRules: rules.filter((line) => containerIds.some((id) => line.includes(id))).length,
    netns: list(path.join(options.runRoot, "netns")).length,
    records: list(path.join(options.confDir, "attachments")).length
  }
}
/** `leftovers` of an attachment that is all gone. */
export const nothingLeft = { ips: 0, veths: 0, portmapRules: 0, netns: 0, records: 0 }
/** A network's own iptables rules (its `efc:<bridge>` comment). */
export const bridgeRules = (bridge: string) => out("iptables-save", []).split("\n").filter((line) => line.includes(`efc:${bridge}`))

/** The `ContainerdError` reason an exit failed with. */
export const reasonOf = <A>(exit: Exit.Exit<A, ContainerdError>) =>
  Exit.isFailure(exit) && exit.cause.reasons[0]?._tag === "Fail" ? (exit.cause.reasons[0].error as ContainerdError).reason : undefined

/** A TCP server on `port` and a UDP one on `port + 1` inside a netns, answering who asked (python3: the host's static busybox misbehaves under nsenter). */
export const serveIn = (netns: string, port: number) =>
  Effect.acquireRelease(
    Effect.callback<ReturnType<typeof spawn>>((resume) => {
      const program = [
        "import socket, threading",
        "u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
        `u.bind(("0.0.0.0",${port + 1}))`,
        "def udp():",
        "  while True:",
        "    d,a=u.recvfrom(100)",
        "    u.sendto(b'udp '+d, a)",
        "threading.Thread(target=udp, daemon=True).start()",
        "s=socket.socket()",
        `s.bind(("0.0.0.0",${port}))`,
        "s.listen()",
        "print('ready',flush=True)",
        "while True:",
        "  c,a=s.accept()",
        "  c.sendall(b'hello from '+a[0].encode())",
        "  c.close()"
      ].join("\n")
      const server = spawn("nsenter", [`--net=${netns}`, "python3", "-c", program], { stdio: ["ignore", "pipe", "inherit"] })
      server.stdout!.once("data", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.sync(() => server.kill("SIGKILL"))
  )

/** What a TCP server on 127.0.0.1:`port` says. */
export const readFrom = (port: number) =>
  Effect.callback<string, Error>((resume) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    const chunks: Array<Buffer> = []
    socket.on("data", (chunk) => chunks.push(chunk))
    socket.on("end", () => resume(Effect.succeed(Buffer.concat(chunks).toString())))
    socket.on("error", (error) => resume(Effect.fail(error)))
  }).pipe(Effect.timeout("3 seconds"))

/** What a UDP server on 127.0.0.1:`port` answers to "ping". */
export const askUdp = (port: number) =>
  Effect.callback<string, Error>((resume) => {
    const socket = dgram.createSocket("udp4")
    socket.on("message", (message) => {
      socket.close()
      resume(Effect.succeed(message.toString()))
    })
    socket.send("ping", port, "127.0.0.1")
    return Effect.sync(() => socket.close())
  }).pipe(Effect.timeout("3 seconds"))

/** Total ms spent in plugin execs (Cni.exec's own timer), by `plugin command`, while `effect` ran. */
export const pluginTime = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const pairs = ["loopback ADD", "bridge ADD", "portmap ADD", "portmap DEL", "bridge DEL"]
    const read = Effect.forEach(pairs, (pair) => {
      const [plugin, command] = pair.split(" ") as [string, string]
      return Metric.value(Metric.withAttributes(Cni.CniExecTime, { plugin, command }))
    })
    const before = yield* read
    const value = yield* effect
    const after = yield* read
    const figures = pairs.map((pair, i) => `${pair} ${(after[i]!.sum - before[i]!.sum).toFixed(0)} ms`)
      .filter((figure) => !figure.endsWith(" 0 ms"))
    return [value, figures.join(", ")] as const
  })

/** An effect's value and its wall time in ms. */
export const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    const value = yield* effect
    return [value, performance.now() - start] as const
  })


/** This file's own names, subnets and directories on the host. */
export const makeCniHost = () => {
  const tag = crypto.randomBytes(2).toString("hex")
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "efc-net-"))
  let dirs = 0
  let networksMade = 0
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
  return {
    tag,
    root,
    /** Unrouted /24s for this file's networks. */
    subnets,
    /** Fresh state directories for one test (a second layer over the same ones is a restart). */
    freshOptions: (pluginDirs?: ReadonlyArray<string>): NetworksOptions => {
      const dir = path.join(root, String(dirs++))
      return { confDir: path.join(dir, "conf"), runRoot: path.join(dir, "run"), ipamDir: path.join(dir, "ipam"), pluginDirs }
    },
    /** A definition of a new network of this file's own (bridge `efct<tag><n>`). */
    newNetwork: (extra?: { readonly internal?: boolean }) => {
      const n = networksMade++
      return { name: `efct-${tag}-${n}`, bridge: `efct${tag}${n}`, subnet: subnets[n]!, ...extra }
    },
    /** A plugin dir holding one script `plugin` that runs `body` (sh) and else hands over to the real plugin; then the real dir. */
    fakePlugin: (plugin: string, body: string) => {
      const dir = fs.mkdtempSync(path.join(root, "plugins-"))
      fs.writeFileSync(path.join(dir, plugin), `#!/bin/sh\nSTATE=${dir}\n${body}\nexec /usr/lib/cni/${plugin}\n`, { mode: 0o755 })
      return [dir, "/usr/lib/cni"]
    },
    /** Whatever a failed test left: netns pins, this file's bridges and their rules, the directories. */
    cleanup: () => {
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
    }
  }
}
