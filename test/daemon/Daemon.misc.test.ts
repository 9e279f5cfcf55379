/**
 * The rest of what compose and Testcontainers call, through the docker CLI and
 * raw HTTP, with dockerd 20.10 answering the same refusals beside our daemon
 * when it is installed: `rename` (bad names, a taken one, the hosts files of
 * its network following, the event); container and image `prune` (bad
 * filters, what goes and what stays, the space reclaimed); `system df`.
 */
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { bothEngines, type Engine, engines, Engines, eventually, ok } from "../support/Engines.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"

const API = "/v1.41"

/** A request's status and dockerd's `message`. */
const refusal = (engine: Engine, method: string, path: string, body?: string) =>
  Effect.map(engine.request(method, `${API}${path}`, body), (r) => ({
    status: r.status,
    message: r.body === "" ? "" : (JSON.parse(r.body) as { message: string }).message
  }))

layer(engines("misc", [], { bridge: true }), { excludeTestServices: true, timeout: 120_000 })("rename, update, prune, df", (it) => {
  it.effect("rename refuses an empty, equal, bad or taken name and a missing container as dockerd does, changing nothing", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        const prefix = `${engine.name}-rn`
        yield* ok(engine, ["create", "--name", `${prefix}-a`, FIXTURE_IMAGE, "true"])
        yield* ok(engine, ["create", "--name", `${prefix}-b`, FIXTURE_IMAGE, "true"])
        assert.deepStrictEqual(yield* refusal(engine, "POST", `/containers/${prefix}-a/rename?name=`), {
          status: 400,
          message: "Neither old nor new names may be empty"
        })
        assert.deepStrictEqual(yield* refusal(engine, "POST", `/containers/${prefix}-nosuch/rename?name=x1`), {
          status: 404,
          message: `No such container: ${prefix}-nosuch`
        })
        assert.deepStrictEqual(yield* refusal(engine, "POST", `/containers/${prefix}-a/rename?name=${prefix}-a`), {
          status: 400,
          message: "Renaming a container with the same name as its current name"
        })
        const bad = yield* refusal(engine, "POST", `/containers/${prefix}-a/rename?name=-bad`)
        assert.strictEqual(bad.status, 400)
        assert.strictEqual(bad.message, "Error when allocating new name: Invalid container name (/-bad), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        const taken = yield* refusal(engine, "POST", `/containers/${prefix}-a/rename?name=${prefix}-b`)
        assert.strictEqual(taken.status, 409)
        assert.match(
          taken.message,
          new RegExp(`^Error when allocating new name: Conflict. The container name "/${prefix}-b" is already in use by container "[0-9a-f]{64}"`)
        )
        const names = yield* ok(engine, ["ps", "-a", "--filter", `name=${prefix}`, "--format", "{{.Names}}"])
        assert.deepStrictEqual(names.trim().split("\n").sort(), [`${prefix}-a`, `${prefix}-b`])
        yield* ok(engine, ["rm", `${prefix}-a`, `${prefix}-b`])
      })))

  it.effect("rename: the new name finds it (the old one not), its network's hosts files follow, an event names the old one; it survives a restart", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const docker = (...args: ReadonlyArray<string>) => ok(ours, args)
      yield* docker("network", "create", "renames")
      const since = Math.floor(Date.now() / 1000)
      const id = (yield* docker("run", "-d", "--name", "before", "--network", "renames", FIXTURE_IMAGE, "sleep", "120")).trim()
      yield* docker("run", "-d", "--name", "peer", "--network", "renames", FIXTURE_IMAGE, "sleep", "120")
      const hostsOfPeer = docker("exec", "peer", "cat", "/etc/hosts")
      yield* eventually("before in peer's hosts", Effect.map(hostsOfPeer, (h) => h.includes("\tbefore ")))
      yield* docker("rename", "before", "/after")
      assert.strictEqual((yield* docker("inspect", "-f", "{{.Name}}", id)).trim(), "/after")
      assert.strictEqual((yield* ours.docker(["inspect", "before"])).code, 1)
      yield* eventually("after in peer's hosts, before gone", Effect.map(hostsOfPeer, (h) => h.includes("\tafter ") && !h.includes("before")))
      const events = yield* ours.request("GET", `${API}/events?since=${since}&until=${Math.ceil(Date.now() / 1000)}&filters=${encodeURIComponent(JSON.stringify({ event: ["rename"] }))}`)
      const renamed = events.body.trim().split("\n").map((line) => JSON.parse(line) as { Action: string; Actor: { ID: string; Attributes: Record<string, string> } })
      assert.deepStrictEqual(renamed.map((e) => [e.Action, e.Actor.ID, e.Actor.Attributes["name"], e.Actor.Attributes["oldName"]]), [
        ["rename", id, "after", "/before"]
      ])
      // The name is recorded in containerd: a restarted daemon still knows it.
      yield* ours.daemon!.stop
      yield* ours.daemon!.start
      assert.strictEqual((yield* docker("inspect", "-f", "{{.Name}}", id)).trim(), "/after")
      yield* docker("rm", "-f", "after", "peer")
      yield* docker("network", "rm", "renames")
    }))

  it.effect("prune refuses a bad filter as dockerd does, changing nothing", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        const filters = (value: unknown) => encodeURIComponent(JSON.stringify(value))
        const before = yield* ok(engine, ["ps", "-aq"])
        for (const path of ["/containers/prune", "/images/prune"]) {
          const unknown = yield* refusal(engine, "POST", `${path}?filters=${filters({ nope: ["x"] })}`)
          assert.strictEqual(unknown.status, 400, `${engine.name} ${path}`)
          assert.match(unknown.message, /^invalid filter 'nope'$/i)
          const twice = yield* refusal(engine, "POST", `${path}?filters=${filters({ until: ["1h", "2h"] })}`)
          // dockerd's words; its status is a 500 (a plain error), bad input here is a 400.
          assert.deepStrictEqual(twice, { status: engine.name === "ours" ? 400 : 500, message: "more than one until filter specified" })
        }
        const dangling = yield* refusal(engine, "POST", `/images/prune?filters=${filters({ dangling: ["maybe"] })}`)
        assert.strictEqual(dangling.status, 400)
        assert.match(dangling.message, /^invalid filter 'dangling=\[maybe\]'$/i)
        assert.strictEqual(yield* ok(engine, ["ps", "-aq"]), before)
      })))

  it.effect("container prune: stopped containers the filters take go, with the space they wrote; running ones and others stay", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const docker = (...args: ReadonlyArray<string>) => ok(ours, args)
      const wrote = (yield* docker("run", "--label", "prune=yes", FIXTURE_IMAGE, "dd", "if=/dev/zero", "of=/big", "bs=1k", "count=300")).trim()
      const keptLabel = (yield* docker("create", "--label", "prune=no", FIXTURE_IMAGE, "true")).trim()
      const running = (yield* docker("run", "-d", "--label", "prune=yes", FIXTURE_IMAGE, "sleep", "120")).trim()
      const writer = (yield* docker("ps", "-aq", "--no-trunc", "--filter", "label=prune=yes", "--filter", "status=exited")).trim()
      const answer = yield* ours.request("POST", `${API}/containers/prune?filters=${encodeURIComponent(JSON.stringify({ label: ["prune=yes"] }))}`)
      assert.strictEqual(answer.status, 200, answer.body)
      const report = JSON.parse(answer.body) as { ContainersDeleted: Array<string>; SpaceReclaimed: number }
      assert.deepStrictEqual(report.ContainersDeleted, [writer])
      assert.isAtLeast(report.SpaceReclaimed, 300 * 1024)
      assert.strictEqual(wrote, "", "dd wrote to stderr only")
      const left = (yield* docker("ps", "-aq", "--no-trunc")).trim().split("\n")
      assert.includeMembers(left, [keptLabel, running])
      assert.notInclude(left, writer)
      // The CLI's own prune: nothing running goes, an empty report is dockerd's null.
      yield* docker("rm", keptLabel)
      const cli = yield* docker("container", "prune", "-f", "--filter", "until=1h")
      assert.include(cli, "Total reclaimed space: 0B")
      const none = JSON.parse((yield* ours.request("POST", `${API}/containers/prune`)).body) as Record<string, unknown>
      assert.deepStrictEqual(none, { ContainersDeleted: null, SpaceReclaimed: 0 })
      yield* docker("rm", "-f", running)
    }))

  it.effect("image prune: dangling images only, unless dangling=false; images in use stay", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const docker = (...args: ReadonlyArray<string>) => ok(ours, args)
      const source = (yield* docker("create", FIXTURE_IMAGE, "true")).trim()
      const dangling = (yield* docker("commit", source)).trim()
      const labelled = (yield* docker("commit", "--change", "LABEL prune=yes", source, "prune-me:v1")).trim()
      const report = JSON.parse((yield* ours.request("POST", `${API}/images/prune`)).body) as { ImagesDeleted: Array<Record<string, string>>; SpaceReclaimed: number }
      assert.deepStrictEqual(report.ImagesDeleted, [{ Deleted: dangling }])
      assert.isAbove(report.SpaceReclaimed, 0)
      const cli = yield* docker("image", "prune", "-a", "-f", "--filter", "label=prune=yes")
      assert.include(cli, "untagged: prune-me:v1")
      assert.include(cli, `deleted: ${labelled}`)
      const images = yield* docker("images", "--format", "{{.Repository}}:{{.Tag}}")
      assert.notInclude(images, "prune-me")
      // The fixture is used by a container: even dangling=false leaves it.
      yield* docker("image", "prune", "-a", "-f")
      assert.include(yield* docker("images", "--format", "{{.Repository}}:{{.Tag}}"), FIXTURE_IMAGE)
      yield* docker("rm", source)
    }))

  it.effect("system df: images with their containers and sizes, containers with what they wrote; an unknown type is a 400", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const docker = (...args: ReadonlyArray<string>) => ok(ours, args)
      const unknown = yield* refusal(ours, "GET", "/system/df?type=nope")
      assert.deepStrictEqual(unknown, { status: 400, message: "unknown object type: nope" })
      const writer = (yield* docker("run", "--name", "df-writer", FIXTURE_IMAGE, "dd", "if=/dev/zero", "of=/big", "bs=1k", "count=200")).trim()
      assert.strictEqual(writer, "")
      const df = JSON.parse((yield* ours.request("GET", "/v1.47/system/df")).body) as {
        LayersSize: number
        Images: Array<{ Id: string; RepoTags: Array<string>; Size: number; SharedSize: number; Containers: number }>
        Containers: Array<{ Names: Array<string>; SizeRw: number; SizeRootFs: number; ImageID: string }>
        Volumes: Array<unknown>
        BuildCache: Array<unknown>
      }
      const fixture = df.Images.find((image) => image.RepoTags.includes(FIXTURE_IMAGE))!
      assert.isAtLeast(fixture.Containers, 1)
      assert.isAbove(fixture.Size, 0)
      assert.isAtLeast(fixture.SharedSize, 0)
      assert.isAtLeast(df.LayersSize, fixture.Size - 10_000)
      const container = df.Containers.find((c) => c.Names.includes("/df-writer"))!
      assert.isAtLeast(container.SizeRw, 200 * 1024)
      assert.strictEqual(container.SizeRootFs, container.SizeRw + fixture.Size)
      assert.deepStrictEqual([df.Volumes, df.BuildCache], [[], []])
      // Only what is asked for (API 1.42's `type`).
      const onlyImages = JSON.parse((yield* ours.request("GET", "/v1.47/system/df?type=image")).body) as Record<string, unknown>
      assert.deepStrictEqual(Object.keys(onlyImages).sort(), ["Images", "LayersSize"])
      // The CLI prints its table from it.
      const table = yield* docker("system", "df")
      assert.match(table, /^TYPE\s+TOTAL\s+ACTIVE\s+SIZE\s+RECLAIMABLE/)
      assert.match(table, /\nImages\s+\d+\s+\d+/)
      assert.match(table, /\nContainers\s+\d+\s+\d+\s+\d+(\.\d+)?kB/)
      assert.match(table, /\nLocal Volumes\s+0\s+0\s+0B/)
      assert.include(yield* docker("system", "df", "-v"), "df-writer")
      yield* docker("rm", "df-writer")
    }))
})
