/**
 * Containers on networks, against the real containerd and the real CNI
 * plugins: the attachment is made before the task's create and lives as long
 * as the task — released by its deletion, a failed create, the container
 * deleted by anyone, or found gone at the next start — and a networked
 * `run --rm` costs the same seven RPCs as any other.
 *
 * Each test has a namespace, a data directory and a network (bridge and
 * subnet) of its own; the traces an attachment leaves on the host are looked
 * for by name: the host-local address file, the veth on the bridge, the netns.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, type Duration, Effect, Exit, Fiber, Layer, Option, Schedule, Stream } from "effect"
import { execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { bareRecord } from "../../src/internal/BareRecord.ts"
import type { ContainerdError } from "../../src/domain/ContainerdError.ts"
import { ContainersDefinition } from "../../src/gen/containerd/services/containers/v1/containers.ts"
import { ContentDefinition } from "../../src/gen/containerd/services/content/v1/content.ts"
import { EventsDefinition } from "../../src/gen/containerd/services/events/v1/events.ts"
import { ImagesDefinition } from "../../src/gen/containerd/services/images/v1/images.ts"
import { SnapshotsDefinition } from "../../src/gen/containerd/services/snapshots/v1/snapshots.ts"
import { TasksDefinition } from "../../src/gen/containerd/services/tasks/v1/tasks.ts"
import * as Live from "../../src/layers/Live.ts"
import { Containerd, rpcCounts } from "../../src/services/Containerd.ts"
import { ExitHandler, Monitors } from "../../src/services/Monitors.ts"
import { type AttachOptions, Networks } from "../../src/services/Networks.ts"
import { Runtime, Stdio } from "../../src/services/Runtime.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { startGrpcProxy } from "../support/GrpcProxy.ts"
import { importFixture, shared, uniqueNamespace } from "../support/SharedContainerd.ts"

/** Polls `check` every 20 ms until it holds, for at most `within`. */
const eventually = <E, R>(check: Effect.Effect<boolean, E, R>, within: Duration.Input = "10 seconds") =>
  check.pipe(
    Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (ok) => ok }),
    Effect.timeout(within)
  )

const sh = (file: string, ...args: Array<string>) => execFileSync(file, args, { encoding: "utf8", stdio: "pipe" })

/** A network of the test's own: a unique name, bridge and /24 (198.19/16, a benchmarking range no host network uses). */
const networkOf = () => {
  const tag = crypto.randomBytes(3).toString("hex")
  const third = crypto.randomBytes(1)[0]!
  return { name: `efc-rt-${tag}`, bridge: `efrt${tag}`, subnet: `198.19.${third}.0/24` }
}

/** A proxy in front of the shared daemon, to fail a method or count what crosses the wire. */
const proxied = startGrpcProxy(shared().address, [
  ContainersDefinition, ContentDefinition, EventsDefinition, ImagesDefinition, SnapshotsDefinition, TasksDefinition
])

/** A namespace with the fixture, a data directory and a network, all removed with the test. */
const setup = Effect.gen(function*() {
  const namespace = uniqueNamespace("net")
  yield* importFixture(namespace)
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-net-"))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )
  const network = networkOf()
  const dirs = { fifoDir: path.join(dir, "fifo"), networks: { confDir: path.join(dir, "network"), runRoot: path.join(dir, "run") } }
  // Before the directory goes, by a `Networks` of its own (whatever the test's layers did, or failed
  // to): what is still attached is released, then the network (its rules and bridge) is removed.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function*() {
      const networks = yield* Networks
      yield* Effect.ignore(networks.sweep(namespace, new Set()))
      yield* Effect.ignore(networks.remove(network.name))
    }).pipe(Effect.provide(Live.networks(dirs.networks)), Effect.ignore)
  )
  return { namespace, dir, network, dirs }
})

type Setup = Effect.Success<typeof setup>

/** Everything over the shared daemon (or `address`), with networks, and monitors. */
const layerOf = (s: Setup, address?: string) =>
  Monitors.layer().pipe(
    Layer.provideMerge(ExitHandler.none),
    Layer.provideMerge(Live.services({ runtime: { fifoDir: s.dirs.fifoDir }, networks: s.dirs.networks })),
    Layer.provideMerge(Containerd.layer({ address: address ?? shared().address, namespace: s.namespace }).pipe(Layer.orDie))
  )

