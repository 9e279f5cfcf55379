import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { makeSingleflight } from "../../src/services/Singleflight.ts"
import { singleflightKeys } from "../support/Gauges.ts"

const settle = Effect.forEach(Array.from({ length: 20 }), () => Effect.yieldNow, { discard: true })

describe("Singleflight", () => {
  it.effect("20 concurrent callers share one execution and its result; a later call runs again", () =>
    Effect.gen(function*() {
      const flight = yield* makeSingleflight
      let executions = 0
      const work = Effect.gen(function*() {
        executions++
        yield* Effect.sleep("1 second")
        return executions
      })
      const fibers = yield* Effect.forEach(Array.from({ length: 20 }), () => Effect.forkChild(flight.run("blob", work)))
      yield* settle
      assert.strictEqual(yield* singleflightKeys, 1)
      yield* TestClock.adjust("1 second")
      const results = yield* Effect.forEach(fibers, Fiber.join)
      assert.deepStrictEqual(new Set(results), new Set([1]))
      assert.strictEqual(executions, 1)
      assert.strictEqual(yield* singleflightKeys, 0)
      const again = yield* Effect.forkChild(flight.run("blob", work))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(again), 2)
    }))

  it.effect("a caller that joined a run that failed runs its own work; its own run is final", () =>
    Effect.gen(function*() {
      const flight = yield* makeSingleflight
      const attempts: Array<string> = []
      const from = (source: string, outcome: Effect.Effect<string, string>) =>
        Effect.sync(() => attempts.push(source)).pipe(Effect.andThen(Effect.sleep("1 second")), Effect.andThen(outcome))
      const first = yield* Effect.forkChild(flight.run("layer", from("a", Effect.fail("a said 401"))))
      yield* settle
      const second = yield* Effect.forkChild(flight.run("layer", from("b", Effect.succeed("from b"))))
      yield* settle
      assert.deepStrictEqual(attempts, ["a"], "the second caller joined")
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Fiber.await(first), Exit.fail("a said 401"), "the first caller's own run is final")
      yield* settle
      assert.deepStrictEqual(attempts, ["a", "b"], "the second caller tried its own source")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(second), "from b")
      assert.strictEqual(yield* singleflightKeys, 0)
    }))

  it.effect("callers of work that keeps failing make one attempt each, one at a time", () =>
    Effect.gen(function*() {
      const flight = yield* makeSingleflight
      let running = 0
      let most = 0
      let attempts = 0
      const failing = Effect.gen(function*() {
        attempts++
        most = Math.max(most, ++running)
        yield* Effect.sleep("1 second")
        running--
        return yield* Effect.fail("registry said no")
      })
      const fibers = yield* Effect.forEach([1, 2, 3], () => Effect.forkChild(flight.run("k", failing)))
      yield* settle
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust("1 second")
        yield* settle
      }
      for (const fiber of fibers) assert.deepStrictEqual(yield* Fiber.await(fiber), Exit.fail("registry said no"))
      assert.deepStrictEqual([attempts, most], [3, 1])
      assert.strictEqual(yield* singleflightKeys, 0)
    }))

  it.effect("every caller hears the progress of the run it waits for; a joiner first hears the latest", () =>
    Effect.gen(function*() {
      const flight = yield* makeSingleflight
      const heard = { first: [] as Array<number>, second: [] as Array<number> }
      const download = (report: (offset: number) => Effect.Effect<void>) =>
        Effect.gen(function*() {
          for (const offset of [10, 20, 30]) {
            yield* report(offset)
            yield* Effect.sleep("1 second")
          }
          return "done"
        })
      const listen = (who: keyof typeof heard) => (offset: number) => Effect.sync(() => void heard[who].push(offset))
      const first = yield* Effect.forkChild(flight.runReporting("blob", download, listen("first")))
      yield* settle
      yield* TestClock.adjust("1 second")
      const second = yield* Effect.forkChild(flight.runReporting("blob", download, listen("second")))
      yield* settle
      yield* TestClock.adjust("2 seconds")
      assert.deepStrictEqual([yield* Fiber.join(first), yield* Fiber.join(second)], ["done", "done"])
      assert.deepStrictEqual(heard, { first: [10, 20, 30], second: [20, 30] })
    }))

  it.effect("one caller leaving does not cancel the work; all leaving does", () =>
    Effect.gen(function*() {
      const flight = yield* makeSingleflight
      let finished = 0
      let interrupted = 0
      const work = Effect.sleep("1 second").pipe(
        Effect.andThen(Effect.sync(() => ++finished)),
        Effect.onInterrupt(() => Effect.sync(() => void interrupted++))
      )
      const [first, second] = yield* Effect.forEach([1, 2], () => Effect.forkChild(flight.run("k", work)))
      yield* settle
      yield* Fiber.interrupt(first!)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(second!), 1)
      assert.deepStrictEqual([finished, interrupted], [1, 0])

      const all = yield* Effect.forEach([1, 2, 3], () => Effect.forkChild(flight.run("k2", work)))
      yield* settle
      yield* Effect.forEach(all, Fiber.interrupt, { discard: true })
      yield* settle
      assert.deepStrictEqual([finished, interrupted], [1, 1])
      assert.strictEqual(yield* singleflightKeys, 0)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(finished, 1, "the interrupted work never completed")
    }))
})
