/**
 * Volumes through the docker CLI and raw HTTP: create (idempotent, bad name,
 * another driver, driver options refused), ls with filters, inspect, rm
 * (missing: 404), prune; a volume's data survive a daemon restart, and a create
 * killed half-way is cleaned at the next start.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { startDaemon } from "../support/DaemonHarness.ts"
import { shared, uniqueNamespace } from "../support/SharedContainerd.ts"

const setup = Effect.gen(function*() {
  return yield* startDaemon({ containerd: shared().address, namespace: uniqueNamespace("volumes") })
})

describe("volumes", () => {
  it.live("bad input is a 4xx with a message and nothing is made; create, ls, inspect, rm, prune, with their events; data survive a restart", () =>
    Effect.gen(function*() {
      const daemon = yield* setup
      const root = path.join(daemon.dataRoot, "volumes")

      const badName = yield* daemon.request("POST", "/volumes/create", JSON.stringify({ Name: "-bad" }))
      assert.strictEqual(badName.status, 400, badName.body)
      assert.include(badName.body, "includes invalid characters for a local volume name")
      const driver = yield* daemon.request("POST", "/volumes/create", JSON.stringify({ Name: "d1", Driver: "nfs" }))
      assert.strictEqual(driver.status, 404, driver.body)
      const opts = yield* daemon.request("POST", "/volumes/create", JSON.stringify({ Name: "o1", DriverOpts: { type: "tmpfs" } }))
      assert.strictEqual(opts.status, 400, opts.body)
      assert.deepStrictEqual(fs.readdirSync(root), [])
      const missing = yield* daemon.request("GET", "/volumes/nope")
      assert.strictEqual(missing.status, 404, missing.body)
      assert.include(missing.body, "no such volume")
      const rmMissing = yield* daemon.docker(["volume", "rm", "nope"])
      assert.strictEqual(rmMissing.code, 1)
      assert.include(rmMissing.stderr, "no such volume")
      assert.strictEqual((yield* daemon.request("DELETE", "/volumes/nope?force=1")).status, 204)

      const made = yield* daemon.docker(["volume", "create", "--label", "team=a", "data"])
      assert.strictEqual(made.code, 0, made.stderr)
      assert.strictEqual(made.stdout.trim(), "data")
      // Idempotent, as dockerd: the existing volume answers.
      assert.strictEqual((yield* daemon.request("POST", "/volumes/create", JSON.stringify({ Name: "data" }))).status, 201)
      assert.strictEqual((yield* daemon.docker(["volume", "create", "other"])).code, 0)
      const inspect = JSON.parse((yield* daemon.request("GET", "/volumes/data")).body)
      assert.strictEqual(inspect.Driver, "local")
      assert.strictEqual(inspect.Mountpoint, path.join(root, "data", "_data"))
      assert.deepStrictEqual(inspect.Labels, { team: "a" })
      const labelled = yield* daemon.docker(["volume", "ls", "-q", "--filter", "label=team=a"])
      assert.deepStrictEqual(labelled.stdout.trim().split("\n"), ["data"])
      const named = yield* daemon.docker(["volume", "ls", "-q", "--filter", "name=oth"])
      assert.deepStrictEqual(named.stdout.trim().split("\n"), ["other"])
      fs.writeFileSync(path.join(inspect.Mountpoint, "kept"), "12345")

      // A create killed before its metadata was written: gone at the next start; data survive it.
      fs.mkdirSync(path.join(root, "half", "_data"), { recursive: true })
      yield* daemon.stop
      yield* daemon.start
      assert.isFalse(fs.existsSync(path.join(root, "half")))
      const all = yield* daemon.docker(["volume", "ls", "-q"])
      assert.deepStrictEqual(all.stdout.trim().split("\n").sort(), ["data", "other"])
      assert.strictEqual(fs.readFileSync(path.join(inspect.Mountpoint, "kept"), "utf8"), "12345")

      assert.strictEqual((yield* daemon.docker(["volume", "rm", "other"])).code, 0)
      const pruned = JSON.parse((yield* daemon.request("POST", "/volumes/prune")).body)
      assert.deepStrictEqual(pruned, { VolumesDeleted: ["data"], SpaceReclaimed: 5 })
      assert.deepStrictEqual(fs.readdirSync(root), [])
      const until = Math.ceil(Date.now() / 1000) + 1
      const events = yield* daemon.request("GET", `/events?since=0&until=${until}&filters=${encodeURIComponent(JSON.stringify({ type: ["volume"] }))}`)
      const actions = events.body.trim().split("\n").map((line) => JSON.parse(line)).map((e) => `${e.Action} ${e.Actor.ID}`)
      // The log holds this run's events: after the restart, the two removals.
      assert.deepStrictEqual(actions, ["destroy other", "destroy data"])
    }))
})