/** Defines the test's network in the layer's `Networks` (the test's scope removes it). */
const defineNetwork = (s: Setup) =>
  Effect.flatMap(Networks, (networks) => networks.define({ name: s.network.name, bridge: s.network.bridge, subnet: s.network.subnet }))

/** What an attachment leaves on the host: addresses recorded by host-local, veths on the bridge, the netns file. */
const traces = (s: Setup, netns: string) =>
  Effect.sync(() => {
    const ipam = path.join(s.dirs.networks.confDir, "ipam", s.network.name)
    const addresses = fs.existsSync(ipam) ? fs.readdirSync(ipam).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : []
    const veths = (JSON.parse(sh("ip", "-j", "link", "show", "master", s.network.bridge) || "[]") as Array<unknown>).length
    return { addresses: addresses.length, veths, netns: fs.existsSync(netns) }
  })
const none = { addresses: 0, veths: 0, netns: false }
const sameAs = (a: typeof none, b: typeof none) => JSON.stringify(a) === JSON.stringify(b)

const on = (s: Setup, ports?: AttachOptions["ports"]): AttachOptions => ({ networks: [{ network: s.network.name }], ports })

/** Runs `command` in a new container on the network (as `docker run --rm`): its output. */
const run = (s: Setup, id: string, command: ReadonlyArray<string>) =>
  Effect.scoped(Effect.gen(function*() {
    const runtime = yield* Runtime
    const container = yield* runtime.containers.create({ id, image: FIXTURE_IMAGE, command, network: on(s) })
    const task = yield* container.newTask({ stdio: Stdio.pipe() })
    const stdout = yield* Effect.forkChild(task.stdout.pipe(Stream.decodeText(), Stream.mkString))
    yield* task.start
    const status = yield* task.wait
    yield* task.delete
    yield* container.delete()
    return { code: status.code, output: yield* Fiber.join(stdout) }
  }))

/** Reaches `ip:80` from a new container (retrying while the listener comes up): what it read. */
const reach = (s: Setup, id: string, ip: string) =>
  run(s, id, ["sh", "-c", `for i in $(seq 100); do busybox nc ${ip} 80 </dev/null && exit 0; sleep 0.05; done; exit 1`])

/** A listener on port 80 that answers each connection with `answer`. */
const listener = (answer: string) => ["sh", "-c", `while true; do echo ${answer} | busybox nc -l -p 80; done`]

const reasonOf = (exit: Exit.Exit<unknown, ContainerdError>) =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Exit.findErrorOption(exit))?.reason._tag : "Success"

