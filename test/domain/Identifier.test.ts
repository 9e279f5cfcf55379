import { assert, describe, it } from "@effect/vitest"
import { shortId } from "../../src/domain/Identifier.ts"

describe("shortId", () => {
  const hex = "0123456789abcdef".repeat(4)
  // id or digest → Docker's short form
  const cases: ReadonlyArray<readonly [string, string]> = [
    [`sha256:${hex}`, "0123456789ab"],
    [`sha512:${hex}`, "0123456789ab"],
    [hex, "0123456789ab"],
    ["abc", "abc"],
    ["sha256:abc", "abc"]
  ]
  for (const [id, short] of cases) {
    it(`${id} → ${short}`, () => assert.strictEqual(shortId(id), short))
  }
})
