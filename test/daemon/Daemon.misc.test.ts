/**
 * The rest of what compose and Testcontainers call, through the docker CLI and
 * raw HTTP, with dockerd 20.10 answering the same refusals beside our daemon
 * when it is installed: `rename` (bad names, a taken one, the hosts files of
 * its network following, the event).
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
})
