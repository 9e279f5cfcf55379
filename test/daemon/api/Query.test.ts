/**
 * The query parameters not covered by the route tests in `Api.test.ts`:
 * integers as Go's `strconv.Atoi` reads them, and wait conditions.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { parseInteger, parseWaitCondition } from "../../../src/daemon/api/Query.ts"
import type { WaitCondition } from "../../../src/daemon/Engine.ts"

describe("parseInteger", () => {
  const cases: ReadonlyArray<readonly [string | undefined, number | undefined | "fails"]> = [
    [undefined, undefined],
    ["", undefined],
    ["0", 0],
    ["42", 42],
    ["-3", -3],
    ["+7", 7],
    ["1.5", "fails"],
    ["soon", "fails"],
    ["9007199254740993", "fails"]
  ]
  for (const [input, expected] of cases) {
    it(JSON.stringify(input), () => {
      const result = parseInteger("t", input)
      if (expected === "fails") assert.isTrue(Result.isFailure(result))
      else assert.deepStrictEqual(result, Result.succeed(expected))
    })
  }
})

describe("parseWaitCondition", () => {
  const cases: ReadonlyArray<readonly [string | undefined, WaitCondition]> = [
    [undefined, "not-running"],
    ["", "not-running"],
    ["not-running", "not-running"],
    ["next-exit", "next-exit"],
    ["removed", "removed"]
  ]
  for (const [input, expected] of cases) {
    it(JSON.stringify(input), () => assert.deepStrictEqual(parseWaitCondition(input), Result.succeed(expected)))
  }
  it("an unknown condition says which are allowed", () =>
    assert.deepStrictEqual(
      parseWaitCondition("eventually"),
      Result.fail("invalid condition: \"eventually\" (use not-running, next-exit, removed)")
    ))
})
