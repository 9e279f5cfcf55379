/**
 * A container's /etc/hosts, /etc/resolv.conf and /etc/hostname: the two pure
 * renderers against what dockerd 20.10 wrote on this machine; the writer's
 * in-place rewrites as attachments come and go; and, through the docker CLI
 * against our daemon beside dockerd on the same containerd when it is
 * installed (test/support/Engines.ts), the files the container sees, byte for
 * byte the same as dockerd's, and a bad `--add-host` refused at create.
 */
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Option, PubSub, Result, Stream } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { Attachment, AttachmentChange } from "../../src/services/Networks.ts"
import { memberEntries, ownEntry, parseExtraHost, renderHosts } from "../../src/daemon/network/EtcHosts.ts"
import { type ContainerNames, extraEntries, filesOf, makeHostsFiles } from "../../src/daemon/network/HostsFiles.ts"
import { build, checkDns, containerResolvConf, filter, hostResolvConfPath } from "../../src/daemon/network/ResolvConf.ts"
import { removeTree } from "../../src/internal/Files.ts"
import { bothEngines, type Engine, engines, Engines, eventually, ok } from "../support/Engines.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { shared } from "../support/SharedContainerd.ts"

const API = "/v1.41"

/** The containerd namespace our daemon runs in (its `--namespace`). */
const daemonNamespace = (engine: Engine): string => {
  const args = fs.readFileSync(`/proc/${engine.daemon!.pid()}/cmdline`, "utf8").split("\0")
  return args[args.indexOf("--namespace") + 1]!
}

/** `ctr` on the shared containerd: its stdout. */
const ctrOut = (namespace: string, args: ReadonlyArray<string>) =>
  Effect.callback<string, Error>((resume) => {
    execFile("ctr", ["--address", shared().address, "-n", namespace, ...args], { timeout: 30_000 }, (error, stdout, stderr) =>
      resume(error ? Effect.fail(new Error(`ctr ${args.join(" ")}: ${stderr || error.message}`)) : Effect.succeed(stdout)))
  })
const ctr = (namespace: string, args: ReadonlyArray<string>) => Effect.asVoid(ctrOut(namespace, args))

/** dockerd 20.10's default lines (recorded: `docker run --network none busybox cat /etc/hosts`). */
const DOCKERD_DEFAULT = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n" +
  "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"

