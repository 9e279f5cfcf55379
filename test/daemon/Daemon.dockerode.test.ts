/**
 * The daemon driven by dockerode, the Docker client most Node programs use: a
 * burst of 100 parallel requests (create, start, inspect, remove) all succeed,
 * and a wait streamed before start returns the exit code.
 */
import { assert, describe, it } from "@effect/vitest"
import Docker from "dockerode"
import { Effect, Fiber } from "effect"
import { startDaemon } from "../support/DaemonHarness.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { importFixture, shared, uniqueNamespace } from "../support/SharedContainerd.ts"

const promise = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: (cause) => cause })

describe("the daemon, driven by dockerode", () => {
  it.live("100 parallel requests: 25 containers each created, started, inspected and removed", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("dockerode")
      yield* importFixture(namespace)
      const daemon = yield* startDaemon({ containerd: shared().address, namespace })
      const docker = new Docker({ socketPath: daemon.socket })

      const version = yield* promise(() => docker.version())
      assert.strictEqual(version.ApiVersion, "1.47")

      const created = yield* Effect.forEach(
        Array.from({ length: 25 }, (_, i) => i),
        (i) => promise(() => docker.createContainer({ Image: FIXTURE_IMAGE, name: `burst-${i}`, Cmd: ["sleep", "300"] })),
        { concurrency: "unbounded" }
      )
      yield* Effect.forEach(created, (c) => promise(() => c.start()), { concurrency: "unbounded", discard: true })
      const inspected = yield* Effect.forEach(created, (c) => promise(() => c.inspect()), { concurrency: "unbounded" })
      assert.isTrue(inspected.every((c) => c.State.Running), "every container runs")
      assert.deepStrictEqual(
        inspected.map((c) => c.Name).sort(),
        Array.from({ length: 25 }, (_, i) => `/burst-${i}`).sort()
      )
      yield* Effect.forEach(created, (c) => promise(() => c.remove({ force: true })), { concurrency: "unbounded", discard: true })
      const left = yield* promise(() => docker.listContainers({ all: true }))
      assert.strictEqual(left.length, 0)

      const exiting = yield* promise(() => docker.createContainer({ Image: FIXTURE_IMAGE, Cmd: ["sh", "-c", "exit 5"] }))
      const waited = promise(() => exiting.wait({ condition: "next-exit" }) as Promise<{ StatusCode: number }>)
      const fiber = yield* Effect.forkChild(waited)
      yield* Effect.sleep("100 millis")
      yield* promise(() => exiting.start())
      assert.strictEqual((yield* Fiber.join(fiber)).StatusCode, 5)
      yield* promise(() => exiting.remove())
    }).pipe(Effect.scoped), 120_000)
})
