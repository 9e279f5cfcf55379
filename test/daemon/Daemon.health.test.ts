/**
 * Healthchecks as dockerd 20.10 runs them, through the docker CLI and the raw
 * API: bad values refused at create with dockerd's words (against dockerd too
 * where it is installed) and nothing made; probes on the exec path (their
 * exec_create events), healthy, unhealthy after the retries, the start period,
 * the timeout, the image's HEALTHCHECK and `--no-healthcheck`; `State.Health`
 * in inspect, `docker ps`'s status text and its `health=` filter; a stop in the
 * middle of a probe leaves no process; two containers probe at once; a daemon
 * restart starts a running container's health again.
 */
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { awaitGone } from "../support/Processes.ts"
import { bothEngines, type Engine, engines, Engines, eventually, ok } from "../support/Engines.ts"

const API = "/v1.41"

interface Health {
  readonly Status: string
  readonly FailingStreak: number
  readonly Log: ReadonlyArray<{ readonly Start: string; readonly End: string; readonly ExitCode: number; readonly Output: string }>
}

/** GET a JSON answer that must be a 200 (the API directly: a poll through the CLI costs a process each time). */
const getJson = (engine: Engine, path: string) =>
  Effect.flatMap(engine.request("GET", `${API}${path}`).pipe(Effect.orDie), (answer) =>
    answer.status === 200 ? Effect.succeed(JSON.parse(answer.body) as unknown) : Effect.die(new Error(`${engine.name}: GET ${path}: ${answer.body}`)))

const inspect = (engine: Engine, name: string) =>
  Effect.map(getJson(engine, `/containers/${name}/json`), (out) => out as {
    readonly State: { readonly Status: string; readonly Health?: Health }
    readonly Config: { readonly Healthcheck?: unknown }
  })

const healthOf = (engine: Engine, name: string) => Effect.map(inspect(engine, name), (c) => c.State.Health)

/** Waits until the container's health says `status`; then its health. */
const healthWhen = (engine: Engine, name: string, holds: (health: Health) => boolean) =>
  Effect.gen(function*() {
    yield* eventually(`${name}'s health`, Effect.map(healthOf(engine, name), (h) => h !== undefined && holds(h)))
    return (yield* healthOf(engine, name))!
  })

/** `docker run -d` with the given flags, of a container that sleeps. */
const run = (engine: Engine, name: string, flags: ReadonlyArray<string>, image = FIXTURE_IMAGE) =>
  ok(engine, ["run", "-d", "--name", name, ...flags, image, "sleep", "600"])

const listed = (engine: Engine, filters: Record<string, ReadonlyArray<string>>) =>
  Effect.map(
    getJson(engine, `/containers/json?all=1&filters=${encodeURIComponent(JSON.stringify(filters))}`),
    (out) => out as ReadonlyArray<{ readonly Names: ReadonlyArray<string>; readonly Status: string }>
  )

/** The STATUS column of `docker ps` for one container. */
const psStatus = (engine: Engine, name: string) => Effect.map(listed(engine, { name: [`^/${name}$`] }), (rows) => rows[0]?.Status ?? "")

/** Names `docker ps --filter health=<value>` lists. */
const byHealth = (engine: Engine, value: string) =>
  Effect.map(listed(engine, { health: [value] }), (rows) => rows.map((row) => row.Names[0]!.slice(1)))

/** The container's events so far: their actions. */
const actionsOf = (engine: Engine, name: string) =>
  Effect.gen(function*() {
    // Now (fractional seconds): the answer ends at once, with every event published so far.
    const until = (Date.now() / 1000).toFixed(3)
    const filters = encodeURIComponent(JSON.stringify({ container: [name] }))
    const answer = yield* engine.request("GET", `${API}/events?since=0&until=${until}&filters=${filters}`).pipe(Effect.orDie)
    return answer.body.trim().split("\n").filter((line) => line !== "").map((line) =>
      JSON.parse(line) as { readonly Action: string; readonly Actor: { readonly Attributes: Record<string, string> } })
  })

