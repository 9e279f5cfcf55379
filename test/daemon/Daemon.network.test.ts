/**
 * The daemon's networks with the real CNI plugins, iptables and the docker
 * CLI, on one daemon for the file (its pool a private /22 of 198.18.0.0/15):
 * published TCP and UDP ports reachable on 127.0.0.1 (`-p`, `-p 80`, `-P`
 * over an image's EXPOSE), `docker port` and `docker ps`; two user networks
 * isolated from each other; `--network none`; 100 containers run at once on one
 * network leaving no address, veth, rule or namespace; a container deleted
 * with `ctr` releasing its address and port; a daemon killed and started again
 * with a published port still served; bad input refused with nothing made.
 * Where dockerd 20.10 is installed, its statuses and words are compared (it
 * runs without a default bridge or iptables: user networks only).
 *
 * Traffic stays on this machine: host → 127.0.0.1, container → container on
 * our bridges. A UDP server runs in a container's network namespace through
 * `nsenter` (the fixture's busybox has no UDP server).
 */
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { execFile, spawn } from "node:child_process"
import * as dgram from "node:dgram"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { bothEngines, type Engine, engines, Engines, eventually, ok } from "../support/Engines.ts"
import { runDaemonCommand } from "../support/DaemonHarness.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { shared } from "../support/SharedContainerd.ts"

const API = "/v1.41"

/** An API call's status and parsed body. */
const api = (engine: Engine, method: string, url: string, body?: unknown) =>
  Effect.map(
    engine.request(method, `${API}${url}`, body === undefined ? undefined : JSON.stringify(body)),
    (r) => ({ status: r.status, body: r.body === "" ? undefined : JSON.parse(r.body) })
  )

