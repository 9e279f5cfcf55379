/**
 * `docker update` as dockerd 20.10 does it, side by side with dockerd on the same
 * containerd when it is installed: the limits reach the running task's cgroup,
 * show in inspect and hold across a restart; a new restart policy restarts the
 * container after its exit; and the refusals (a missing container, a bad value,
 * a field not updated here, a restart policy on an `--rm` container) answer
 * before anything changes.
 */
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import { bothEngines, type Engine, engines, eventually, ok } from "../support/Engines.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"

const API = "/v1.41"
const cgroupV2 = fs.existsSync("/sys/fs/cgroup/cgroup.controllers")

/** The container's memory limit, CFS quota and pids limit, as its own cgroup files say. */
const cgroupOf = (engine: Engine, name: string) =>
  Effect.map(
    ok(engine, [
      "exec",
      name,
      "sh",
      "-c",
      cgroupV2
        ? "cat /sys/fs/cgroup/memory.max; cut -d' ' -f1 /sys/fs/cgroup/cpu.max; cat /sys/fs/cgroup/pids.max"
        : "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/pids/pids.max"
    ]),
    (out) => out.trim().split("\n")
  )

interface Inspected {
  readonly RestartCount: number
  readonly State: { readonly Running: boolean }
  readonly HostConfig: {
    readonly Memory: number
    readonly NanoCpus: number
    readonly PidsLimit: number | null
    readonly CpuShares: number
    readonly RestartPolicy: { readonly Name: string }
  }
}

const inspect = (engine: Engine, name: string) =>
  Effect.map(engine.request("GET", `${API}/containers/${name}/json`), (r) => JSON.parse(r.body) as Inspected)

const limitsOf = (i: Inspected) => ({
  Memory: i.HostConfig.Memory,
  NanoCpus: i.HostConfig.NanoCpus,
  PidsLimit: i.HostConfig.PidsLimit,
  CpuShares: i.HostConfig.CpuShares,
  RestartPolicy: i.HostConfig.RestartPolicy.Name
})

const unique = (what: string) => `${what}-${crypto.randomBytes(3).toString("hex")}`

