import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import { checkHealthcheck, goDuration, healthcheckWarning, probeOf } from "../../../src/daemon/engine/Health.ts"
import { makeEntry } from "../../../src/daemon/engine/Store.ts"
import type { ContainerConfig } from "../../../src/daemon/Model.ts"

const entryWith = (config: ContainerConfig, image?: Record<string, unknown>) =>
  makeEntry("c", { Name: "/c", Created: "", Image: "i", ImageId: "sha256:x", Config: config, HostConfig: {}, ...(image ? { ImageConfig: image } : {}) }, {})

describe("Health", () => {
  it("checks as dockerd's verifyContainerSettings: 1 ms at least (0 is the default), retries not negative", () => {
    assert.isTrue(Result.isSuccess(checkHealthcheck({ Test: ["CMD", "x"], Interval: 0, Timeout: 1_000_000, StartPeriod: null, Retries: 0 })))
    assert.deepStrictEqual(checkHealthcheck({ Interval: 999_999 }), Result.fail("Interval in Healthcheck cannot be less than 1ms"))
    assert.deepStrictEqual(checkHealthcheck({ Timeout: -5 }), Result.fail("Timeout in Healthcheck cannot be less than 1ms"))
    assert.deepStrictEqual(checkHealthcheck({ StartPeriod: 1 }), Result.fail("StartPeriod in Healthcheck cannot be less than 1ms"))
    assert.deepStrictEqual(checkHealthcheck({ Retries: -1 }), Result.fail("Retries in Healthcheck cannot be negative"))
    assert.deepStrictEqual(healthcheckWarning({ Test: ["CMD", "x"] }), [])
    assert.strictEqual(healthcheckWarning({ Test: ["HTTP", "x"] }).length, 1)
  })

  it("Go's duration text for the timeout message", () => {
    assert.deepStrictEqual(
      [300, 1000, 1500, 30_000, 90_000, 3_600_000, 3_723_500, 0.5].map(goDuration),
      ["300ms", "1s", "1.5s", "30s", "1m30s", "1h0m0s", "1h2m3.5s", "0.5ms"]
    )
  })

  it.effect("the probe: CMD as given, CMD-SHELL under the container's shell, dockerd's defaults; none for NONE or unknown types", () =>
    Effect.gen(function*() {
      const shell = probeOf(yield* entryWith({ Healthcheck: { Test: ["CMD-SHELL", "curl -f x"] } }))
      assert.deepStrictEqual(shell, { argv: ["/bin/sh", "-c", "curl -f x"], intervalMs: 30_000, timeoutMs: 30_000, startPeriodMs: 0, retries: 3 })
      const own = probeOf(yield* entryWith({ Healthcheck: { Test: ["CMD-SHELL", "x"] }, Shell: ["/bin/ash", "-e", "-c"] }))
      assert.deepStrictEqual(own?.argv, ["/bin/ash", "-e", "-c", "x"])
      const timed = probeOf(yield* entryWith({ Healthcheck: { Test: ["CMD", "a", "b"], Interval: 2e8, Timeout: 3e8, StartPeriod: 4e9, Retries: 1 } }))
      assert.deepStrictEqual(timed, { argv: ["a", "b"], intervalMs: 200, timeoutMs: 300, startPeriodMs: 4000, retries: 1 })
      // The image's, completed field by field by the request's.
      const merged = probeOf(yield* entryWith({ Healthcheck: { Interval: 1e9 } }, { Healthcheck: { Test: ["CMD", "img"], Retries: 7 } }))
      assert.deepStrictEqual([merged?.argv, merged?.intervalMs, merged?.retries], [["img"], 1000, 7])
      assert.isUndefined(probeOf(yield* entryWith({ Healthcheck: { Test: ["NONE"] } }, { Healthcheck: { Test: ["CMD", "img"] } })))
      assert.isUndefined(probeOf(yield* entryWith({ Healthcheck: { Test: ["HTTP", "x"] } })))
      assert.isUndefined(probeOf(yield* entryWith({})))
    }))
})