layer(engines("health"), { excludeTestServices: true, timeout: 120_000 })("Daemon health", (it) => {
  it.effect("bad values: 400 with dockerd's message, nothing created; a bad health filter is a 400", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        const before = (yield* engine.request("GET", `${API}/containers/json?all=1`)).body
        const cases: ReadonlyArray<[Record<string, unknown>, string]> = [
          [{ Test: ["CMD", "true"], Interval: 999_999 }, "Interval in Healthcheck cannot be less than 1ms"],
          [{ Test: ["CMD", "true"], Timeout: 1 }, "Timeout in Healthcheck cannot be less than 1ms"],
          [{ Test: ["CMD", "true"], StartPeriod: 500_000 }, "StartPeriod in Healthcheck cannot be less than 1ms"],
          [{ Test: ["CMD", "true"], Retries: -1 }, "Retries in Healthcheck cannot be negative"]
        ]
        for (const [healthcheck, message] of cases) {
          const answer = yield* engine.request("POST", `${API}/containers/create`, JSON.stringify({ Image: FIXTURE_IMAGE, Healthcheck: healthcheck }))
          assert.strictEqual(answer.status, 400, `${engine.name} ${JSON.stringify(healthcheck)}`)
          assert.strictEqual(JSON.parse(answer.body).message, message, engine.name)
        }
        const wrongType = yield* engine.request("POST", `${API}/containers/create`, JSON.stringify({ Image: FIXTURE_IMAGE, Healthcheck: { Test: "true" } }))
        // dockerd answers its JSON decoder's error as a 500; ours is the client's fault, a 400.
        assert.strictEqual(wrongType.status, engine.name === "ours" ? 400 : 500, engine.name)
        assert.strictEqual((yield* engine.request("GET", `${API}/containers/json?all=1`)).body, before, engine.name)
        const filter = yield* engine.request("GET", `${API}/containers/json?filters=${encodeURIComponent(JSON.stringify({ health: ["bogus"] }))}`)
        assert.strictEqual(filter.status, 400, engine.name)
        assert.strictEqual(JSON.parse(filter.body).message, "Unrecognised filter value for health: bogus", engine.name)
      })
    ))

  it.effect("healthy: probes on the exec path, State.Health, ps text and filter, events; a restart starts it again", () =>
    bothEngines((ours) =>
    Effect.gen(function*() {
      yield* run(ours, "h-ok", ["--health-cmd", "echo ok", "--health-interval", "200ms"])
      // A probe that has not run yet: starting.
      yield* run(ours, "h-later", ["--health-cmd", "true", "--health-interval", "1h"])
      assert.strictEqual((yield* healthOf(ours, "h-later"))?.Status, "starting")
      assert.match(yield* psStatus(ours, "h-later"), /^Up .* \(health: starting\)$/)
      const health = yield* healthWhen(ours, "h-ok", (h) => h.Status === "healthy")
      assert.strictEqual(health.FailingStreak, 0)
      assert.deepStrictEqual(health.Log.map((r) => [r.ExitCode, r.Output]).slice(0, 1), [[0, "ok\n"]])
      assert.isTrue(Date.parse(health.Log[0]!.End) >= Date.parse(health.Log[0]!.Start))
      assert.deepStrictEqual((yield* inspect(ours, "h-ok")).Config.Healthcheck, { Test: ["CMD-SHELL", "echo ok"], Interval: 200_000_000 })
      assert.match(yield* psStatus(ours, "h-ok"), /^Up .* \(healthy\)$/)
      // What the CLI prints of it.
      assert.match(yield* ok(ours, ["ps", "--filter", "name=h-ok", "--filter", "health=healthy", "--format", "{{.Names}} {{.Status}}"]), /^h-ok Up .* \(healthy\)\n?$/)
      assert.include(yield* byHealth(ours, "healthy"), "h-ok")
      assert.notInclude(yield* byHealth(ours, "healthy"), "h-later")
      assert.include(yield* byHealth(ours, "starting"), "h-later")
      const actions = (yield* actionsOf(ours, "h-ok")).map((e) => e.Action)
      assert.include(actions, "exec_create: /bin/sh -c echo ok")
      assert.include(actions, "exec_start: /bin/sh -c echo ok")
      assert.include(actions, "exec_die")
      // Once: an event is a change of status.
      assert.deepStrictEqual(actions.filter((a) => a.startsWith("health_status")), ["health_status: healthy"])
      // Each start begins at starting again, with the log kept.
      yield* ok(ours, ["restart", "-t", "0", "h-ok"])
      yield* healthWhen(ours, "h-ok", (h) => h.Status === "healthy")
      assert.deepStrictEqual(
        (yield* actionsOf(ours, "h-ok")).map((e) => e.Action).filter((a) => a.startsWith("health_status")),
        ["health_status: healthy", "health_status: healthy"]
      )
      // Paused: no probes, and unhealthy as dockerd says; unpaused, probed again.
      yield* ok(ours, ["pause", "h-ok"])
      assert.strictEqual((yield* healthOf(ours, "h-ok"))?.Status, "unhealthy", ours.name)
      assert.match(yield* psStatus(ours, "h-ok"), /^Up .* \(Paused\)$/)
      yield* ok(ours, ["unpause", "h-ok"])
      yield* healthWhen(ours, "h-ok", (h) => h.Status === "healthy")
      // Stopped: no health in ps's text; inspect says unhealthy (dockerd's CloseMonitorChannel, "for compatibility").
      yield* ok(ours, ["stop", "-t", "0", "h-ok"])
      assert.match(yield* psStatus(ours, "h-ok"), /^Exited \(137\)/)
      assert.strictEqual((yield* healthOf(ours, "h-ok"))?.Status, "unhealthy", ours.name)
      yield* ok(ours, ["rm", "-f", "h-ok", "h-later"])
    })))

  it.effect("unhealthy after the retries; the log keeps the last five; an exec that cannot start is a failed probe", () =>
    bothEngines((ours) =>
    Effect.gen(function*() {
      yield* run(ours, "h-bad", ["--health-cmd", "echo no; exit 3", "--health-interval", "100ms", "--health-retries", "2"])
      // CMD (no shell) of a binary that does not exist: the exec's start fails.
      const missing = yield* ours.request("POST", `${API}/containers/create?name=h-missing`, JSON.stringify({
        Image: FIXTURE_IMAGE,
        Cmd: ["sleep", "600"],
        Healthcheck: { Test: ["CMD", "/no/such/probe"], Interval: 100_000_000, Retries: 1 }
      }))
      assert.strictEqual(missing.status, 201, missing.body)
      yield* ok(ours, ["start", "h-missing"])
      const bad = yield* healthWhen(ours, "h-bad", (h) => h.FailingStreak >= 6)
      assert.strictEqual(bad.Status, "unhealthy")
      assert.strictEqual(bad.Log.length, 5)
      assert.deepStrictEqual(bad.Log.map((r) => [r.ExitCode, r.Output]), Array(5).fill([3, "no\n"]))
      assert.match(yield* psStatus(ours, "h-bad"), /^Up .* \(unhealthy\)$/)
      assert.include(yield* byHealth(ours, "unhealthy"), "h-bad")
      const unstartable = yield* healthWhen(ours, "h-missing", (h) => h.Status === "unhealthy")
      assert.strictEqual(unstartable.Log[0]!.ExitCode, -1)
      // The runtime's refusal, word for word as dockerd records it.
      assert.match(unstartable.Log[0]!.Output, /^OCI runtime exec failed: .*"\/no\/such\/probe": stat \/no\/such\/probe: no such file or directory/, ours.name)
      // The monitor goes on after a failed start.
      yield* healthWhen(ours, "h-missing", (h) => h.FailingStreak >= 2)
      yield* ok(ours, ["rm", "-f", "h-bad", "h-missing"])
    })))

  it.effect("start period: failures inside it do not count, until a probe succeeds", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const flags = ["--health-interval", "100ms", "--health-retries", "1", "--health-start-period", "1h"]
      yield* run(ours, "h-grace", ["--health-cmd", "test -e /tmp/ready", ...flags])
      const grace = yield* healthWhen(ours, "h-grace", (h) => h.Log.length >= 3)
      assert.strictEqual(grace.Status, "starting")
      assert.strictEqual(grace.FailingStreak, 0)
      yield* ok(ours, ["exec", "h-grace", "touch", "/tmp/ready"])
      yield* healthWhen(ours, "h-grace", (h) => h.Status === "healthy")
      // Healthy once: the start period no longer shelters a failure.
      yield* ok(ours, ["exec", "h-grace", "rm", "/tmp/ready"])
      const after = yield* healthWhen(ours, "h-grace", (h) => h.Status === "unhealthy")
      assert.strictEqual(after.FailingStreak, 1)
      yield* ok(ours, ["rm", "-f", "h-grace"])
    }))

  it.effect("timeout: the probe is killed, exit -1 with dockerd's message", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      yield* run(ours, "h-slow", ["--health-cmd", "sleep 30", "--health-interval", "100ms", "--health-timeout", "300ms", "--health-retries", "1"])
      const slow = yield* healthWhen(ours, "h-slow", (h) => h.Status === "unhealthy")
      assert.deepStrictEqual([slow.Log[0]!.ExitCode, slow.Log[0]!.Output], [-1, "Health check exceeded timeout (300ms)"])
      // Recorded once the probe was killed: its exec is over, its process gone.
      const first = (yield* actionsOf(ours, "h-slow")).find((e) => e.Action.startsWith("exec_start"))!.Actor.Attributes["execID"]!
      const exec = (yield* getJson(ours, `/exec/${first}/json`)) as { readonly Running: boolean; readonly Pid: number; readonly ExitCode: number }
      assert.deepStrictEqual([exec.Running, exec.ExitCode], [false, 143])
      assert.isTrue(yield* awaitGone([exec.Pid], 1000))
      yield* ok(ours, ["rm", "-f", "h-slow"])
    }))

  it.effect("the image's HEALTHCHECK runs; --no-healthcheck turns it off", () =>
    bothEngines((ours) =>
    Effect.gen(function*() {
      yield* ok(ours, ["create", "--name", "h-base", FIXTURE_IMAGE, "true"])
      yield* ok(ours, ["commit", "--change", "HEALTHCHECK --interval=100ms CMD echo from-image", "h-base", "example.test/healthy:v1"])
      yield* run(ours, "h-image", [], "example.test/healthy:v1")
      yield* run(ours, "h-none", ["--no-healthcheck"], "example.test/healthy:v1")
      const health = yield* healthWhen(ours, "h-image", (h) => h.Status === "healthy")
      assert.strictEqual(health.Log[0]!.Output, "from-image\n")
      assert.deepStrictEqual((yield* inspect(ours, "h-image")).Config.Healthcheck, { Test: ["CMD-SHELL", "echo from-image"], Interval: 100_000_000 })
      const none = yield* inspect(ours, "h-none")
      assert.deepStrictEqual([none.State.Health, none.Config.Healthcheck], [undefined, { Test: ["NONE"], Interval: 100_000_000 }])
      assert.match(yield* psStatus(ours, "h-none"), /^Up [^(]*$/)
      assert.include(yield* byHealth(ours, "none"), "h-none")
      assert.notInclude(yield* byHealth(ours, "none"), "h-image")
      assert.notInclude((yield* actionsOf(ours, "h-none")).map((e) => e.Action).join("\n"), "exec_create")
      yield* ok(ours, ["rm", "-f", "h-base", "h-image", "h-none"])
      yield* ok(ours, ["rmi", "example.test/healthy:v1"])
    })))

  it.effect("a stop in the middle of a probe leaves no exec behind; two containers probe at once", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const probe = ["--health-cmd", "sleep 1", "--health-interval", "100ms", "--health-timeout", "1m"]
      yield* Effect.all([run(ours, "h-par-a", probe), run(ours, "h-par-b", probe)], { concurrency: 2 })
      const [a, b] = yield* Effect.all([
        healthWhen(ours, "h-par-a", (h) => h.Status === "healthy"),
        healthWhen(ours, "h-par-b", (h) => h.Status === "healthy")
      ], { concurrency: 2 })
      // The first probes of both overlapped: no lock between containers.
      const [ra, rb] = [a.Log[0]!, b.Log[0]!]
      assert.isTrue(Date.parse(ra.Start) < Date.parse(rb.End) && Date.parse(rb.Start) < Date.parse(ra.End), JSON.stringify([ra, rb]))
      // Stopped while its next probe runs: the probe's exec ends with the container.
      const execOf = (id: string) =>
        Effect.map(ours.request("GET", `${API}/exec/${id}/json`), (answer) => JSON.parse(answer.body) as { readonly Running: boolean; readonly Pid: number })
      const probes = Effect.gen(function*() {
        const ids = (yield* actionsOf(ours, "h-par-a")).filter((e) => e.Action.startsWith("exec_start")).map((e) => e.Actor.Attributes["execID"]!)
        return yield* Effect.forEach(ids, execOf)
      })
      yield* eventually("a probe running", Effect.map(probes, (all) => all.some((exec) => exec.Running)))
      const running = (yield* probes).filter((exec) => exec.Running)
      yield* ok(ours, ["stop", "-t", "0", "h-par-a"])
      assert.isTrue(yield* awaitGone(running.map((exec) => exec.Pid), 10_000))
      yield* eventually("the probes' execs ended", Effect.map(probes, (all) => all.every((exec) => !exec.Running)))
      // Its monitor ended with the run: unhealthy, as dockerd says of a stopped container.
      assert.strictEqual((yield* healthOf(ours, "h-par-a"))?.Status, "unhealthy")
      yield* ok(ours, ["rm", "-f", "h-par-a", "h-par-b"])
    }))

  it.effect("a daemon restart starts a running container's health again at starting", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      yield* run(ours, "h-restart", ["--health-cmd", "exit 1", "--health-interval", "100ms", "--health-retries", "1"])
      yield* healthWhen(ours, "h-restart", (h) => h.Status === "unhealthy")
      yield* ours.daemon!.stop
      yield* ours.daemon!.start
      // The new daemon's own events: its health began again (starting) and became unhealthy.
      yield* eventually(
        "health_status after the restart",
        Effect.map(actionsOf(ours, "h-restart"), (events) => events.some((e) => e.Action === "health_status: unhealthy"))
      )
      assert.strictEqual((yield* healthOf(ours, "h-restart"))?.Status, "unhealthy")
      yield* ok(ours, ["rm", "-f", "h-restart"])
    }))
})
