import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect } from "effect"
import { TestClock } from "effect/testing"
import { makeRestartManager, shouldRestart } from "../../../src/daemon/engine/RestartManager.ts"

describe("RestartManager", () => {
  it("shouldRestart: each policy's rule", () => {
    const cases: Array<[Parameters<typeof shouldRestart>, boolean]> = [
      [[{ name: "no", max: 0 }, 0, 1], false],
      [[{ name: "always", max: 0 }, 5, 0], true],
      [[{ name: "unless-stopped", max: 0 }, 0, 0], true],
      [[{ name: "on-failure", max: 0 }, 9, 1], true],
      [[{ name: "on-failure", max: 0 }, 0, 0], false],
      [[{ name: "on-failure", max: 2 }, 1, 1], true],
      [[{ name: "on-failure", max: 2 }, 2, 1], false]
    ]
    for (const [args, expected] of cases) assert.strictEqual(shouldRestart(...args), expected, JSON.stringify(args))
  })

  it("a stop by hand, a removal or AutoRemove rule a restart out", () => {
    const manager = makeRestartManager({ name: "always", max: 0 }, { count: 0, manuallyStopped: true })
    assert.isFalse(manager.restarts(0, false))
    manager.setManuallyStopped(false)
    assert.isTrue(manager.restarts(0, false))
    assert.isFalse(manager.restarts(0, true))
  })

  it.effect("the delay doubles from 100 ms to 1 min, and is back at 100 ms after a run of 10 s", () =>
    Effect.gen(function*() {
      const manager = makeRestartManager({ name: "always", max: 0 }, { count: 3, manuallyStopped: false })
      const delays: Array<number> = []
      for (let i = 0; i < 12; i++) {
        const startedAt = yield* Clock.currentTimeMillis
        yield* TestClock.adjust("1 second")
        delays.push(Duration.toMillis(yield* manager.nextDelay(startedAt)))
      }
      assert.deepStrictEqual(delays, [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000])
      const startedAt = yield* Clock.currentTimeMillis
      yield* TestClock.adjust("10 seconds")
      assert.strictEqual(Duration.toMillis(yield* manager.nextDelay(startedAt)), 100)
      assert.strictEqual(Duration.toMillis(yield* manager.nextDelay(undefined)), 200, "an unknown start does not reset")
    }))

  it.effect("counts restarts from what the labels recorded", () =>
    Effect.gen(function*() {
      const manager = makeRestartManager({ name: "on-failure", max: 2 }, { count: 1, manuallyStopped: false })
      assert.isTrue(manager.restarts(1, false))
      assert.strictEqual(yield* manager.restarted, 2)
      assert.strictEqual(manager.count, 2)
      assert.isFalse(manager.restarts(1, false), "the maximum is reached")
    }))
})