describe("resolv.conf, as dockerd 20.10 writes it", () => {
  const host = (content: string) => ({ etc: content, effective: content })
  const none = { servers: [], search: [], options: [] }

  it("the host's file without its localhost nameservers; the public fallback only when none is left", () => {
    const hostFile = "# written by hand\nnameserver 127.0.0.1\nnameserver 10.255.255.53\nnameserver ::1\nsearch example.com\noptions ndots:2\n"
    assert.deepStrictEqual(filter(hostFile, true), {
      content: "# written by hand\nnameserver 10.255.255.53\nsearch example.com\noptions ndots:2\n",
      fallbackUsed: false
    })
    // Only localhost servers: Google's, appended after a newline and with none after them (dockerd's bytes).
    assert.deepStrictEqual(filter("nameserver 127.0.0.53\nsearch lan\n", false), {
      content: "search lan\n\nnameserver 8.8.8.8\nnameserver 8.8.4.4",
      fallbackUsed: true
    })
    // A container on a bridge has no IPv6: its IPv6 servers go too.
    assert.strictEqual(
      containerResolvConf(host("nameserver 2001:db8::1\nnameserver 10.0.0.2\n"), "bridge", none).content,
      "nameserver 10.0.0.2\n"
    )
    assert.strictEqual(containerResolvConf(host("nameserver 2001:db8::1\nnameserver 10.0.0.2\n"), "none", none).content,
      "nameserver 2001:db8::1\nnameserver 10.0.0.2\n")
    // The host's network without settings: the host's file, localhost servers and all.
    assert.strictEqual(containerResolvConf(host("nameserver 127.0.0.1\n"), "host", none).content, "nameserver 127.0.0.1\n")
    assert.strictEqual(hostResolvConfPath("nameserver 127.0.0.53\noptions edns0\n"), "/run/systemd/resolve/resolv.conf")
    assert.strictEqual(hostResolvConfPath("nameserver 127.0.0.53\nnameserver 10.0.0.2\n"), "/etc/resolv.conf")
  })

  it("--dns, --dns-search and --dns-option replace their parts; the rest is the host's; search '.' is none", () => {
    // Recorded from dockerd: --dns 1.1.1.1 --dns 9.9.9.9 --dns-search a.example --dns-search b.example --dns-option ndots:2 --dns-option timeout:1
    assert.strictEqual(
      containerResolvConf(host("nameserver 10.255.255.53\n"), "none", {
        servers: ["1.1.1.1", "9.9.9.9"],
        search: ["a.example", "b.example"],
        options: ["ndots:2", "timeout:1"]
      }).content,
      "search a.example b.example\nnameserver 1.1.1.1\nnameserver 9.9.9.9\noptions ndots:2 timeout:1\n"
    )
    // Recorded: --dns-option ndots:3 alone keeps the host's nameserver; --dns-search . writes no search line.
    assert.strictEqual(
      containerResolvConf(host("nameserver 10.255.255.53\n"), "none", { ...none, options: ["ndots:3"] }).content,
      "nameserver 10.255.255.53\noptions ndots:3\n"
    )
    assert.strictEqual(build({ servers: ["10.0.0.2"], search: ["."], options: [] }), "nameserver 10.0.0.2\n")
    // With settings, the host's servers are taken unfiltered (as dockerd's GetNameservers), and on the host's network too.
    assert.strictEqual(
      containerResolvConf(host("nameserver 127.0.0.1\nsearch lan\n"), "host", { ...none, search: ["x.y"] }).content,
      "search x.y\nnameserver 127.0.0.1\n"
    )
    assert.deepStrictEqual(checkDns({ servers: ["notanip"], search: [], options: [] }), Result.fail("IP address is not correctly formatted: notanip"))
    assert.isTrue(Result.isFailure(checkDns({ servers: [], search: ["a b"], options: [] })))
    assert.isTrue(Result.isSuccess(checkDns({ servers: ["::1", "10.0.0.1"], search: ["a.b"], options: ["ndots:1"] })))
  })
})

describe("/etc/hosts, as dockerd 20.10 writes it", () => {
  it("default lines, --add-host lines, then the container's own address with its FQDN", () => {
    // Recorded: --add-host foo:10.1.2.3 --add-host bar:::1 (none), and a user network with --hostname myhost --domainname example.com.
    assert.strictEqual(
      renderHosts({ extra: [{ ip: "10.1.2.3", names: "foo" }, { ip: "::1", names: "bar" }] }),
      `${DOCKERD_DEFAULT}10.1.2.3\tfoo\n::1\tbar\n`
    )
    assert.strictEqual(
      renderHosts({ extra: [{ ip: "10.1.2.3", names: "foo" }], own: ownEntry("10.254.250.3", "myhost", "example.com") }),
      `${DOCKERD_DEFAULT}10.1.2.3\tfoo\n10.254.250.3\tmyhost.example.com myhost\n`
    )
    assert.deepStrictEqual(ownEntry("10.254.250.3", "5f27481f7694", ""), { ip: "10.254.250.3", names: "5f27481f7694" })
    assert.deepStrictEqual(ownEntry("10.0.0.2", "a.b", ""), { ip: "10.0.0.2", names: "a.b a" })
  })

  it("a bad --add-host is refused with dockerd's words; an IPv6 address stays whole", () => {
    // Recorded from dockerd's POST /containers/create (400).
    assert.deepStrictEqual(parseExtraHost("bad"), Result.fail(`bad format for add-host: "bad"`))
    assert.deepStrictEqual(parseExtraHost(":1.2.3.4"), Result.fail(`bad format for add-host: ":1.2.3.4"`))
    assert.deepStrictEqual(parseExtraHost("foo:notanip"), Result.fail(`invalid IP address in add-host: "notanip"`))
    assert.deepStrictEqual(parseExtraHost("foo:1.2.3.4:5"), Result.fail(`invalid IP address in add-host: "1.2.3.4:5"`))
    assert.deepStrictEqual(parseExtraHost("bar:::1"), Result.succeed({ name: "bar", ip: "::1" }))
    assert.deepStrictEqual(parseExtraHost("gw:host-gateway"), Result.succeed({ name: "gw", ip: "host-gateway" }))
    assert.isTrue(Result.isFailure(parseExtraHost("evil\n1.2.3.4 x:1.2.3.4")))
    // host-gateway is the default bridge's gateway; without a default bridge (--bridge none), dockerd's start-time words.
    assert.deepStrictEqual(extraEntries(["gw:host-gateway"], "10.0.0.1"), Result.succeed([{ ip: "10.0.0.1", names: "gw" }]))
    assert.deepStrictEqual(extraEntries(["gw:host-gateway"], undefined), Result.fail("unable to derive the IP value for host-gateway"))
  })

  it("the members' section: one line per address (name, aliases, short id, each once), in address order", () => {
    const id = (c: string) => c.repeat(64)
    assert.deepStrictEqual(memberEntries([
      { ip: "10.254.0.10", name: "web", id: id("b"), aliases: ["web", "frontend"] },
      { ip: "10.254.0.9", name: "db", id: id("a"), aliases: [] }
    ]), [
      { ip: "10.254.0.9", names: `db ${"a".repeat(12)}` },
      { ip: "10.254.0.10", names: `web frontend ${"b".repeat(12)}` }
    ])
  })
})

