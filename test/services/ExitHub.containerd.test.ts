import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Layer, Metric } from "effect"
import { Containerd } from "../../src/services/Containerd.ts"
import { EventReconnects, Events } from "../../src/services/Events.ts"
import { ExitHub } from "../../src/services/ExitHub.ts"
import { startContainerd } from "../support/ContainerdHarness.ts"
import { importArchive } from "../support/FixtureImage.ts"
import { createRawTask, deleteRawTask } from "../support/RawContainers.ts"
import { importFixture, shared, sharedClient, uniqueNamespace } from "../support/SharedContainerd.ts"

/** Client, event stream and hub over one client layer. */
const hubOver = <E>(client: Layer.Layer<Containerd, E>) =>
  ExitHub.layer.pipe(Layer.provideMerge(Events.layer()), Layer.provideMerge(client))

const namespace = uniqueNamespace("hub")

layer(hubOver(sharedClient(namespace)), { excludeTestServices: true })("ExitHub against containerd", (it) => {
  it.effect("300 concurrent starts of sh -c 'exit N': every status right, none lost", () =>
    Effect.gen(function*() {
      const client = yield* Containerd
      const hub = yield* ExitHub
      yield* importFixture(namespace)
      const ids = Array.from({ length: 300 }, (_, i) => i)
      yield* Effect.forEach(ids, (i) =>
        createRawTask(client, { id: `p${i}`, args: ["sh", "-c", `exit ${i % 256}`], chainId: shared().fixtureChainId }), {
        concurrency: 8,
        discard: true
      })
      // Registered before any start, as the contract says.
      const waits = yield* Effect.forEach(ids, (i) => hub.awaitExit(`p${i}`))
      const results = yield* Effect.forEach(ids, (i) =>
        Effect.gen(function*() {
          const { pid } = yield* client.tasks.start({ containerId: `p${i}` })
          yield* hub.started(`p${i}`, "", pid)
          return { i, pid, status: yield* waits[i]! }
        }), { concurrency: "unbounded" })
      for (const { i, pid, status } of results) {
        assert.strictEqual(status._tag, "Exited", `p${i}`)
        assert.strictEqual(status.code, i % 256, `p${i}`)
        assert.strictEqual(status.pid, pid, `p${i}`)
      }
      yield* Effect.forEach(ids, (i) => deleteRawTask(client, `p${i}`), { concurrency: 8, discard: true })
    }), 300_000)
})

describe("ExitHub across a containerd crash", () => {
  it.live("SIGKILL containerd with 20 waits pending: each completes with its real status, and the stream comes back", () =>
    Effect.gen(function*() {
      const instance = yield* startContainerd
      const ns = uniqueNamespace("crash")
      yield* importArchive(instance.address, ns, shared().fixtureArchive)
      const reconnectsBefore = (yield* Metric.value(EventReconnects)).count

      yield* Effect.gen(function*() {
        const client = yield* Containerd
        const hub = yield* ExitHub
        const ids = Array.from({ length: 20 }, (_, i) => i)
        yield* Effect.forEach(ids, (i) =>
          createRawTask(client, { id: `w${i}`, args: ["sh", "-c", `sleep 2; exit ${i + 100}`], chainId: shared().fixtureChainId }), {
          concurrency: 8,
          discard: true
        })
        const waits = yield* Effect.forEach(ids, (i) => hub.awaitExit(`w${i}`))
        yield* Effect.forEach(ids, (i) =>
          Effect.flatMap(client.tasks.start({ containerId: `w${i}` }), ({ pid }) => hub.started(`w${i}`, "", pid)), {
          concurrency: "unbounded",
          discard: true
        })

        // containerd dies; the processes exit while nobody is listening; it comes back.
        yield* instance.kill("SIGKILL")
        yield* instance.exited
        yield* Effect.sleep("3 seconds")
        yield* instance.start

        const statuses = yield* Effect.forEach(waits, (wait) => wait, { concurrency: "unbounded" }).pipe(
          Effect.timeout("30 seconds")
        )
        assert.deepStrictEqual(statuses.map((s) => `${s._tag}:${s.code}`), ids.map((i) => `Exited:${i + 100}`))
        assert.isAbove((yield* Metric.value(EventReconnects)).count, reconnectsBefore)

        // The stream is live again: a new exit arrives as an event.
        yield* createRawTask(client, { id: "after", args: ["sh", "-c", "exit 42"], chainId: shared().fixtureChainId })
        const after = yield* hub.awaitExit("after")
        const { pid } = yield* client.tasks.start({ containerId: "after" })
        yield* hub.started("after", "", pid)
        const status = yield* after.pipe(Effect.timeout("10 seconds"))
        assert.strictEqual(status.code, 42)
        assert.strictEqual(status._tag, "Exited")
      }).pipe(Effect.provide(hubOver(Containerd.layer({ address: instance.address, namespace: ns }))), Effect.scoped)
    }), 120_000)
})
