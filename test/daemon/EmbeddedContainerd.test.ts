import { assert, describe, it } from "@effect/vitest"
import { type Duration, Effect, Exit, Schedule, Scope } from "effect"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { embeddedContainerd, type EmbeddedContainerdOptions } from "../../src/daemon/EmbeddedContainerd.ts"
import { Containerd } from "../../src/services/Containerd.ts"
import { Status } from "../../src/gen/containerd/types/task/task.ts"
import { importArchive } from "../support/FixtureImage.ts"
import { bundlesOf, DEFAULT_RUNC_ROOT, destroyShims, isAlive, mountsUnder } from "../support/Processes.ts"
import { createRawTask } from "../support/RawContainers.ts"
import { shared, uniqueNamespace } from "../support/SharedContainerd.ts"

/**
 * Removes what the embedded containerd's shims left under `dataRoot`, by PID
 * from its state directory (as the harness's destroy does), then `dataRoot`.
 */
const destroyLeftovers = (dataRoot: string) =>
  Effect.gen(function*() {
    const state = path.join(dataRoot, "containerd", "state")
    yield* destroyShims(state, dataRoot)
    fs.rmSync(dataRoot, { recursive: true, force: true })
  })

/** A fresh data root, destroyed (with anything left running in it) at the end of the test. */
const dataRoot = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-emb-"))),
  destroyLeftovers
)

/** Starts an embedded containerd in a scope of its own, which the test closes (or the test's end does). */
const startIn = (options: EmbeddedContainerdOptions) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const containerd = yield* embeddedContainerd(options).pipe(Scope.provide(scope))
    return { containerd, close: Scope.close(scope, Exit.void) }
  })

const version = (address: string) =>
  Containerd.use((client) => client.version.version({})).pipe(Effect.provide(Containerd.layer({ address })))

/** Polls `condition` every 20 ms until it holds; fails the test after `timeout`. */
const eventually = (condition: () => boolean, timeout: Duration.Input = "10 seconds") =>
  Effect.sync(condition).pipe(
    Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (ok) => ok }),
    Effect.timeout(timeout),
    Effect.orDie
  )

