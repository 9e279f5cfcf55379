import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import { decodeJson } from "../../src/internal/Content.ts"

const Doc = Schema.Struct({ schemaVersion: Schema.Int, mediaType: Schema.optional(Schema.String) })
const bytes = (text: string) => new TextEncoder().encode(text)

describe("decodeJson", () => {
  // text → the decoded value, or the start of what is wrong with it
  const cases: ReadonlyArray<readonly [string, { readonly ok: unknown } | { readonly problem: string }]> = [
    ['{"schemaVersion":2}', { ok: { schemaVersion: 2 } }],
    ['{"schemaVersion":2,"mediaType":"x","extra":1}', { ok: { schemaVersion: 2, mediaType: "x" } }],
    ["not json", { problem: "it is not JSON" }],
    ['{"schemaVersion":"2"}', { problem: "it is malformed" }]
  ]
  for (const [text, expected] of cases) {
    it(text, () => {
      const decoded = decodeJson(Doc, bytes(text))
      if ("ok" in expected) assert.deepStrictEqual(Result.getOrThrow(decoded), expected.ok)
      else assert.isTrue(Result.isFailure(decoded) && decoded.failure.startsWith(expected.problem))
    })
  }
})