/** Three containers' names and a fake attachment source: the writer's logic with no containerd (its real use is below). */
const writerFixture = Effect.gen(function*() {
  const root = yield* Effect.acquireRelease(Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-hosts-"))), removeTree)
  const changes = yield* PubSub.unbounded<AttachmentChange>()
  const live = new Map<string, Attachment>()
  const names = new Map<string, ContainerNames>()
  const container = (name: string, networks: ContainerNames["networks"]): ContainerNames => {
    const id = name.padEnd(64, "0")
    const entry: ContainerNames = { id, name, hostname: id.slice(0, 12), domainname: "", extraHosts: [], mode: "networks", networks }
    names.set(id, entry)
    fs.mkdirSync(path.join(root, id))
    return entry
  }
  const writer = makeHostsFiles({
    root,
    namespace: "ns",
    lookup: (id) => Effect.sync(() => names.get(id)),
    hostGateway: () => "10.254.9.1",
    networks: Option.some({ attachments: Effect.sync(() => [...live.values()]), changes: PubSub.subscribe(changes).pipe(Effect.map(Stream.fromSubscription)) }),
    host: { etcHosts: () => "", etcResolvConf: () => "nameserver 10.0.0.2\n", readFile: () => "" }
  })
  /** Attaches (or re-attaches, as a connect or disconnect reports it) `entry` to `networks` (default: all of its own). */
  const attach = (entry: ContainerNames, ip: string, networks = entry.networks.map((n) => n.network)) => {
    const attachment: Attachment = {
      namespace: "ns",
      containerId: entry.id,
      netns: "",
      endpoints: networks.map((network) => ({ network, ifname: "eth0", address: ip, prefixLength: 24, gateway: "", mac: "" })),
      ports: []
    }
    live.set(entry.id, attachment)
    return PubSub.publish(changes, { _tag: "Attached", attachment } as AttachmentChange)
  }
  const detach = (entry: ContainerNames) => {
    const attachment = live.get(entry.id)!
    live.delete(entry.id)
    return PubSub.publish(changes, { _tag: "Detached", attachment } as AttachmentChange)
  }
  const hostsOf = (entry: ContainerNames) => fs.readFileSync(filesOf(root, entry.id).hosts, "utf8")
  const inode = (entry: ContainerNames) => fs.statSync(filesOf(root, entry.id).hosts).ino
  return { root, writer, container, attach, detach, hostsOf, inode, names }
})

/** Polls until `check` holds (the writer follows changes on a fiber of its own), for at most 5 s. */
const until = (what: string, check: () => boolean) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 5_000
    while (!check()) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep("10 millis")
    }
  })

