/**
 * Lifecycle operations on one container racing each other, against the daemon
 * as a real process on the real containerd, and against dockerd 20.10 on the
 * same containerd when it is installed (test/support/Dockerd.ts; without it
 * only our half runs, and the log says so): whoever loses a race gets Docker's
 * 409, and nothing is left in containerd (no container, task, rootfs snapshot
 * or shim) once the removal answered.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Schedule } from "effect"
import { type DaemonInstance, requestOver, startDaemon } from "../support/DaemonHarness.ts"
import { debrisOf, noDebris } from "../support/Debris.ts"
import { startDockerd } from "../support/Dockerd.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { importFixture, shared, sharedClient, uniqueNamespace } from "../support/SharedContainerd.ts"

/** dockerd's containerd namespace (test/support/Dockerd.ts). */
const DOCKERD_NAMESPACE = "bench-dockerd"

/** An engine's API and the containerd namespace it works in. */
interface Engine {
  readonly name: string
  readonly namespace: string
  readonly request: DaemonInstance["request"]
}

/** Ours, and dockerd when it could start. */
const engines = Effect.gen(function*() {
  const namespace = uniqueNamespace("races")
  yield* importFixture(namespace)
  const daemon = yield* startDaemon({ containerd: shared().address, namespace })
  const theirs = yield* startDockerd(shared().address, { archive: shared().fixtureArchive, name: FIXTURE_IMAGE })
  if (Option.isNone(theirs)) yield* Effect.logWarning("dockerd is not installed: only our daemon's half of the test runs")
  const ours: Engine = { name: "ours", namespace, request: daemon.request }
  return [ours, ...Option.toArray(Option.map(theirs, ({ socket }): Engine => ({ name: "dockerd", namespace: DOCKERD_NAMESPACE, request: requestOver(socket) })))]
})

/** 25 containers, each started and force-removed at once; what each answered, and what is left of them. */
const race = (engine: Engine) =>
  Effect.gen(function*() {
    const answers = yield* Effect.forEach(Array.from({ length: 25 }, (_, i) => i), (i) =>
      Effect.gen(function*() {
        const name = `race-${engine.name}-${i}`
        const created = yield* engine.request("POST", `/containers/create?name=${name}`, JSON.stringify({ Image: FIXTURE_IMAGE, Cmd: ["sleep", "60"] }))
        assert.strictEqual(created.status, 201, `${engine.name}: ${created.body}`)
        const start = engine.request("POST", `/containers/${name}/start`)
        const rm = engine.request("DELETE", `/containers/${name}?force=1`)
        // Sent at once, in turn the start first and the removal first.
        const [startAnswer, rmAnswer] = i % 2 === 0
          ? yield* Effect.all([start, rm], { concurrency: 2 })
          : yield* Effect.map(Effect.all([rm, start], { concurrency: 2 }), ([r, s]) => [s, r] as const)
        return { id: JSON.parse(created.body).Id as string, name, start: startAnswer, rm: rmAnswer }
      }), { concurrency: 5 })
    const ids = new Set(answers.map((a) => a.id))
    // A shim may take a moment to exit after its task is deleted; an orphan never does.
    const debris = yield* debrisOf(engine.namespace, ids).pipe(
      Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (d) => d.shims.length === 0 }),
      Effect.timeoutOption("10 seconds"),
      Effect.flatMap(() => debrisOf(engine.namespace, ids)),
      Effect.provide(sharedClient(engine.namespace))
    )
    const listed = (yield* engine.request("GET", "/containers/json?all=1")).body
    return { answers, debris, listed: (JSON.parse(listed) as Array<{ Id: string }>).filter((c) => ids.has(c.Id)) }
  })

describe("the daemon, lifecycle operations racing on one container", () => {
  it.live("25 `start` / `rm -f` pairs racing leave no container, task, snapshot or shim; a loser gets Docker's 409", () =>
    Effect.gen(function*() {
      for (const engine of yield* engines) {
        const { answers, debris, listed } = yield* race(engine)
        yield* Effect.log(`${engine.name}: start answered ${answers.map((a) => a.start.status).join(" ")}`)
        for (const { name, rm, start } of answers) {
          // The removal always wins in the end: it waits for a start under way, then kills what it started.
          assert.strictEqual(rm.status, 204, `${engine.name}: ${rm.body}`)
          // The start either ran before the removal, or found it under way, or done.
          if (start.status === 409) {
            assert.deepStrictEqual(JSON.parse(start.body), { message: "container is marked for removal and cannot be started" }, engine.name)
          } else if (start.status === 404) {
            assert.deepStrictEqual(JSON.parse(start.body), { message: `No such container: ${name}` }, engine.name)
          } else {
            assert.strictEqual(start.status, 204, `${engine.name}: ${start.body}`)
          }
        }
        assert.deepStrictEqual(listed, [], engine.name)
        assert.deepStrictEqual(debris, noDebris, engine.name)
      }
    }).pipe(Effect.scoped), 240_000)

  it.live("two `rm -f` racing on a running container: one removes it, the other answers Docker's 409 naming it as asked (or 404)", () =>
    Effect.gen(function*() {
      for (const engine of yield* engines) {
        const answers = yield* Effect.forEach(Array.from({ length: 10 }, (_, i) => i), (i) =>
          Effect.gen(function*() {
            const name = `twice-${engine.name}-${i}`
            const created = yield* engine.request("POST", `/containers/create?name=${name}`, JSON.stringify({ Image: FIXTURE_IMAGE, Cmd: ["sleep", "60"] }))
            assert.strictEqual(created.status, 201, `${engine.name}: ${created.body}`)
            assert.strictEqual((yield* engine.request("POST", `/containers/${name}/start`)).status, 204)
            const rm = engine.request("DELETE", `/containers/${name}?force=1`)
            return { id: JSON.parse(created.body).Id as string, name, answers: yield* Effect.all([rm, rm], { concurrency: 2 }) }
          }), { concurrency: 5 })
        const ids = new Set(answers.map((a) => a.id))
        for (const { answers: [first, second], name } of answers) {
          const [won, lost] = first.status === 204 ? [first, second] : [second, first]
          assert.strictEqual(won.status, 204, `${engine.name}: ${won.body}`)
          // The loser found the removal under way, or (sent later) done.
          const expected = lost.status === 404 ? `No such container: ${name}` : `removal of container ${name} is already in progress`
          assert.deepStrictEqual([lost.status, JSON.parse(lost.body)], [lost.status === 404 ? 404 : 409, { message: expected }], engine.name)
        }
        const debris = yield* debrisOf(engine.namespace, ids).pipe(
          Effect.repeat({ schedule: Schedule.spaced("100 millis"), until: (d) => d.shims.length === 0 }),
          Effect.timeoutOption("10 seconds"),
          Effect.flatMap(() => debrisOf(engine.namespace, ids)),
          Effect.provide(sharedClient(engine.namespace))
        )
        assert.deepStrictEqual(debris, noDebris, engine.name)
      }
    }).pipe(Effect.scoped), 240_000)
})