layer(engines("update"), { excludeTestServices: true, timeout: 60_000 })("docker update, beside dockerd", (it) => {
  it.effect("refusals change nothing: a missing container, a bad value, a field not updated, a policy on --rm", () =>
    Effect.gen(function*() {
      const results = yield* bothEngines((engine) =>
        Effect.gen(function*() {
          const name = unique("upd-bad")
          const rm = unique("upd-rm")
          yield* ok(engine, ["run", "-d", "--name", name, "--network", "none", "--memory", "20m", FIXTURE_IMAGE, "sleep", "300"])
          yield* ok(engine, ["run", "-d", "--rm", "--name", rm, "--network", "none", FIXTURE_IMAGE, "sleep", "300"])
          const before = limitsOf(yield* inspect(engine, name))
          const post = (ref: string, body: unknown) => engine.request("POST", `${API}/containers/${ref}/update`, JSON.stringify(body))
          const missing = yield* post("upd-no-such", { Memory: 32 * 1024 * 1024 })
          const tooSmall = yield* post(name, { Memory: 1024 })
          const conflicting = yield* post(name, { NanoCpus: 500_000_000, CpuQuota: 50000 })
          // dockerd takes KernelMemory (and the memory with it); here it is refused by name, nothing changed.
          const unsupported = engine.name === "ours"
            ? yield* post(name, { KernelMemory: 64 * 1024 * 1024, Memory: 32 * 1024 * 1024 })
            : undefined
          const badPolicy = yield* post(name, { RestartPolicy: { Name: "sometimes" } })
          const onRm = yield* post(rm, { RestartPolicy: { Name: "always" } })
          const after = limitsOf(yield* inspect(engine, name))
          const cgroup = yield* cgroupOf(engine, name)
          yield* ok(engine, ["rm", "-f", name, rm])
          return { engine: engine.name, missing, tooSmall, conflicting, unsupported, badPolicy, onRm, before, after, cgroup }
        })
      )
      for (const r of results) {
        assert.strictEqual(r.missing.status, 404, r.engine)
        assert.include(r.missing.body, "No such container: upd-no-such", r.engine)
        assert.strictEqual(r.tooSmall.status, 400, `${r.engine}: ${r.tooSmall.body}`)
        assert.include(r.tooSmall.body, "Minimum memory limit allowed is 6MB", r.engine)
        assert.strictEqual(r.conflicting.status, 400, `${r.engine}: ${r.conflicting.body}`)
        assert.include(r.conflicting.body, "Conflicting options: Nano CPUs and CPU Quota cannot both be set", r.engine)
        assert.include(r.badPolicy.body, "invalid restart policy", r.engine)
        assert.include(r.onRm.body, "Restart policy cannot be updated because AutoRemove is enabled for the container", r.engine)
        assert.deepStrictEqual(r.after, r.before, r.engine)
        assert.strictEqual(r.cgroup[0], String(20 * 1024 * 1024), r.engine)
      }
      const ours = results.find((r) => r.engine === "ours")!
      assert.strictEqual(ours.unsupported?.status, 400)
      assert.include(ours.unsupported?.body, "KernelMemory (--kernel-memory) cannot be updated")
      assert.strictEqual(ours.badPolicy.status, 400)
      assert.strictEqual(ours.onRm.status, 400)
    }))

  it.effect("limits reach the running task's cgroup, show in inspect and hold across a restart", () =>
    Effect.gen(function*() {
      const results = yield* bothEngines((engine) =>
        Effect.gen(function*() {
          const name = unique("upd-limits")
          yield* ok(engine, ["run", "-d", "--name", name, "--network", "none", "--memory", "20m", FIXTURE_IMAGE, "sleep", "300"])
          const answer = yield* ok(engine, ["update", "--memory", "32m", "--cpus", "0.5", "--pids-limit", "50", "--restart", "always", name])
          const running = yield* cgroupOf(engine, name)
          const shown = limitsOf(yield* inspect(engine, name))
          yield* ok(engine, ["restart", "-t", "0", name])
          const restarted = yield* cgroupOf(engine, name)
          const shownAfter = limitsOf(yield* inspect(engine, name))
          yield* ok(engine, ["rm", "-f", name])
          return { engine: engine.name, answer, running, shown, restarted, shownAfter }
        })
      )
      const expected = { Memory: 32 * 1024 * 1024, NanoCpus: 500_000_000, PidsLimit: 50, CpuShares: 0, RestartPolicy: "always" }
      for (const r of results) {
        assert.strictEqual(r.answer.trim().length > 0, true, r.engine)
        assert.deepStrictEqual(r.running, [String(32 * 1024 * 1024), "50000", "50"], r.engine)
        assert.deepStrictEqual(r.shown, expected, r.engine)
        assert.deepStrictEqual(r.restarted, r.running, r.engine)
        assert.deepStrictEqual(r.shownAfter, expected, r.engine)
      }
    }))

  it.effect("a restart policy set by update restarts the container after its exit", () =>
    Effect.gen(function*() {
      yield* bothEngines((engine) =>
        Effect.gen(function*() {
          const name = unique("upd-policy")
          yield* ok(engine, [
            "run", "-d", "--name", name, "--network", "none", FIXTURE_IMAGE,
            "sh", "-c", "while [ ! -f /tmp/stop ]; do sleep 0.1; done"
          ])
          yield* ok(engine, ["update", "--restart", "on-failure:0", name])
          yield* ok(engine, ["update", "--restart", "always", name])
          yield* ok(engine, ["exec", name, "touch", "/tmp/stop"])
          yield* eventually(`${engine.name}: a restart`, Effect.map(inspect(engine, name), (i) => i.RestartCount >= 1))
          yield* ok(engine, ["rm", "-f", name])
        })
      )
    }))
})
