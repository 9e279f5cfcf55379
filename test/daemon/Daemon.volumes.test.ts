/**
 * Volumes through the docker CLI and raw HTTP: create (idempotent, bad name,
 * another driver, driver options refused), ls with filters, inspect, rm
 * (missing: 404), prune; a volume's data survive a daemon restart, and a create
 * killed half-way is cleaned at the next start. Containers using named volumes
 * (`-v name:/path`): made if missing, data shared between containers and kept
 * across rm and a restart, `:ro` refused writes, Mounts in inspect and ps, 409
 * while any container references the volume (force or not, nothing changed),
 * copy-up of the image's content into a new volume (not with nocopy).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { startDaemon } from "../support/DaemonHarness.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { importFixture, shared, uniqueNamespace } from "../support/SharedContainerd.ts"

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

  it.live("named volumes in containers: made on use, shared, kept across rm and a restart, read-only, in use (409)", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("volmount")
      yield* importFixture(namespace)
      const daemon = yield* startDaemon({ containerd: shared().address, namespace })
      const root = path.join(daemon.dataRoot, "volumes")
      const run = (...args: ReadonlyArray<string>) => daemon.docker(["run", "--rm", ...args])

      // Bad input first: nothing is made.
      const create = (binds: ReadonlyArray<string>) =>
        daemon.request("POST", "/containers/create", JSON.stringify({ Image: FIXTURE_IMAGE, HostConfig: { Binds: binds } }))
      const badName = yield* create(["-bad:/data"])
      assert.strictEqual(badName.status, 400, badName.body)
      assert.include(badName.body, "includes invalid characters for a local volume name")
      const badMode = yield* create(["data:/data:rw,bogus"])
      assert.strictEqual(badMode.status, 400, badMode.body)
      assert.include(badMode.body, "invalid mode: rw,bogus")
      assert.deepStrictEqual(fs.readdirSync(root), [])
      assert.strictEqual((yield* daemon.docker(["ps", "-aq"])).stdout.trim(), "")

      // Made on first use; what one container writes, the next reads.
      const wrote = yield* run("-v", "shared:/data", FIXTURE_IMAGE, "sh", "-c", "echo hi > /data/f")
      assert.strictEqual(wrote.code, 0, wrote.stderr)
      assert.deepStrictEqual((yield* daemon.docker(["volume", "ls", "-q"])).stdout.trim().split("\n"), ["shared"])
      assert.strictEqual(fs.readFileSync(path.join(root, "shared", "_data", "f"), "utf8"), "hi\n")
      const ro = yield* run("-v", "shared:/data:ro", FIXTURE_IMAGE, "sh", "-c", "cat /data/f; echo x > /data/g")
      assert.notStrictEqual(ro.code, 0)
      assert.strictEqual(ro.stdout, "hi\n")
      assert.include(ro.stderr, "Read-only file system")

      // Copy-up: a new volume gets the image's content at its path (owner, mode, links), once; not with nocopy.
      const etc = yield* run("-v", "etc:/etc", "-v", "bins:/bin", FIXTURE_IMAGE, "sh", "-c", "head -1 /etc/passwd; echo mine > /etc/mine")
      assert.strictEqual(etc.code, 0, etc.stderr)
      assert.match(etc.stdout, /^root:/)
      const shLink = path.join(root, "bins", "_data", "sh")
      assert.isTrue(fs.lstatSync(shLink).isSymbolicLink())
      assert.strictEqual(fs.statSync(path.join(root, "etc", "_data", "passwd")).uid, 0)
      const kept = yield* run("-v", "etc:/etc", FIXTURE_IMAGE, "cat", "/etc/mine")
      assert.strictEqual(kept.stdout, "mine\n", kept.stderr)
      // Only the mount points of the hosts files runc makes, as under dockerd.
      const bare = yield* run("-v", "bare:/etc:nocopy", FIXTURE_IMAGE, "ls", "-A", "/etc")
      assert.deepStrictEqual(bare.stdout.trim().split("\n"), ["hostname", "hosts", "resolv.conf"], bare.stderr)
      for (const name of ["etc", "bins", "bare"]) assert.strictEqual((yield* daemon.docker(["volume", "rm", name])).code, 0)

      const made = yield* daemon.docker(["create", "--name", "user", "-v", "shared:/data:ro", "-v", "/tmp:/host", FIXTURE_IMAGE, "cat", "/data/f"])
      assert.strictEqual(made.code, 0, made.stderr)
      const id = made.stdout.trim()
      const inspected = JSON.parse((yield* daemon.request("GET", "/containers/user/json")).body)
      assert.deepStrictEqual(inspected.Mounts, [
        {
          Type: "volume",
          Name: "shared",
          Source: path.join(root, "shared", "_data"),
          Destination: "/data",
          Driver: "local",
          Mode: "ro",
          RW: false,
          Propagation: ""
        },
        { Type: "bind", Source: "/tmp", Destination: "/host", Mode: "", RW: true, Propagation: "rprivate" }
      ])
      assert.strictEqual((yield* daemon.docker(["ps", "-a", "--format", "{{.Mounts}}"])).stdout.trim(), "shared,/tmp")

      // In use by a container that is not running: a 409, with force too, and prune and dangling pass it by.
      assert.strictEqual((yield* daemon.docker(["volume", "create", "spare"])).code, 0)
      for (const query of ["", "?force=1"]) {
        const busy = yield* daemon.request("DELETE", `/volumes/shared${query}`)
        assert.strictEqual(busy.status, 409, busy.body)
        assert.include(busy.body, `remove shared: volume is in use - [${id}]`)
      }
      const df = JSON.parse((yield* daemon.request("GET", "/system/df")).body)
      assert.deepStrictEqual(
        df.Volumes.map((v: { Name: string; UsageData: unknown }) => [v.Name, v.UsageData]).sort(),
        [["shared", { Size: 3, RefCount: 1 }], ["spare", { Size: 0, RefCount: 0 }]]
      )
      const dangling = yield* daemon.docker(["volume", "ls", "-q", "--filter", "dangling=true"])
      assert.deepStrictEqual(dangling.stdout.trim().split("\n"), ["spare"])
      const pruned = JSON.parse((yield* daemon.request("POST", "/volumes/prune")).body)
      assert.deepStrictEqual(pruned.VolumesDeleted, ["spare"])
      assert.isTrue(fs.existsSync(path.join(root, "shared", "_data", "f")))

      // The data and the reference survive a restart.
      yield* daemon.stop
      yield* daemon.start
      assert.strictEqual((yield* daemon.request("DELETE", "/volumes/shared")).status, 409)
      const again = yield* daemon.docker(["start", "-a", "user"])
      assert.strictEqual(again.stdout, "hi\n", again.stderr)
      assert.strictEqual((yield* daemon.docker(["rm", "user"])).code, 0)
      assert.strictEqual((yield* daemon.docker(["volume", "rm", "shared"])).code, 0)
      assert.deepStrictEqual(fs.readdirSync(root), [])
    }))
})