describe("the hosts files' writer", () => {
  it.live("members come and go in each other's files, rewritten in place; the default bridge names nobody", () =>
    Effect.gen(function*() {
      const { writer, container, attach, detach, hostsOf, inode } = yield* writerFixture
      const user = { network: "net1", aliases: [] as ReadonlyArray<string>, resolves: true }
      const a = container("alpha", [user])
      const b = container("beta", [{ ...user, aliases: ["db", "beta"] }])
      const lone = container("lone", [{ network: "bridge0", aliases: [], resolves: false }])
      const dns = { servers: [], search: [], options: [] }
      for (const entry of [a, b, lone]) yield* writer.prepare(entry, { dns, readonly: false, mountedAt: new Set() })
      yield* writer.follow
      const inodes = [inode(a), inode(b)]

      yield* attach(a, "10.254.9.2")
      yield* until("alpha's own line", () => hostsOf(a).includes("10.254.9.2\talpha0000000\n"))
      yield* attach(b, "10.254.9.3")
      yield* until("beta in alpha's file", () => hostsOf(a).includes(`10.254.9.3\tbeta db ${b.id.slice(0, 12)}\n`))
      assert.include(hostsOf(b), `10.254.9.2\talpha ${a.id.slice(0, 12)}\n`)
      // Seen before its own start: a container's file lists the members of the networks it is configured for.
      yield* attach(lone, "10.254.8.2")
      yield* until("lone's own line", () => hostsOf(lone).includes("10.254.8.2\tlone00000000\n"))
      assert.notInclude(hostsOf(lone), "effect-containerd")

      // A disconnect is reported as the attachment left: beta leaves net1's files though its change names net1 no more.
      yield* attach(b, "10.254.9.3", [])
      yield* until("beta gone from alpha's file", () => !hostsOf(a).includes("beta"))
      yield* attach(b, "10.254.9.3")
      yield* until("beta back in alpha's file", () => hostsOf(a).includes("beta"))
      yield* detach(b)
      yield* until("beta gone again from alpha's file", () => !hostsOf(a).includes("beta"))
      assert.deepStrictEqual([inode(a), inode(b)], inodes)
      assert.strictEqual(
        hostsOf(a),
        `${DOCKERD_DEFAULT}10.254.9.2\talpha0000000\n` +
          "# effect-containerd: containers on this container's networks (kept up to date by the daemon)\n" +
          `10.254.9.2\talpha ${a.id.slice(0, 12)}\n# effect-containerd: end\n`
      )
    }).pipe(Effect.scoped))

  it.live("a removed container's directory is not made again; host-gateway is the default bridge's gateway", () =>
    Effect.gen(function*() {
      const { root, writer, container, attach, hostsOf, names } = yield* writerFixture
      const user = { network: "net1", aliases: [] as ReadonlyArray<string>, resolves: true }
      const a = container("alpha", [user])
      const gone = container("gone", [user])
      const dns = { servers: [], search: [], options: [] }
      yield* writer.prepare({ ...a, extraHosts: ["gw:host-gateway"] }, { dns, readonly: false, mountedAt: new Set() })
      assert.include(hostsOf(a), "10.254.9.1\tgw\n")
      yield* writer.follow
      fs.rmSync(path.join(root, gone.id), { recursive: true })
      names.delete(gone.id)
      yield* attach(gone, "10.254.9.5")
      yield* attach(a, "10.254.9.2")
      yield* until("alpha's own line", () => hostsOf(a).includes("10.254.9.2\talpha"))
      assert.isFalse(fs.existsSync(path.join(root, gone.id)))
      const mounts = yield* writer.prepare(container("ro", [user]), { dns, readonly: true, mountedAt: new Set(["/etc/hosts"]) })
      assert.deepStrictEqual(mounts.map((m) => [m.destination, m.readonly]), [["/etc/resolv.conf", true], ["/etc/hostname", true]])
    }).pipe(Effect.scoped))
})

/** `cat` of the three files in a container run with `args`, and its hostname. */
const filesIn = (engine: Engine, args: ReadonlyArray<string>) =>
  ok(engine, [
    "run", "--rm", ...args, FIXTURE_IMAGE, "sh", "-c",
    "cat /etc/hosts; echo ==; cat /etc/resolv.conf; echo ==; cat /etc/hostname; echo ==; hostname; grep -c ' /etc/hosts ' /proc/self/mountinfo"
  ])

