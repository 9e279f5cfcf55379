import { BRIDGE_WARNING } from "../../src/daemon/engine/Networking.ts"
/**
 * The engine against the shared containerd with an image that has a config of
 * its own (Env, Labels, WorkingDir, User, Cmd, STOPSIGNAL): inspect shows the
 * effective config merged with the image's as dockerd does, with the json-file
 * log driver and the real log path, and `stop` sends the image's STOPSIGNAL
 * unless the container sets its own. Create answers for fields it does not honour:
 * a 400 naming the field, or a warning.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Engine } from "../../src/daemon/Engine.ts"
import { EventLog } from "../../src/daemon/EventLog.ts"
import { buildFixtureImage, importArchive } from "../support/FixtureImage.ts"
import { runtimeLayer } from "../support/RuntimeLayer.ts"
import { shared, uniqueNamespace } from "../support/SharedContainerd.ts"

const IMAGE = "effect-containerd.test/stopsignal:latest"

/** Exits 42 on SIGUSR1 and 43 on SIGUSR2; as PID 1 it ignores SIGTERM (so a SIGTERM stop ends in SIGKILL, 137). */
const TRAPPING = "trap 'exit 42' USR1; trap 'exit 43' USR2; while true; do sleep 0.1; done"

/** The engine over the shared daemon in a namespace of the test's own, with the configured image imported. */
const setup = Effect.gen(function*() {
  const namespace = uniqueNamespace("engimg")
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-engimg-"))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )
  const logRoot = path.join(dir, "logs")
  const ctx = yield* Layer.build(
    Engine.layer({ namespace, logRoot }).pipe(Layer.provideMerge(EventLog.layer), Layer.provideMerge(runtimeLayer(namespace)))
  )
  const image = yield* buildFixtureImage(dir, {
    name: IMAGE,
    config: {
      Env: ["PATH=/bin", "FROM_IMAGE=1", "BOTH=image"],
      Labels: { from: "image", both: "image" },
      WorkingDir: "/home/app",
      User: "app",
      Cmd: ["sh", "-c", TRAPPING],
      StopSignal: "SIGUSR1"
    }
  })
  yield* importArchive(shared().address, namespace, image.archive)
  return { docker: Context.get(ctx, Engine), logRoot }
})

describe("Engine with an image's config", () => {
  it.live("inspect: the config merged with the image's, the json-file log driver and its path", () =>
    Effect.gen(function*() {
      const { docker, logRoot } = yield* setup
      const { Id } = yield* docker.create("merged", {
        Image: IMAGE,
        Env: ["BOTH=request"],
        Labels: { both: "request", own: "x" },
        HostConfig: { LogConfig: { Type: "json-file", Config: { "max-size": "1m" } } }
      })
      yield* docker.start(Id)
      const inspected = yield* docker.inspect(Id)
      const config = inspected.Config as Record<string, any>
      assert.deepStrictEqual(config.Cmd, ["sh", "-c", TRAPPING])
      assert.strictEqual(config.Entrypoint, null)
      assert.includeMembers(config.Env, ["FROM_IMAGE=1", "BOTH=request"])
      assert.notInclude(config.Env, "BOTH=image")
      assert.deepStrictEqual(config.Labels, { from: "image", both: "request", own: "x" })
      assert.strictEqual(config.WorkingDir, "/home/app")
      assert.strictEqual(config.User, "app")
      assert.strictEqual(config.StopSignal, "SIGUSR1")
      assert.deepStrictEqual(inspected.HostConfig.LogConfig, { Type: "json-file", Config: { "max-size": "1m" } })
      assert.strictEqual(inspected.LogPath, path.join(logRoot, Id, `${Id}-json.log`))
      assert.isTrue(fs.existsSync(inspected.LogPath!), "the log is where inspect says")
      const listed = yield* docker.list({ filters: { label: ["from=image"] } })
      assert.deepStrictEqual(listed.map((c) => c.Id), [Id], "the image's labels are the container's")

      const plain = yield* docker.create(undefined, { Image: IMAGE })
      assert.deepStrictEqual((yield* docker.inspect(plain.Id)).HostConfig.LogConfig, { Type: "json-file", Config: {} })
      yield* docker.remove(Id, { force: true })
      yield* docker.remove(plain.Id)
    }).pipe(Effect.scoped), 60_000)

  it.live("stop sends the image's STOPSIGNAL, or the container's own when it sets one", () =>
    Effect.gen(function*() {
      const { docker } = yield* setup
      const cases: Array<[string, string | undefined, number]> = [
        ["the image's SIGUSR1", undefined, 42],
        ["the container's SIGUSR2", "SIGUSR2", 43]
      ]
      for (const [what, stopSignal, code] of cases) {
        const { Id } = yield* docker.create(undefined, { Image: IMAGE, ...(stopSignal ? { StopSignal: stopSignal } : {}) })
        yield* docker.start(Id)
        yield* Effect.sleep("300 millis") // the traps are set
        const started = Date.now()
        yield* docker.stop(Id, { timeout: 20 })
        assert.isBelow(Date.now() - started, 10_000, what)
        assert.strictEqual((yield* docker.inspect(Id)).State.ExitCode, code, what)
        yield* docker.remove(Id)
      }
    }).pipe(Effect.scoped), 60_000)

  it.live("honest create: an unhonoured field is a 400 naming it (nothing created) or a warning in the response", () =>
    Effect.gen(function*() {
      const { docker } = yield* setup
      const refused = yield* Effect.flip(docker.create(undefined, { Image: IMAGE, HostConfig: { PortBindings: { "80/tcp": [{ HostPort: "8080" }] } } }))
      assert.strictEqual(refused.status, 400)
      assert.include(refused.message, "PortBindings")
      assert.deepStrictEqual(yield* docker.list({ all: true }), [])
      const warned = yield* docker.create(undefined, { Image: IMAGE, HostConfig: { NetworkMode: "bridge", OomKillDisable: true } })
      assert.strictEqual(warned.Warnings.length, 2)
      assert.include(warned.Warnings.join("\n"), "OomKillDisable")
      assert.include(warned.Warnings.join("\n"), "bridge")
      assert.deepStrictEqual((yield* docker.create(undefined, { Image: IMAGE, HostConfig: { NetworkMode: "default" } })).Warnings, [
        BRIDGE_WARNING
      ], "the default network is not silently none")
      assert.deepStrictEqual((yield* docker.create(undefined, { Image: IMAGE, HostConfig: { NetworkMode: "none" } })).Warnings, [])
    }).pipe(Effect.scoped), 60_000)
})
