import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { makeSingleflight } from "../../src/services/Singleflight.ts"

const settle = Effect.forEach(Array.from({ length: 20 }), () => Effect.yieldNow, { discard: true })

describe("Singleflight", () => {
  it.effect("20 concurrent callers share one execution and its result; a later call runs again", () =>
    Effect.gen(function*() {
      const flight = yield* makeSingleflight<string>()
      let executions = 0
      const work = Effect.gen(function*() {
        executions++
        yield* Effect.sleep("1 second")
        return executions
      })
      const fibers = yield* Effect.forEach(Array.from({ length: 20 }), () => Effect.forkChild(flight.run("blob", work)))
      yield* settle
      assert.strictEqual(yield* flight.size, 1)
      yield* TestClock.adjust("1 second")
      const results = yield* Effect.forEach(fibers, Fiber.join)
      assert.deepStrictEqual(new Set(results), new Set([1]))
      assert.strictEqual(executions, 1)
      assert.strictEqual(yield* flight.size, 0)
      const again = yield* Effect.forkChild(flight.run("blob", work))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(again), 2)
    }))

  it.effect("shares a failure with every caller", () =>
    Effect.gen(function*() {
      const flight = yield* makeSingleflight<string>()
      const failing = Effect.andThen(Effect.sleep("1 second"), Effect.fail("registry said no"))
      const fibers = yield* Effect.forEach(Array.from({ length: 5 }), () => Effect.forkChild(flight.run("k", failing)))
      yield* TestClock.adjust("1 second")
      for (const fiber of fibers) assert.deepStrictEqual(yield* Fiber.await(fiber), Exit.fail("registry said no"))
      assert.strictEqual(yield* flight.size, 0)
    }))

  it.effect("one caller leaving does not cancel the work; all leaving does", () =>
    Effect.gen(function*() {
      const flight = yield* makeSingleflight<string>()
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
      assert.strictEqual(yield* flight.size, 0)
      yield* TestClock.adjust("1 second")
      assert.strictEqual(finished, 1, "the interrupted work never completed")
    }))
})