/** A TCP port nothing listens on now. */
const freePort = Effect.callback<number>((resume) => {
  const server = net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** GET http://<host>:port/index.html (127.0.0.1 unless told): its body, or the error's message. */
const get = (port: number, host = "127.0.0.1") =>
  Effect.callback<string>((resume) => {
    const request = http.get({ host, port, path: "/index.html", timeout: 2000 }, (response) => {
      let body = ""
      response.on("data", (chunk) => void (body += chunk))
      response.on("end", () => resume(Effect.succeed(body)))
    })
    request.on("timeout", () => request.destroy(new Error("timeout")))
    request.on("error", (error) => resume(Effect.succeed(`error: ${error.message}`)))
  })

/** Polls the page until it says hello (a server just started may not listen yet). */
const served = (what: string, port: number) => eventually(what, Effect.map(get(port), (body) => body === "hello\n"))

/** One datagram to 127.0.0.1:port: the answer, or none within a second. */
const udpRoundTrip = (port: number, message: string) =>
  Effect.callback<string | undefined>((resume) => {
    const socket = dgram.createSocket("udp4")
    const timer = setTimeout(() => socket.close(() => resume(Effect.succeed(undefined))), 1000)
    socket.on("message", (answer) => {
      clearTimeout(timer)
      socket.close(() => resume(Effect.succeed(String(answer))))
    })
    socket.send(message, port, "127.0.0.1")
  })

/** A UDP echo server on port 90 inside a network namespace (`nsenter` + node), stopped with the scope. */
const udpEchoIn = (netns: string) =>
  Effect.acquireRelease(
    Effect.sync(() =>
      spawn("nsenter", [`--net=${netns}`, process.execPath, "-e", `
        const s = require("dgram").createSocket("udp4")
        s.on("message", (m, from) => s.send("echo:" + m, from.port, from.address))
        s.bind(90, () => console.log("ready"))
      `], { stdio: ["ignore", "pipe", "inherit"] })
    ),
    (child) => Effect.sync(() => child.kill("SIGKILL"))
  ).pipe(Effect.tap((child) =>
    Effect.callback<void>((resume) => {
      child.stdout!.once("data", () => resume(Effect.void))
    })
  ))

const inspect = (engine: Engine, id: string) => Effect.map(api(engine, "GET", `/containers/${id}/json`), (r) => r.body)

const sh = (command: string, args: ReadonlyArray<string>) =>
  Effect.callback<string>((resume) => {
    execFile(command, args, { timeout: 30_000 }, (error, stdout, stderr) =>
      resume(error === null ? Effect.succeed(stdout) : Effect.die(new Error(`${command} ${args.join(" ")}: ${stderr || error.message}`))))
  })

/** The /24 `n` (0-3) of our daemon's /22 pool (its default bridge has the first /26 of /24 0): no other daemon's. */
const ourSubnet = (engine: Engine, n: number) =>
  Effect.map(api(engine, "GET", "/networks/bridge"), (r) => {
    const [a, b, c] = (r.body.IPAM.Config[0].Subnet as string).split(".").map(Number)
    return `${a}.${b}.${(c! & ~3) + n}.0/24`
  })

/** What a network leaves on the host, to count: address files, veths on its bridge, iptables lines naming `ids`, netns pins. */
const leftovers = (dataRoot: string, networkId: string, ids: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const ipamDir = path.join(dataRoot, "network", "ipam", networkId)
    const addresses = fs.existsSync(ipamDir)
      ? fs.readdirSync(ipamDir).filter((f) => f !== "lock" && !f.startsWith("last_reserved_ip")).length
      : 0
    const links = yield* sh("ip", ["-o", "link", "show", "master", `ec-${networkId.slice(0, 12)}`]).pipe(
      Effect.catchCause(() => Effect.succeed(""))
    )
    const rules = yield* sh("iptables-save", [])
    const netnsDir = path.join(dataRoot, "run", "netns")
    const pins = fs.existsSync(netnsDir) ? fs.readdirSync(netnsDir).filter((f) => ids.some((id) => f.endsWith(id))).length : 0
    return {
      addresses,
      veths: links.split("\n").filter((l) => l.includes("veth")).length,
      rules: rules.split("\n").filter((l) => ids.some((id) => l.includes(id))).length,
      pins
    }
  })

layer(engines("network", [], { bridge: true }), { excludeTestServices: true, timeout: 240_000 })("the daemon's networks", (it) => {
  it.effect("published TCP and UDP ports on 127.0.0.1: -p host:container, -p container (random), -P over the image's EXPOSE; docker port and ps", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const tcp = yield* freePort
      const udp = yield* freePort
      const web = (yield* ok(ours, [
        "run", "-d", "--name", "web", "-p", `${tcp}:80`, "-p", "81", "-p", `${udp}:90/udp`, FIXTURE_IMAGE,
        "sh", "-c", "echo hello > /index.html; httpd -p 80 -h /; httpd -p 81 -h /; exec sleep 600"
      ])).trim()
      const ports = (yield* ok(ours, ["port", web])).trim().split("\n")
      const random = Number(/^81\/tcp -> 0\.0\.0\.0:(\d+)$/.exec(ports.find((l) => l.startsWith("81/")) ?? "")?.[1])
      assert.deepStrictEqual(ports, [`80/tcp -> 0.0.0.0:${tcp}`, `81/tcp -> 0.0.0.0:${random}`, `90/udp -> 0.0.0.0:${udp}`])
      const [low, high] = fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number)
      assert.isTrue(random >= low! && random <= high!, `random port ${random} in ${low}-${high}`)
      yield* served("the published port", tcp)
      // And on the host's own addresses (traffic that stays on this machine).
      // And on the host's own addresses, not bridges' (some are other tests', coming and going): traffic that stays here.
      const hostAddresses = Object.entries(os.networkInterfaces())
        .filter(([name]) => !fs.existsSync(`/sys/class/net/${name}/bridge`))
        .flatMap(([, addresses]) => (addresses ?? []).filter((a) => a.family === "IPv4" && !a.internal).map((a) => a.address))
      for (const address of hostAddresses) assert.strictEqual(yield* get(tcp, address), "hello\n", `served on ${address}`)
      yield* served("the random port", random)
      const psPorts = (yield* ok(ours, ["ps", "--filter", `id=${web}`, "--format", "{{.Ports}}"])).trim()
      assert.strictEqual(psPorts, `0.0.0.0:${tcp}->80/tcp, 0.0.0.0:${random}->81/tcp, 0.0.0.0:${udp}->90/udp`)
      const settings = (yield* inspect(ours, web)).NetworkSettings
      assert.strictEqual(settings.Networks.bridge.IPAddress, settings.IPAddress)
      assert.match(settings.IPAddress, /^198\.1[89]\./)
      assert.deepStrictEqual(settings.Ports["80/tcp"], [{ HostIp: "0.0.0.0", HostPort: String(tcp) }])

      yield* Effect.scoped(Effect.gen(function*() {
        yield* udpEchoIn(settings.SandboxKey)
        assert.strictEqual(yield* udpRoundTrip(udp, "ping"), "echo:ping", "a datagram to the published UDP port reaches the container")
      }))

      yield* ok(ours, ["create", "--name", "exposing", FIXTURE_IMAGE, "true"])
      yield* ok(ours, ["commit", "--change", "EXPOSE 82", "exposing", "net-exposed:latest"])
      const all = (yield* ok(ours, ["run", "-d", "-P", "net-exposed:latest", "sh", "-c", "echo hello > /index.html; exec httpd -f -p 82 -h /"])).trim()
      const exposed = (yield* ok(ours, ["port", all, "82/tcp"])).trim()
      const published = Number(/^0\.0\.0\.0:(\d+)$/.exec(exposed)?.[1])
      assert.isTrue(published > 0, exposed)
      yield* served("the port -P published", published)
      yield* ok(ours, ["rm", "-f", web, all, "exposing"])
      assert.notStrictEqual(yield* get(tcp), "hello\n", "the port is no longer published once its container is gone")
    }))

  it.effect("two user networks are isolated: a container reaches one on its own network, not one on another; --network none has only lo", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      yield* ok(ours, ["network", "create", "net-a"])
      yield* ok(ours, ["network", "create", "net-b"])
      const server = (yield* ok(ours, ["run", "-d", "--network", "net-a", FIXTURE_IMAGE, "sh", "-c", "echo hello > /index.html; exec httpd -f -p 80 -h /"]))
        .trim()
      const ip = (yield* inspect(ours, server)).NetworkSettings.Networks["net-a"].IPAddress as string
      const fetchFrom = (network: string) =>
        Effect.map(
          ours.docker(["run", "--rm", "--network", network, FIXTURE_IMAGE, "sh", "-c", `printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${ip} 80`]),
          (r) => r.stdout
        )
      yield* eventually("the server on net-a", Effect.map(fetchFrom("net-a"), (out) => out.includes("hello")))
      assert.notInclude(yield* fetchFrom("net-b"), "hello", "a container on net-b does not reach one on net-a")
      const none = yield* ok(ours, ["run", "--rm", "--network", "none", FIXTURE_IMAGE, "sh", "-c", "ip route; ip -o link"])
      assert.deepStrictEqual(none.trim().split("\n").map((l) => l.split(":")[1]?.trim()), ["lo"], none)
      yield* ok(ours, ["rm", "-f", server])
      yield* ok(ours, ["network", "create", "--label", "prune=yes", "net-p"])
      const listed = (filter: string) => Effect.map(ok(ours, ["network", "ls", "--filter", filter, "--format", "{{.Name}}"]), (out) => out.trim().split("\n").sort())
      assert.deepStrictEqual(yield* listed("type=builtin"), ["bridge", "host", "none"])
      assert.deepStrictEqual(yield* listed("dangling=true"), ["net-a", "net-b", "net-p"])
      assert.deepStrictEqual(yield* listed("label=prune=yes"), ["net-p"])
      const pruned = yield* api(ours, "POST", `/networks/prune?filters=${encodeURIComponent(JSON.stringify({ label: ["prune=yes"] }))}`)
      assert.deepStrictEqual(pruned, { status: 200, body: { NetworksDeleted: ["net-p"] } })
      yield* ok(ours, ["network", "rm", "net-a", "net-b"])
      const events = yield* ok(ours, ["events", "--since", "0", "--until", String(Math.ceil(Date.now() / 1000)), "--filter", "type=network", "--format", "{{.Action}} {{.Actor.Attributes.name}}"])
      for (const line of ["create net-a", "create net-b", "destroy net-a", "destroy net-b"]) assert.include(events.split("\n"), line)
    }))

  it.effect("connect and disconnect: a running container gains and loses a network (fixed address, alias), a stopped one at its next start; container:<id> shares a namespace", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const networkId = (yield* ok(ours, ["network", "create", "net-c"])).trim()
      const server = (yield* ok(ours, ["run", "-d", "--name", "conn-a", "--network", "net-c", FIXTURE_IMAGE, "sh", "-c", "echo hello > /index.html; exec httpd -f -p 80 -h /"]))
        .trim()
      const serverIp = (yield* inspect(ours, server)).NetworkSettings.Networks["net-c"].IPAddress as string
      const client = (yield* ok(ours, ["run", "-d", "--name", "conn-b", FIXTURE_IMAGE, "sleep", "600"])).trim()
      const fixed = serverIp.replace(/\d+$/, (last) => String(Number(last) + 10))
      yield* ok(ours, ["network", "connect", "--ip", fixed, "--alias", "bee", "net-c", "conn-b"])
      const joined = (yield* inspect(ours, client)).NetworkSettings.Networks
      assert.deepStrictEqual(Object.keys(joined).sort(), ["bridge", "net-c"])
      assert.deepStrictEqual([joined["net-c"].IPAddress, joined["net-c"].Aliases], [fixed, ["bee", client.slice(0, 12)]])
      const members = (yield* api(ours, "GET", "/networks/net-c")).body.Containers
      assert.deepStrictEqual(Object.keys(members).sort(), [server, client].sort())
      assert.deepStrictEqual([members[client].Name, members[client].IPv4Address], ["conn-b", `${fixed}/${joined["net-c"].IPPrefixLen}`])
      const fetch = Effect.map(
        ours.docker(["exec", "conn-b", "sh", "-c", `printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${serverIp} 80`]),
        (r) => r.stdout.includes("hello")
      )
      yield* eventually("conn-b reaching conn-a over net-c", fetch)
      const again = yield* api(ours, "POST", "/networks/net-c/connect", { Container: "conn-b" })
      assert.deepStrictEqual(again, { status: 403, body: { message: "endpoint with name conn-b already exists in network net-c" } })
      const host = yield* api(ours, "POST", "/networks/host/connect", { Container: "conn-b" })
      assert.deepStrictEqual(host, { status: 400, body: { message: "container cannot be disconnected from host network or connected to host network" } })
      yield* ok(ours, ["network", "disconnect", "net-c", "conn-b"])
      assert.deepStrictEqual(Object.keys((yield* inspect(ours, client)).NetworkSettings.Networks), ["bridge"])
      assert.isFalse(yield* fetch, "disconnected, it no longer reaches net-c")
      const twice = yield* api(ours, "POST", "/networks/net-c/disconnect", { Container: "conn-b" })
      assert.deepStrictEqual(twice, { status: 400, body: { message: `container ${client} is not connected to the network net-c` } })

      yield* ok(ours, ["stop", "-t", "0", "conn-b"])
      yield* ok(ours, ["network", "connect", "net-c", "conn-b"])
      assert.strictEqual((yield* inspect(ours, client)).NetworkSettings.Networks["net-c"].IPAddress, "", "a stopped container has no address yet")
      yield* ok(ours, ["start", "conn-b"])
      assert.match((yield* inspect(ours, client)).NetworkSettings.Networks["net-c"].IPAddress, /^\d+\.\d+\.\d+\.\d+$/)
      yield* eventually("conn-b on net-c after its start", fetch)

      const shared = yield* ok(ours, ["run", "--rm", "--network", "container:conn-a", FIXTURE_IMAGE, "ip", "-4", "-o", "addr"])
      assert.include(shared, `inet ${serverIp}/`, "container:<id> is the donor's namespace")
      yield* ok(ours, ["rm", "-f", server, client])
      assert.deepStrictEqual((yield* api(ours, "GET", `/networks/${networkId}`)).body.Containers, {})
      yield* ok(ours, ["network", "rm", "net-c"])
    }))

  it.effect("100 containers started and removed at once on one network leave no address, veth, rule or namespace", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const dataRoot = ours.daemon!.dataRoot
      // A /24: more addresses than the pool's /26s have.
      const networkId = (yield* ok(ours, ["network", "create", "--subnet", yield* ourSubnet(ours, 3), "net-many"])).trim()
      const before = yield* leftovers(dataRoot, networkId, [])
      const started = Date.now()
      const ids = yield* Effect.forEach(Array.from({ length: 100 }, (_, i) => i), () =>
        Effect.gen(function*() {
          const created = yield* api(ours, "POST", "/containers/create", { Image: FIXTURE_IMAGE, Cmd: ["true"], HostConfig: { NetworkMode: "net-many" } })
          assert.strictEqual(created.status, 201, JSON.stringify(created.body))
          const id = created.body.Id as string
          const start = yield* api(ours, "POST", `/containers/${id}/start`)
          assert.strictEqual(start.status, 204, JSON.stringify(start.body))
          const waited = yield* api(ours, "POST", `/containers/${id}/wait`)
          assert.deepStrictEqual([waited.status, waited.body], [200, { Error: null, StatusCode: 0 }])
          const removed = yield* api(ours, "DELETE", `/containers/${id}`)
          assert.strictEqual(removed.status, 204, JSON.stringify(removed.body))
          return id
        }), { concurrency: "unbounded" })
      const seconds = (Date.now() - started) / 1000
      yield* Effect.logInfo(`100 containers on one network started, waited and removed in ${seconds.toFixed(1)} s`)
      const after = yield* leftovers(dataRoot, networkId, ids)
      assert.deepStrictEqual(after, { ...before, rules: 0, pins: 0 })
      assert.deepStrictEqual([after.addresses, after.veths], [0, 0])
      yield* ok(ours, ["network", "rm", "net-many"])
    }))

  it.effect("a container deleted with ctr has its address and its port released within a second", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const dataRoot = ours.daemon!.dataRoot
      const port = yield* freePort
      const id = (yield* ok(ours, ["run", "-d", "-p", `${port}:80`, FIXTURE_IMAGE, "sleep", "600"])).trim()
      const bridge = (yield* api(ours, "GET", "/networks/bridge")).body.Id as string
      assert.strictEqual((yield* leftovers(dataRoot, bridge, [id])).pins, 1)
      const ctr = (...args: ReadonlyArray<string>) => sh("ctr", ["--address", shared().address, "--namespace", ours.namespace!, ...args])
      yield* ctr("tasks", "kill", "--signal", "SIGKILL", id)
      yield* eventually("the task's exit", Effect.map(ctr("tasks", "ls"), (out) => !out.split("\n").some((l) => l.startsWith(id) && l.includes("RUNNING"))))
      // The daemon deletes the exited task itself (its exit handling); ctr may find none left.
      yield* ctr("tasks", "delete", id).pipe(Effect.catchCause(() => Effect.void))
      yield* ctr("containers", "delete", id)
      const deleted = Date.now()
      const ipamDir = path.join(dataRoot, "network", "ipam", bridge)
      const holds = () => fs.readdirSync(ipamDir).some((f) => /^\d/.test(f) && fs.readFileSync(path.join(ipamDir, f), "utf8").startsWith(id))
      const pinned = Effect.map(leftovers(dataRoot, bridge, [id]), (left) => left.pins > 0)
      while ((holds() || (yield* pinned)) && Date.now() - deleted < 1000) yield* Effect.sleep("20 millis")
      yield* Effect.logInfo(`released ${Date.now() - deleted} ms after the ctr delete`)
      assert.isFalse(holds(), "its address is released within a second")
      assert.isFalse(yield* pinned, "its namespace is gone within a second")
      const again = (yield* ok(ours, ["run", "-d", "-p", `${port}:80`, FIXTURE_IMAGE, "sleep", "600"])).trim()
      yield* ok(ours, ["rm", "-f", again])
    }))

  it.effect("a daemon killed and started again keeps a running container's published port served", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const port = yield* freePort
      const id = (yield* ok(ours, ["run", "-d", "-p", `${port}:80`, FIXTURE_IMAGE, "sh", "-c", "echo hello > /index.html; exec httpd -f -p 80 -h /"]))
        .trim()
      yield* served("the port before the restart", port)
      const kept = (yield* ok(ours, ["network", "create", "--label", "kept=yes", "net-kept"])).trim()
      // A daemon killed between a network's definition and its record (the record never written):
      // the next start removes the definition, its rules and its bridge.
      const orphan = (yield* ok(ours, ["network", "create", "net-orphan"])).trim()
      const dataRoot = ours.daemon!.dataRoot
      // One that exits while the daemon is down: its attachment is released at the next start.
      const gonePort = yield* freePort
      const gone = (yield* ok(ours, ["run", "-d", "-p", `${gonePort}:80`, FIXTURE_IMAGE, "sh", "-c", "echo hello > /index.html; exec httpd -f -p 80 -h /"]))
        .trim()
      yield* served("the second port before the restart", gonePort)
      yield* ours.daemon!.kill
      const ctr = (...args: ReadonlyArray<string>) => sh("ctr", ["--address", shared().address, "--namespace", ours.namespace!, ...args])
      yield* ctr("tasks", "kill", "--signal", "SIGKILL", gone)
      yield* eventually("its exit", Effect.map(ctr("tasks", "ls"), (out) => out.split("\n").some((l) => l.startsWith(gone) && l.includes("STOPPED"))))
      fs.rmSync(path.join(dataRoot, "network", "networks", `${orphan}.json`))
      assert.strictEqual(yield* get(port), "hello\n", "served while the daemon is down")
      yield* ours.daemon!.start
      assert.strictEqual(yield* get(port), "hello\n", "served after the restart")
      assert.isFalse(fs.existsSync(path.join(dataRoot, "network", `${orphan}.conflist`)), "the orphan definition is gone")
      const bridge = (yield* api(ours, "GET", "/networks/bridge")).body.Id as string
      yield* eventually("the exited container's attachment released", Effect.map(leftovers(dataRoot, bridge, [gone]), (left) => left.pins === 0 && left.rules === 0))
      assert.notStrictEqual(yield* get(gonePort), "hello\n", "its port is no longer published")
      yield* ok(ours, ["rm", gone])
      assert.notInclude(yield* sh("iptables-save", []), `efc:ec-${orphan.slice(0, 12)}`, "and its rules")
      assert.strictEqual((yield* ok(ours, ["port", id, "80"])).trim(), `0.0.0.0:${port}`)
      assert.strictEqual((yield* ok(ours, ["network", "ls", "-q", "--no-trunc", "--filter", "label=kept=yes"])).trim(), kept, "a user network survives")
      const onKept = yield* ok(ours, ["run", "--rm", "--network", "net-kept", FIXTURE_IMAGE, "ip", "-4", "-o", "addr", "show", "eth0"])
      assert.include(onKept, "inet ", "and containers join it after the restart")
      yield* ok(ours, ["rm", "-f", id])
      yield* ok(ours, ["network", "rm", "net-kept"])
    }))

  it.effect("bad input is refused with dockerd's status and words, and nothing is made", () =>
    Effect.gen(function*() {
      const results = yield* bothEngines((engine) =>
        Effect.gen(function*() {
          // Each engine its own subnets: dockerd's bridges are host routes too.
          const subnet = engine.name === "ours" ? yield* ourSubnet(engine, 2) : "198.19.248.0/24"
          const created = yield* api(engine, "POST", "/networks/create", { Name: "net-x", IPAM: { Config: [{ Subnet: subnet }] } })
          assert.strictEqual(created.status, 201, JSON.stringify(created.body))
          const answers = {
            overlap: yield* api(engine, "POST", "/networks/create", { Name: "net-y", IPAM: { Config: [{ Subnet: subnet.replace("/24", "/25") }] } }),
            duplicate: yield* api(engine, "POST", "/networks/create", { Name: "net-x", CheckDuplicate: true }),
            badCidr: yield* api(engine, "POST", "/networks/create", { Name: "net-z", IPAM: { Config: [{ Subnet: "10.254.300.0/24" }] } }),
            unknown: yield* api(engine, "GET", "/networks/no-such-net"),
            predefined: yield* api(engine, "DELETE", "/networks/none"),
            connectUnknown: yield* api(engine, "POST", "/networks/net-x/connect", { Container: "no-such-container" })
          }
          const port = yield* freePort
          const first = (yield* ok(engine, ["run", "-d", "--network", "net-x", "-p", `${port}:80`, FIXTURE_IMAGE, "sleep", "600"])).trim()
          const taken = yield* engine.docker(["run", "-d", "--name", "second", "--network", "net-x", "-p", `${port}:80`, FIXTURE_IMAGE, "sleep", "600"])
          const firstName = ((yield* inspect(engine, first)).Name as string).slice(1)
          const connections = {
            again: yield* api(engine, "POST", "/networks/net-x/connect", { Container: first }),
            host: yield* api(engine, "POST", "/networks/host/connect", { Container: first }),
            none: yield* api(engine, "POST", "/networks/none/connect", { Container: first })
          }
          const inUse = yield* api(engine, "DELETE", "/networks/net-x")
          const secondInfo = yield* inspect(engine, "second")
          const second = secondInfo.State
          // Nothing of the refused start is left: the first container's address and namespace only.
          if (engine.daemon !== undefined) {
            assert.deepStrictEqual(
              yield* leftovers(engine.daemon.dataRoot, created.body.Id, [first, secondInfo.Id]),
              { addresses: 1, veths: 1, rules: 1, pins: 1 },
              "what the start whose port is taken leaves"
            )
          }
          yield* ok(engine, ["rm", "-f", first, "second"])
          yield* ok(engine, ["network", "rm", "net-x"])
          return { engine, networkId: created.body.Id as string, answers, taken, inUse, second, port, connections, firstName }
        }))
      const ours = results[0]!
      assert.deepStrictEqual(ours.answers.overlap, { status: 403, body: { message: "Pool overlaps with other one on this address space" } })
      assert.deepStrictEqual(ours.answers.duplicate, { status: 409, body: { message: "network with name net-x already exists" } })
      // dockerd answers a malformed subnet with a 500; the words are the same.
      assert.deepStrictEqual(ours.answers.badCidr, { status: 400, body: { message: "Invalid subnet 10.254.300.0/24 : invalid CIDR address: 10.254.300.0/24" } })
      assert.deepStrictEqual(ours.answers.unknown, { status: 404, body: { message: "network no-such-net not found" } })
      assert.deepStrictEqual(ours.answers.predefined, { status: 403, body: { message: "none is a pre-defined network and cannot be removed" } })
      assert.deepStrictEqual(ours.answers.connectUnknown, { status: 404, body: { message: "No such container: no-such-container" } })
      assert.deepStrictEqual(ours.connections.again, {
        status: 403,
        body: { message: `endpoint with name ${ours.firstName} already exists in network net-x` }
      })
      assert.deepStrictEqual(ours.connections.host, {
        status: 400,
        body: { message: "container cannot be disconnected from host network or connected to host network" }
      })
      assert.deepStrictEqual(ours.connections.none, {
        status: 400,
        body: { message: "container cannot be connected to multiple networks with one of the networks in private (none) mode" }
      })
      assert.deepStrictEqual(ours.inUse, {
        status: 403,
        body: { message: `error while removing network: network net-x id ${ours.networkId} has active endpoints` }
      })
      for (const result of results) {
        assert.strictEqual(result.taken.code, 125, `${result.engine.name}: ${result.taken.stderr}`)
        assert.match(
          result.taken.stderr,
          new RegExp(`driver failed programming external connectivity on endpoint second \\([0-9a-f]{64}\\): Bind for 0\\.0\\.0\\.0:${result.port} failed: port is already allocated`),
          result.engine.name
        )
        assert.strictEqual(result.second.Running, false, `${result.engine.name}: the container whose port is taken does not run`)
      }
      const dockerd = results[1]
      if (dockerd === undefined) return yield* Effect.logWarning("dockerd is not installed: its half of the bad-input comparison is skipped")
      for (const key of ["overlap", "duplicate", "unknown", "predefined", "connectUnknown"] as const) {
        assert.deepStrictEqual(ours.answers[key], dockerd.answers[key], `as dockerd: ${key}`)
      }
      assert.deepStrictEqual([dockerd.answers.badCidr.status, dockerd.answers.badCidr.body], [500, ours.answers.badCidr.body])
      for (const key of ["again", "host", "none"] as const) {
        assert.deepStrictEqual(
          [ours.connections[key].status, ours.connections[key].body.message.replace(ours.firstName, "<name>")],
          [dockerd.connections[key].status, dockerd.connections[key].body.message.replace(dockerd.firstName, "<name>")],
          `as dockerd: connect ${key}`
        )
      }
      assert.deepStrictEqual(ours.inUse.status, dockerd.inUse.status)
      assert.deepStrictEqual(ours.inUse.body.message.replace(ours.networkId, "<id>"), dockerd.inUse.body.message.replace(dockerd.networkId, "<id>"))
    }))

  it.effect("an unknown network at create is refused with dockerd's words and creates nothing (a 400: the CLI pulls the image on a 404)", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const before = (yield* ok(ours, ["ps", "-aq"])).trim()
      const refused = yield* ours.docker(["run", "-d", "--network", "no-such-net", FIXTURE_IMAGE, "true"])
      assert.strictEqual(refused.code, 125)
      assert.include(refused.stderr, "network no-such-net not found")
      assert.strictEqual((yield* ok(ours, ["ps", "-aq"])).trim(), before)
      const direct = yield* api(ours, "POST", "/containers/create", { Image: FIXTURE_IMAGE, HostConfig: { NetworkMode: "no-such-net" } })
      assert.deepStrictEqual(direct, { status: 400, body: { message: "network no-such-net not found" } })
    }))

  it.effect("--cni-path names where the plugins are: a directory without them stops the daemon at start, saying which", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const dir = ours.daemon!.dir
      const empty = path.join(dir, "no-plugins")
      fs.mkdirSync(empty)
      const start = yield* runDaemonCommand([
        "--host", `${dir}/cni.sock`, "--data-root", `${dir}/cni-root`, "--containerd", shared().address, "--cni-path", empty
      ])
      assert.notStrictEqual(start.code, 0)
      assert.include(start.output, `plugin directories: ${empty}`)
    }))
})