describe("EmbeddedContainerd", () => {
  it.live("serves, is restarted with a new PID after SIGKILL, and is stopped with its socket removed by the scope", () =>
    Effect.gen(function*() {
      const root = yield* dataRoot
      const { close, containerd } = yield* startIn({ dataRoot: root, logLevel: "info" })
      assert.strictEqual(containerd.address, path.join(root, "containerd", "containerd.sock"))
      assert.include(fs.readFileSync(containerd.configFile, "utf8"), `"io.containerd.grpc.v1.cri"`)
      assert.isNotEmpty((yield* version(containerd.address)).version)

      const first = containerd.pid()!
      assert.isTrue(isAlive(first))
      process.kill(first, "SIGKILL")
      yield* eventually(() => containerd.pid() !== undefined && containerd.pid() !== first)
      const second = containerd.pid()!
      assert.isNotEmpty((yield* version(containerd.address)).version)
      assert.strictEqual(containerd.restarts(), 1)
      assert.isFalse(isAlive(first))
      assert.isTrue(isAlive(second))

      yield* close
      assert.isFalse(isAlive(second))
      assert.isFalse(fs.existsSync(containerd.address))
      assert.isFalse(fs.existsSync(`${containerd.address}.ttrpc`))
      assert.isFalse(fs.existsSync(path.join(root, "containerd", "containerd.pid")))
    }))

  it.live("gives up after maxRestarts restarts in a row: join fails with GaveUp", () =>
    Effect.gen(function*() {
      const root = yield* dataRoot
      const { containerd } = yield* startIn({ dataRoot: root, maxRestarts: 1 })
      const first = containerd.pid()!
      process.kill(first, "SIGKILL")
      yield* eventually(() => containerd.pid() !== undefined && containerd.pid() !== first)
      process.kill(containerd.pid()!, "SIGKILL")
      const error = yield* Effect.flip(containerd.join).pipe(Effect.timeout("10 seconds"))
      assert.strictEqual(error.reason, "GaveUp")
      assert.strictEqual(containerd.restarts(), 1)
      assert.isUndefined(containerd.pid())
    }))

  it.live("a shim it started survives its stop, and the next containerd on the same state finds the task running", () =>
    Effect.gen(function*() {
      const root = yield* dataRoot
      const namespace = uniqueNamespace("embedded")
      const first = yield* startIn({ dataRoot: root })
      yield* importArchive(first.containerd.address, namespace, shared().fixtureArchive)
      const initPid = yield* Effect.gen(function*() {
        const client = yield* Containerd
        yield* createRawTask(client, { id: "survivor", args: ["sleep", "600"], chainId: shared().fixtureChainId })
        return (yield* client.tasks.start({ containerId: "survivor" })).pid
      }).pipe(Effect.provide(Containerd.layer({ address: first.containerd.address, namespace })))
      const [bundle] = bundlesOf(first.containerd.state)
      assert.strictEqual(bundle?.id, "survivor")
      assert.strictEqual(bundle?.initPid, initPid)
      assert.lengthOf(bundle!.shimPids, 1)
      const shim = bundle!.shimPids[0]!
      const containerdPid = first.containerd.pid()!

      yield* first.close
      assert.isFalse(isAlive(containerdPid))
      assert.isTrue(isAlive(shim), "the shim survives containerd's stop")
      assert.isTrue(isAlive(initPid), "so does the container")

      const second = yield* startIn({ dataRoot: root })
      const task = yield* Containerd.use((client) => client.tasks.get({ containerId: "survivor" })).pipe(
        Effect.provide(Containerd.layer({ address: second.containerd.address, namespace }))
      )
      assert.strictEqual(task.process?.status, Status.RUNNING)
      assert.strictEqual(task.process?.pid, initPid)
      yield* second.close
      assert.isTrue(isAlive(shim))

      yield* destroyLeftovers(root)
      assert.isFalse(isAlive(shim))
      assert.isFalse(isAlive(initPid))
      assert.isFalse(fs.existsSync(root))
      assert.deepStrictEqual(mountsUnder(root), [])
      assert.isFalse(fs.existsSync(path.join(DEFAULT_RUNC_ROOT, namespace)))
    }))

  it.live("rejects a data root whose socket path would be too long, before writing anything", () =>
    Effect.gen(function*() {
      const root = path.join(os.tmpdir(), "ectr-emb-long-", "x".repeat(80))
      const error = yield* Effect.flip(startIn({ dataRoot: root }))
      assert.strictEqual(error.reason, "InvalidOptions")
      assert.include(error.message, "107 bytes")
      assert.isFalse(fs.existsSync(root))
    }))

  it.live("fails with the tail of containerd's log when containerd exits before serving", () =>
    Effect.gen(function*() {
      const root = yield* dataRoot
      // containerd cannot replace a non-empty directory with its ttrpc socket, and exits.
      fs.mkdirSync(path.join(root, "containerd", "containerd.sock.ttrpc", "in-the-way"), { recursive: true })
      const error = yield* Effect.flip(startIn({ dataRoot: root }))
      assert.strictEqual(error.reason, "StartFailed")
      assert.match(error.message, /exited with code \d+ before serving/)
      assert.include(error.message, "failed to get listener for main ttrpc endpoint: is a directory")
      assert.isFalse(fs.existsSync(path.join(root, "containerd", "containerd.pid")))
    }))

  it.live("removes a stale socket, refuses a foreign listener, adopts a containerd of ours left running", () =>
    Effect.gen(function*() {
      const root = yield* dataRoot
      const dir = path.join(root, "containerd")
      const address = path.join(dir, "containerd.sock")
      fs.mkdirSync(dir, { recursive: true })

      // A listener that is not ours: refused, and its socket left alone.
      const server = net.createServer()
      yield* Effect.callback<void>((resume) => void server.listen(address, () => resume(Effect.void)))
      const refused = yield* Effect.flip(startIn({ dataRoot: root }))
      assert.strictEqual(refused.reason, "AddressInUse")
      assert.isTrue(fs.existsSync(address))
      yield* Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))

      // A socket file nobody listens on, as a crash leaves it.
      spawnSync("python3", ["-c", "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", address])
      assert.isTrue(fs.existsSync(address))
      const first = yield* startIn({ dataRoot: root })
      assert.isNotEmpty((yield* version(address)).version)
      yield* first.close

      // A containerd of ours whose daemon died without stopping it: adopted, then stopped with the scope.
      const log = fs.openSync(first.containerd.logFile, "a")
      const orphan = spawn("containerd", ["--config", first.containerd.configFile], { stdio: ["ignore", log, log] })
      fs.closeSync(log)
      yield* Effect.addFinalizer(() => Effect.sync(() => orphan.kill("SIGKILL")))
      fs.writeFileSync(path.join(dir, "containerd.pid"), `${orphan.pid}\n`)
      const adopted = yield* startIn({ dataRoot: root })
      assert.strictEqual(adopted.containerd.pid(), orphan.pid)
      assert.isNotEmpty((yield* version(address)).version)
      yield* adopted.close
      // containerd exits 0 on SIGTERM.
      yield* eventually(() => orphan.exitCode !== null || orphan.signalCode !== null, "1 second")
      assert.strictEqual(orphan.exitCode, 0)
      assert.isFalse(fs.existsSync(address))
    }))
})
