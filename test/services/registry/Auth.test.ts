import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { parseReference } from "../../../src/domain/Reference.ts"
import { basicAuth, tokenKey } from "../../../src/services/registry/Auth.ts"
import { describeCause } from "../../../src/services/registry/HttpErrors.ts"

describe("basicAuth", () => {
  const encoded = (text: string) => `Basic ${Buffer.from(text).toString("base64")}`
  // host options → the Authorization value
  const cases: ReadonlyArray<readonly [Parameters<typeof basicAuth>[0], string | undefined]> = [
    [{}, undefined],
    [{ username: "u" }, encoded("u:")],
    [{ username: "u", password: "p" }, encoded("u:p")],
    [{ username: "u", password: Redacted.make("secret") }, encoded("u:secret")]
  ]
  for (const [host, expected] of cases) {
    it(JSON.stringify(host), () => assert.strictEqual(basicAuth(host), expected))
  }
})

describe("tokenKey", () => {
  it.effect("is per registry, realm, service and repository", () =>
    Effect.gen(function*() {
      const a = yield* parseReference("localhost:5000/team/app:v1")
      const b = yield* parseReference("localhost:5000/team/other:v1")
      const challenge = { scheme: "bearer" as const, realm: "http://auth/token", service: "registry" }
      assert.strictEqual(tokenKey(a, challenge), tokenKey(yield* parseReference("localhost:5000/team/app:v2"), challenge))
      assert.notStrictEqual(tokenKey(a, challenge), tokenKey(b, challenge))
      assert.notStrictEqual(tokenKey(a, challenge), tokenKey(a, { ...challenge, service: undefined }))
    }))
})

describe("describeCause", () => {
  it("names the innermost cause", () => {
    const inner = new Error("connect ECONNREFUSED 127.0.0.1:5000")
    assert.strictEqual(describeCause(new Error("outer", { cause: new Error("middle", { cause: inner }) })), inner.message)
    assert.strictEqual(describeCause("plain"), "plain")
  })
})
