import { assert, describe, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Metric } from "effect"
import { TestClock } from "effect/testing"
import { BackoffEvents, BackoffKeys, BackoffQueue, makeBackoffQueue } from "../../src/services/BackoffQueue.ts"
import { backoffSize } from "../support/Gauges.ts"

const settle = Effect.forEach(Array.from({ length: 20 }), () => Effect.yieldNow, { discard: true })

/** Advances virtual time a second at a time, letting the ticker run at each. */
const advance = (seconds: number) =>
  Effect.forEach(Array.from({ length: seconds }), () => Effect.andThen(TestClock.adjust("1 second"), settle), {
    discard: true
  })

/** A retry that records when it ran and fails its first `failures` runs. */
const recording = (failures: number) => {
  const attempts: Array<number> = []
  const retry = Effect.flatMap(Clock.currentTimeMillis, (now) => {
    attempts.push(now)
    return attempts.length <= failures ? Effect.fail("not yet") : Effect.void
  })
  return { attempts, retry }
}

describe("BackoffQueue", () => {
  it.effect("as shipped (the service's layer): a retry that fails once runs at exactly 1 s and 3 s, then the key leaves", () =>
    Effect.gen(function*() {
      const queue = yield* BackoffQueue
      const { attempts, retry } = recording(1)
      yield* queue.enqueue("c1", retry)
      yield* advance(5)
      assert.deepStrictEqual(attempts, [1000, 3000])
      assert.isFalse(yield* queue.isInBackoff("c1"))
      assert.deepStrictEqual(yield* backoffSize, { keys: 0, events: 0 })
      assert.strictEqual((yield* Metric.value(BackoffKeys)).value, 0)
      assert.strictEqual((yield* Metric.value(BackoffEvents)).value, 0)
    }).pipe(Effect.provide(BackoffQueue.layer())))

  it.effect("as shipped: the delay doubles from 1 s and stays at 5 minutes", () =>
    Effect.gen(function*() {
      const queue = yield* makeBackoffQueue()
      const { attempts, retry } = recording(Infinity)
      yield* queue.enqueue("k", retry)
      yield* advance(1_200)
      // Delays 1, 2, 4, ..., 256 seconds, then 300, 300.
      assert.deepStrictEqual(attempts.map((t) => t / 1000), [1, 3, 7, 15, 31, 63, 127, 255, 511, 811, 1111])
      assert.isTrue(yield* queue.isInBackoff("k"))
    }))

  it.effect("keeps each key's order, including retries queued while one runs", () =>
    Effect.gen(function*() {
      const handled: Array<string> = []
      const gate = yield* Deferred.make<void>()
      const queue = yield* makeBackoffQueue()
      const item = (key: string, n: number) =>
        Effect.gen(function*() {
          if (key === "a" && n === 1) yield* Deferred.await(gate)
          handled.push(`${key}${n}`)
        })
      yield* queue.enqueue("a", item("a", 1))
      yield* queue.enqueue("b", item("b", 1))
      yield* queue.enqueue("a", item("a", 2))
      yield* queue.enqueue("b", item("b", 2))
      yield* advance(1)
      // a's retry is blocked on a1; work for a arriving now queues behind it.
      assert.isTrue(yield* queue.isInBackoff("a"))
      yield* queue.enqueue("a", item("a", 3))
      yield* Deferred.succeed(gate, undefined)
      yield* settle
      assert.deepStrictEqual(handled.filter((h) => h.startsWith("a")), ["a1", "a2", "a3"])
      assert.deepStrictEqual(handled.filter((h) => h.startsWith("b")), ["b1", "b2"])
      assert.deepStrictEqual(yield* backoffSize, { keys: 0, events: 0 })
    }))

  it.effect("lets other keys flow while one stays in backoff; removing a key drops its retries", () =>
    Effect.gen(function*() {
      const handled: Array<string> = []
      const queue = yield* makeBackoffQueue()
      const ok = (name: string) => Effect.sync(() => void handled.push(name))
      yield* queue.enqueue("stuck", Effect.fail("still failing"))
      yield* queue.enqueue("fine", ok("f1"))
      yield* advance(1)
      yield* queue.enqueue("fine", ok("f2"))
      yield* advance(1)
      assert.deepStrictEqual(handled, ["f1", "f2"])
      assert.isTrue(yield* queue.isInBackoff("stuck"))
      assert.isFalse(yield* queue.isInBackoff("fine"))
      assert.deepStrictEqual(yield* backoffSize, { keys: 1, events: 1 })
      yield* queue.remove("stuck")
      assert.deepStrictEqual(yield* backoffSize, { keys: 0, events: 0 })
      assert.strictEqual((yield* Metric.value(BackoffKeys)).value, 0)
    }))
})