describe("Runtime: containers on networks", () => {
  it.live("networks asked for without a Networks service, or an unknown one: refused before any RPC", () =>
    Effect.gen(function*() {
      const s = yield* setup
      // The library without networks: a plain `services()`, as every program that has none.
      const plain = yield* Layer.build(
        Live.services({ runtime: { fifoDir: s.dirs.fifoDir } }).pipe(
          Layer.provideMerge(Containerd.layer({ address: shared().address, namespace: s.namespace }).pipe(Layer.orDie))
        )
      )
      const before = yield* rpcCounts
      const without = yield* Effect.exit(
        Context.get(plain, Runtime).containers.create({ id: "lonely", image: FIXTURE_IMAGE, network: on(s) })
      )
      assert.strictEqual(reasonOf(without), "FailedPrecondition")
      assert.match(String(Exit.isFailure(without) ? without.cause : ""), /no Networks service/)
      yield* Effect.gen(function*() {
        yield* defineNetwork(s)
        const runtime = yield* Runtime
        const unknown = yield* Effect.exit(runtime.containers.create({
          id: "lost",
          image: FIXTURE_IMAGE,
          network: { networks: [{ network: "no-such-network" }] }
        }))
        assert.strictEqual(reasonOf(unknown), "NotFound")
        const twice = yield* Effect.exit(runtime.containers.create({
          id: "twice",
          image: FIXTURE_IMAGE,
          network: { networks: [{ network: s.network.name }, { network: s.network.name }] }
        }))
        assert.strictEqual(reasonOf(twice), "InvalidArgument")
        const badPort = yield* Effect.exit(runtime.containers.create({
          id: "badport",
          image: FIXTURE_IMAGE,
          network: on(s, [{ hostPort: 8080, containerPort: 0, protocol: "tcp" }])
        }))
        assert.strictEqual(reasonOf(badPort), "InvalidArgument")
        // A container created without networks cannot be given some at its start: its spec joins no namespace for them.
        const plainContainer = yield* runtime.containers.create({ id: "plain", image: FIXTURE_IMAGE, command: ["true"] })
        const late = yield* Effect.exit(Effect.scoped(plainContainer.newTask({ network: on(s) })))
        assert.strictEqual(reasonOf(late), "FailedPrecondition")
        yield* plainContainer.delete()
      }).pipe(Effect.provide(layerOf(s)))
      const after = yield* rpcCounts
      const creates = (m: ReadonlyMap<string, number>) => m.get("/containerd.services.containers.v1.Containers/Create") ?? 0
      // One Containers.Create: the plain container's, and none for the refused ones.
      assert.strictEqual(creates(after) - creates(before), 1)
    }), 30_000)

  it.live("a failed Tasks.Create leaves no attachment (no address, veth or netns); the next task's networks can be others", () =>
    Effect.gen(function*() {
      const s = yield* setup
      const proxy = yield* proxied
      yield* Effect.gen(function*() {
        yield* defineNetwork(s)
        const runtime = yield* Runtime
        const networks = yield* Networks
        const netns = networks.netnsPath(s.namespace, "doomed")
        const container = yield* runtime.containers.create({ id: "doomed", image: FIXTURE_IMAGE, command: ["true"], network: on(s) })
        yield* proxy.failNext("Tasks/Create", 1)
        // In the test's scope, still open when the traces are looked for: the failure itself must release.
        const failed = yield* Effect.exit(container.newTask())
        assert.strictEqual(reasonOf(failed), "Unavailable")
        assert.strictEqual(proxy.injected("Tasks/Create"), 1)
        assert.deepStrictEqual(yield* traces(s, netns), none)
        assert.deepStrictEqual(yield* networks.attachments, [])

        // The next task, told otherwise (disconnected while stopped): on no network, loopback only.
        const task = yield* container.newTask({ network: { networks: [] } })
        assert.deepStrictEqual(task.attachment?.endpoints, [])
        assert.deepStrictEqual(yield* traces(s, netns), { addresses: 0, veths: 0, netns: true })
        yield* task.delete
        assert.deepStrictEqual(yield* traces(s, netns), none)
        yield* container.delete()
      }).pipe(Effect.provide(layerOf(s, proxy.address)))
    }), 30_000)

  it.live("two containers on one network: one reaches the other's listener by IP; a networked run --rm costs 7 RPCs", () =>
    Effect.gen(function*() {
      const s = yield* setup
      const proxy = yield* proxied
      yield* Effect.gen(function*() {
        yield* defineNetwork(s)
        const monitors = yield* Monitors
        const networks = yield* Networks
        yield* monitors.create({ id: "server", image: FIXTURE_IMAGE, command: listener("hello-from-server"), network: on(s) })
        const server = yield* monitors.start("server")
        const ip = server.attachment?.endpoints[0]?.address
        assert.isDefined(ip)
        assert.strictEqual(ip!.startsWith(s.network.subnet.split(".").slice(0, 3).join(".")), true, `${ip} in ${s.network.subnet}`)

        // Warm (the image known), then counted: the floor of any run --rm.
        assert.include((yield* reach(s, "warm", ip!)).output, "hello-from-server")
        const wire = proxy.counts()
        const reached = yield* reach(s, "client", ip!)
        assert.strictEqual(reached.code, 0)
        assert.include(reached.output, "hello-from-server")
        const counts = Object.fromEntries(
          [...proxy.counts()].map(([m, n]) => [m.slice(m.lastIndexOf(".") + 1), n - (wire.get(m) ?? 0)] as const).filter(([, n]) => n > 0)
        )
        assert.deepStrictEqual(counts, {
          "Containers/Create": 1,
          "Snapshots/Prepare": 1,
          "Tasks/Create": 1,
          "Tasks/Start": 1,
          "Tasks/Delete": 1,
          "Snapshots/Remove": 1,
          "Containers/Delete": 1
        })
        // The clients' attachments went with their tasks.
        assert.deepStrictEqual((yield* networks.attachments).map((a) => a.containerId), ["server"])
        // Its exit's handling deletes the task, and the attachment goes with it.
        yield* server.kill("SIGKILL")
        yield* eventually(Effect.map(traces(s, networks.netnsPath(s.namespace, "server")), (t) => sameAs(t, none)))
        yield* monitors.remove("server")
      }).pipe(Effect.provide(layerOf(s, proxy.address)))
    }), 30_000)

  it.live("a container deleted behind our back while its task runs has its address, veth and netns gone within 1 s", () =>
    Effect.gen(function*() {
      const s = yield* setup
      yield* Effect.gen(function*() {
        yield* defineNetwork(s)
        const monitors = yield* Monitors
        const networks = yield* Networks
        const client = yield* Containerd
        const netns = networks.netnsPath(s.namespace, "victim")
        yield* monitors.create({ id: "victim", image: FIXTURE_IMAGE, command: ["sleep", "600"], network: on(s) })
        yield* monitors.start("victim")
        assert.deepStrictEqual(yield* traces(s, netns), { addresses: 1, veths: 1, netns: true })
        // As any client may: the record goes, the task runs on.
        yield* client.containers.delete({ id: "victim" })
        const deletedAt = Date.now()
        yield* eventually(Effect.map(traces(s, netns), (t) => sameAs(t, none)), "1 second")
        assert.isBelow(Date.now() - deletedAt, 1000)
        assert.deepStrictEqual(yield* networks.attachments, [])
        yield* killOrphan(client, "victim")
      }).pipe(Effect.provide(layerOf(s)))
    }), 30_000)

  it.live("restart: a running container's attachment is adopted (still reachable); exited or vanished ones are released", () =>
    Effect.gen(function*() {
      const s = yield* setup
      const ctr = (...args: Array<string>) => sh("ctr", "--address", shared().address, "--namespace", s.namespace, ...args)
      const ids = ["keeps", "exits", "vanishes"] as const
      const netnsOf = (networks: Networks["Service"]) => (id: string) => networks.netnsPath(s.namespace, id)
      yield* Effect.gen(function*() {
        const networks = yield* Networks
        yield* defineNetwork(s)
        const monitors = yield* Monitors
        for (const id of ids) {
          yield* monitors.create({ id, image: FIXTURE_IMAGE, command: listener(`hello-from-${id}`), network: on(s) })
          yield* monitors.start(id)
        }
        assert.strictEqual((yield* networks.attachments).length, 3)
      }).pipe(Effect.scoped, Effect.provide(layerOf(s)))

      // While we are down: one exits, one's task is deleted; the attachments stay recorded.
      ctr("task", "kill", "--signal", "KILL", "exits")
      ctr("task", "kill", "--signal", "KILL", "vanishes")
      const stopped = (id: string) => new RegExp(`^${id}\\s+\\d+\\s+STOPPED`, "m").test(ctr("task", "ls"))
      yield* eventually(Effect.sync(() => stopped("exits") && stopped("vanishes")))
      ctr("task", "rm", "vanishes")

      yield* Effect.gen(function*() {
        const networks = yield* Networks
        const monitors = yield* Monitors
        const netns = netnsOf(networks)
        // The vanished one is released by recovery's sweep, the exited one by its exit's handling.
        yield* eventually(Effect.map(networks.attachments, (all) => all.length === 1 && all[0]?.containerId === "keeps"))
        const kept = (yield* monitors.get("keeps")).pipe(Option.getOrThrow)
        const ip = kept.task?.attachment?.endpoints[0]?.address
        assert.isDefined(ip, "the recovered task has its attachment")
        assert.include((yield* reach(s, "prober", ip!)).output, "hello-from-keeps")
        for (const id of ["exits", "vanishes"]) {
          const t = yield* traces(s, netns(id))
          assert.isFalse(t.netns, `${id}: its netns is gone`)
        }
        assert.deepStrictEqual((yield* traces(s, netns("keeps"))).addresses, 1)
        yield* kept.task!.kill("SIGKILL")
        yield* eventually(Effect.map(traces(s, netns("keeps")), (t) => sameAs(t, none)))
        for (const id of ids) yield* monitors.remove(id)
      }).pipe(Effect.scoped, Effect.provide(layerOf(s)))
    }), 40_000)
})

/**
 * Kills and deletes a task whose container record is gone: containerd reaches
 * its shim only through a record of that id, so a placeholder is made for it.
 */
const killOrphan = (client: Containerd["Service"], id: string): Effect.Effect<void, ContainerdError> =>
  Effect.gen(function*() {
    yield* client.containers.create({ container: bareRecord(id) })
    yield* client.tasks.kill({ containerId: id, signal: 9, all: true })
    yield* client.tasks.wait({ containerId: id })
    yield* client.tasks.delete({ containerId: id })
    yield* client.containers.delete({ id })
    yield* Effect.ignore(client.snapshots.remove({ snapshotter: "overlayfs", key: id }))
  })