layer(engines("hosts", [], { bridge: true }), { excludeTestServices: true, timeout: 120_000 })("the files a container sees, beside dockerd", (it) => {
  it.effect("--hostname, --domainname, --add-host and --dns* on none; the host's files on host: dockerd's bytes", () =>
    Effect.gen(function*() {
      const hostResolv = fs.readFileSync("/etc/resolv.conf", "utf8")
      const results = yield* bothEngines((engine) =>
        Effect.all([
          filesIn(engine, ["--network", "none"]),
          filesIn(engine, [
            "--network", "none", "--hostname", "myhost", "--domainname", "example.com",
            "--add-host", "foo:10.1.2.3", "--add-host", "bar:::1",
            "--dns", "1.1.1.1", "--dns-search", "a.example", "--dns-option", "ndots:2"
          ]),
          filesIn(engine, ["--network", "host"]),
          filesIn(engine, ["--network", "host", "--hostname", "hh", "--add-host", "foo:10.1.2.3"])
        ], { concurrency: "unbounded" }))
      const [plain, asked, onHost, onHostAsked] = results[0]!
      // Our own checks (CI has no dockerd): the generated hostname is the short id, the files are bind mounts.
      assert.match(plain, /^127\.0\.0\.1\tlocalhost\n[\s\S]*ff02::2\tip6-allrouters\n==\n/)
      assert.include(plain, `==\n${filter(hostResolv, true).content}==\n`)
      assert.match(plain, /==\n([0-9a-f]{12})\n==\n\1\n1\n$/)
      assert.strictEqual(
        asked,
        `${DOCKERD_DEFAULT}10.1.2.3\tfoo\n::1\tbar\n==\nsearch a.example\nnameserver 1.1.1.1\noptions ndots:2\n==\nmyhost\n==\nmyhost\n1\n`
      )
      assert.strictEqual(onHost, `${fs.readFileSync("/etc/hosts", "utf8")}==\n${hostResolv}==\n${os.hostname()}\n==\n${os.hostname()}\n1\n`)
      assert.strictEqual(onHostAsked, `${DOCKERD_DEFAULT}10.1.2.3\tfoo\n==\n${hostResolv}==\nhh\n==\nhh\n1\n`)
      const dockerd = results[1]
      if (dockerd === undefined) return yield* Effect.logWarning("dockerd is not installed: its half of the comparison is skipped")
      // dockerd's generated hostnames differ from ours: compare without them.
      const shape = (out: string) => out.replace(/[0-9a-f]{12}/g, "<id>")
      assert.deepStrictEqual(dockerd.map(shape), [plain, asked, onHost, onHostAsked].map(shape))
    }))

  it.effect("the files are writable as dockerd's, read-only with --read-only; a bind of the client's own at /etc/hosts wins", () =>
    Effect.gen(function*() {
      const results = yield* bothEngines((engine) =>
        Effect.all([
          ok(engine, ["run", "--rm", "--network", "none", FIXTURE_IMAGE, "sh", "-c", "echo '1.1.1.1 mine' >> /etc/hosts && head -1 /etc/hosts && tail -1 /etc/hosts"]),
          ok(engine, ["run", "--rm", "--network", "none", "--read-only", FIXTURE_IMAGE, "sh", "-c", "echo x >> /etc/hosts 2>/dev/null; echo rc=$?"]),
          ok(engine, ["run", "--rm", "--network", "none", "-v", "/etc/hostname:/etc/hosts:ro", FIXTURE_IMAGE, "cat", "/etc/hosts"])
        ], { concurrency: "unbounded" }))
      assert.deepStrictEqual(results[0], ["127.0.0.1\tlocalhost\n1.1.1.1 mine\n", "rc=1\n", fs.readFileSync("/etc/hostname", "utf8")])
      if (results[1] !== undefined) assert.deepStrictEqual(results[1], results[0])
    }))

  it.effect("a container in another's network namespace reads that one's files; its own hostname, --dns or --add-host is a 400", () =>
    Effect.gen(function*() {
      const results = yield* bothEngines((engine) =>
        Effect.gen(function*() {
          const donor = `donor-${engine.name}`
          yield* ok(engine, ["run", "-d", "--name", donor, "--network", "none", "--hostname", "dh", "--add-host", "a:1.2.3.4", FIXTURE_IMAGE, "sleep", "60"])
          const seen = yield* ok(engine, [
            "run", "--rm", "--network", `container:${donor}`, FIXTURE_IMAGE, "sh", "-c", "cat /etc/hosts /etc/hostname; hostname"
          ])
          const refused = yield* Effect.forEach([{ Hostname: "h" }, { HostConfig: { Dns: ["1.1.1.1"] } }, { HostConfig: { ExtraHosts: ["a:1.2.3.4"] } }], (extra) =>
            Effect.map(
              engine.request("POST", `${API}/containers/create`, JSON.stringify({
                Image: FIXTURE_IMAGE,
                ...extra,
                HostConfig: { NetworkMode: `container:${donor}`, ...("HostConfig" in extra ? extra.HostConfig : {}) }
              })),
              (r) => `${r.status} ${r.body.trim()}`
            ))
          yield* ok(engine, ["rm", "-f", donor])
          return { seen, refused }
        }))
      assert.deepStrictEqual(results[0], {
        seen: `${DOCKERD_DEFAULT}1.2.3.4\ta\ndh\ndh\n`,
        refused: [
          `400 {"message":"conflicting options: hostname and the network mode"}`,
          `400 {"message":"conflicting options: dns and the network mode"}`,
          `400 {"message":"conflicting options: custom host-to-IP mapping and the network mode"}`
        ]
      })
      if (results[1] !== undefined) assert.deepStrictEqual(results[1], results[0])
    }))

  it.effect("inspect shows the settings as dockerd does, and where the files are", () =>
    Effect.gen(function*() {
      const results = yield* bothEngines((engine) =>
        Effect.gen(function*() {
          const id = (yield* ok(engine, ["create", "--network", "none", "--add-host", "foo:10.1.2.3", "--dns", "1.1.1.1", FIXTURE_IMAGE])).trim()
          const shown = yield* ok(engine, [
            "inspect", "-f",
            "{{json .HostConfig.ExtraHosts}} {{json .HostConfig.Dns}} {{json .HostConfig.DnsSearch}} {{json .HostConfig.DnsOptions}}|{{.HostsPath}}",
            id
          ])
          yield* ok(engine, ["rm", id])
          return { id, shown: shown.trim() }
        }))
      const [settings, hostsPath] = results[0]!.shown.split("|")
      assert.strictEqual(settings, `["foo:10.1.2.3"] ["1.1.1.1"] [] []`)
      assert.strictEqual(path.basename(path.dirname(hostsPath!)), results[0]!.id)
      if (results[1] !== undefined) assert.strictEqual(results[1].shown.split("|")[0], settings)
    }))

  it.effect("a bad --add-host or --dns is a 400 at create with nothing made", () =>
    Effect.gen(function*() {
      const create = (engine: Engine, host: object) =>
        Effect.map(
          engine.request("POST", `${API}/containers/create`, JSON.stringify({ Image: FIXTURE_IMAGE, HostConfig: { NetworkMode: "none", ...host } })),
          (r) => `${r.status} ${r.body.trim()}`
        )
      const count = (engine: Engine) =>
        Effect.map(engine.request("GET", `${API}/containers/json?all=1`), (r) => (JSON.parse(r.body) as ReadonlyArray<unknown>).length)
      const results = yield* bothEngines((engine) =>
        Effect.gen(function*() {
          const before = yield* count(engine)
          const answers = yield* Effect.all([
            create(engine, { ExtraHosts: ["bad"] }),
            create(engine, { ExtraHosts: ["foo:notanip"] })
          ])
          return { answers, made: (yield* count(engine)) - before }
        }))
      assert.deepStrictEqual(results[0], {
        answers: [`400 {"message":"bad format for add-host: \\"bad\\""}`, `400 {"message":"invalid IP address in add-host: \\"notanip\\""}`],
        made: 0
      })
      if (results[1] !== undefined) assert.deepStrictEqual(results[1], results[0])
      const { ours } = yield* Engines
      const before = yield* count(ours)
      // dockerd takes this (its CLI checks --dns).
      assert.strictEqual(
        yield* create(ours, { Dns: ["notanip"] }),
        `400 {"message":"IP address is not correctly formatted: notanip"}`
      )
      assert.strictEqual(yield* count(ours), before)
    }))

  it.effect("on a user network names resolve: by name, alias and short id, a later member seen without restart, a removed one gone", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const docker = (...args: ReadonlyArray<string>) => ok(ours, args)
      const hostsIn = (name: string) => docker("exec", name, "cat", "/etc/hosts")
      const pings = (from: string, to: string) =>
        Effect.map(ours.docker(["exec", from, "ping", "-c1", "-W1", to]), (r) => r.code === 0)
      yield* docker("network", "create", "names")
      const [web, db] = yield* Effect.all([
        docker("run", "-d", "--name", "web", "--network", "names", "--network-alias", "frontend", FIXTURE_IMAGE, "sleep", "120"),
        docker("run", "-d", "--name", "db", "--network", "names", "--hostname", "dbhost", "--add-host", "gw:host-gateway",
          "--dns", "10.9.9.9", FIXTURE_IMAGE, "sleep", "120")
      ], { concurrency: "unbounded" }).pipe(Effect.map((ids) => ids.map((id) => id.trim())))
      const ipOf = (name: string) => Effect.map(docker("inspect", "-f", "{{.NetworkSettings.Networks.names.IPAddress}}", name), (s) => s.trim())
      const [webIp, dbIp] = yield* Effect.all([ipOf("web"), ipOf("db")])
      yield* eventually("each in the other's hosts file", Effect.map(
        Effect.all([hostsIn("web"), hostsIn("db")]),
        ([w, d]) => w.includes(`${dbIp}\tdb ${db!.slice(0, 12)}\n`) && d.includes(`${webIp}\tweb frontend ${web!.slice(0, 12)}\n`)
      ))
      for (const to of ["web", "frontend", web!.slice(0, 12)]) assert.isTrue(yield* pings("db", to), `db reaches ${to}`)
      assert.isTrue(yield* pings("web", "db"))
      // db's own settings, on a user network: its hostname line, host-gateway, its nameserver.
      const gateway = (yield* docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "bridge")).trim()
      const dbHosts = yield* hostsIn("db")
      assert.include(dbHosts, `${gateway}\tgw\n${dbIp}\tdbhost\n`)
      assert.strictEqual(yield* docker("exec", "db", "cat", "/etc/resolv.conf"), "nameserver 10.9.9.9\n")
      assert.strictEqual(yield* docker("exec", "db", "hostname"), "dbhost\n")

      // A later member: in web's file (the same inode, which web's mount holds) without restarting web.
      const inode = (name: string) => Effect.map(docker("exec", name, "stat", "-c", "%i", "/etc/hosts"), (s) => s.trim())
      const webInode = yield* inode("web")
      yield* docker("run", "-d", "--name", "late", "--network", "names", FIXTURE_IMAGE, "sleep", "120")
      yield* eventually("late in web's hosts file", Effect.map(hostsIn("web"), (h) => h.includes("\tlate ")))
      assert.isTrue(yield* pings("web", "late"))
      assert.strictEqual(yield* inode("web"), webInode)
      yield* docker("rm", "-f", "late")
      yield* eventually("late gone from web's and db's files", Effect.map(
        Effect.all([hostsIn("web"), hostsIn("db")]),
        ([w, d]) => !w.includes("late") && !d.includes("late")
      ))
      assert.isFalse(yield* pings("web", "late"))

      // docker network connect (with an alias) and disconnect of a running container.
      yield* docker("network", "create", "other")
      yield* docker("run", "-d", "--name", "elsewhere", "--network", "other", FIXTURE_IMAGE, "sleep", "120")
      yield* docker("network", "connect", "--alias", "webby", "other", "web")
      yield* eventually("web (webby) in elsewhere's file, elsewhere in web's", Effect.map(
        Effect.all([hostsIn("elsewhere"), hostsIn("web")]),
        ([e, w]) => /\tweb webby [0-9a-f]{12}\n/.test(e) && w.includes("\telsewhere ")
      ))
      assert.isTrue(yield* pings("elsewhere", "webby"))
      assert.notInclude(yield* hostsIn("db"), "elsewhere", "db is not on other")
      yield* docker("network", "disconnect", "other", "web")
      yield* eventually("web gone from elsewhere's file", Effect.map(hostsIn("elsewhere"), (h) => !h.includes("web")))
      yield* docker("rm", "-f", "elsewhere")
      yield* docker("network", "rm", "other")

      // Deleted behind the daemon's back (ctr): the attachment goes with it, and so does its name.
      const namespace = daemonNamespace(ours)
      yield* docker("run", "-d", "--name", "gone", "--network", "names", FIXTURE_IMAGE, "sleep", "120")
      yield* eventually("gone in web's hosts file", Effect.map(hostsIn("web"), (h) => h.includes("\tgone ")))
      const gone = (yield* docker("inspect", "-f", "{{.Id}}", "gone")).trim()
      yield* ctr(namespace, ["task", "kill", "-s", "SIGKILL", gone])
      yield* eventually("gone's task stopped", Effect.map(ctrOut(namespace, ["task", "ls", "-q"]), (out) => !out.includes(gone)))
      yield* ctr(namespace, ["task", "delete", gone]).pipe(Effect.ignore)
      yield* ctr(namespace, ["container", "delete", gone])
      yield* eventually("gone out of web's hosts file", Effect.map(hostsIn("web"), (h) => !h.includes("gone")))
      yield* docker("rm", "-f", "web", "db")
      yield* docker("network", "rm", "names")
    }))

  it.effect("on the default bridge a container has its own line only: no names of others", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      yield* ok(ours, ["run", "-d", "--name", "onbridge", FIXTURE_IMAGE, "sleep", "60"])
      const out = yield* ok(ours, ["run", "--rm", "--hostname", "solo", "--domainname", "example.com", FIXTURE_IMAGE, "cat", "/etc/hosts"])
      assert.isTrue(out.startsWith(DOCKERD_DEFAULT), out)
      assert.match(out.slice(DOCKERD_DEFAULT.length), /^\d+\.\d+\.\d+\.\d+\tsolo\.example\.com solo\n$/)
      yield* ok(ours, ["rm", "-f", "onbridge"])
    }))

  it.effect("the files outlive the daemon; a member deleted while it was down leaves the others' files at its next start", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const docker = (...args: ReadonlyArray<string>) => ok(ours, args)
      yield* docker("network", "create", "restarts")
      yield* Effect.all([
        docker("run", "-d", "--name", "stays", "--network", "restarts", FIXTURE_IMAGE, "sleep", "120"),
        docker("run", "-d", "--name", "goes", "--network", "restarts", FIXTURE_IMAGE, "sleep", "120")
      ], { concurrency: "unbounded" })
      const hostsPath = (yield* docker("inspect", "-f", "{{.HostsPath}}", "stays")).trim()
      const goes = (yield* docker("inspect", "-f", "{{.Id}}", "goes")).trim()
      yield* eventually("goes in stays' file", Effect.sync(() => fs.readFileSync(hostsPath, "utf8").includes("\tgoes ")))
      const namespace = daemonNamespace(ours)
      yield* ours.daemon!.stop
      yield* ctr(namespace, ["task", "kill", "-s", "SIGKILL", goes])
      yield* eventually("goes' task stopped", Effect.map(ctrOut(namespace, ["task", "ls"]), (out) => !new RegExp(`${goes}\\s+\\d+\\s+RUNNING`).test(out)))
      yield* ctr(namespace, ["task", "delete", goes]).pipe(Effect.ignore)
      yield* ctr(namespace, ["container", "delete", goes])
      assert.include(fs.readFileSync(hostsPath, "utf8"), "\tgoes ", "nothing rewrites the files while the daemon is down")
      yield* ours.daemon!.start
      yield* eventually("goes out of stays' file", Effect.sync(() => !fs.readFileSync(hostsPath, "utf8").includes("goes")))
      yield* docker("rm", "-f", "stays")
      yield* docker("network", "rm", "restarts")
    }))
})
