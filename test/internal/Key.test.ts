import { assert, describe, it } from "@effect/vitest"
import { compositeKey, keyParts } from "../../src/internal/Key.ts"

describe("compositeKey", () => {
  // parts → the parts keyParts gives back
  const cases: ReadonlyArray<readonly [ReadonlyArray<string | number>, ReadonlyArray<string>]> = [
    [["default", "docker.io/library/busybox:latest"], ["default", "docker.io/library/busybox:latest"]],
    [["ns", "name", "sha256:abc", "application/json", 42], ["ns", "name", "sha256:abc", "application/json", "42"]],
    [["", ""], ["", ""]],
    [["a:b", "c"], ["a:b", "c"]]
  ]
  for (const [parts, back] of cases) {
    it(`round-trips ${JSON.stringify(parts)}`, () => {
      assert.deepStrictEqual(keyParts(compositeKey(...parts)), back)
    })
  }

  it("keeps different tuples apart even when their concatenations agree", () => {
    assert.notStrictEqual(compositeKey("ab", "c"), compositeKey("a", "bc"))
    assert.notStrictEqual(compositeKey("a", ""), compositeKey("a"))
  })
})
