import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { normalise } from "../../../src/services/images/Resolve.ts"
import { importName } from "../../../src/services/images/Sources.ts"

describe("importName", () => {
  // annotations, the caller's name → the name stored (undefined: rejected)
  const cases: ReadonlyArray<readonly [Record<string, string> | undefined, string | undefined, string | undefined]> = [
    [{ "io.containerd.image.name": "docker.io/library/app:1" }, "other", "docker.io/library/app:1"],
    [{ "org.opencontainers.image.ref.name": "latest" }, "team/app", "docker.io/team/app:latest"],
    [{ "org.opencontainers.image.ref.name": "v2" }, "localhost:5000/app:v1", "localhost:5000/app:v2"],
    [{ "org.opencontainers.image.ref.name": "ghcr.io/org/app:v3" }, undefined, "ghcr.io/org/app:v3"],
    [undefined, "busybox", "docker.io/library/busybox:latest"],
    [undefined, undefined, undefined]
  ]
  for (const [annotations, fallback, expected] of cases) {
    it.effect(`${JSON.stringify(annotations)} with ${fallback} → ${expected}`, () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(Effect.map(importName(annotations, fallback), (reference) => reference.toString()))
        if (expected === undefined) assert.isTrue(Exit.isFailure(exit))
        else assert.deepStrictEqual(exit, Exit.succeed(expected))
      }))
  }
})

describe("normalise", () => {
  const cases: ReadonlyArray<readonly [string, string]> = [
    ["busybox", "docker.io/library/busybox:latest"],
    ["localhost:5000/app:v1", "localhost:5000/app:v1"],
    ["import-2024-01-01", "docker.io/library/import-2024-01-01:latest"],
    ["Not A Reference", "Not A Reference"]
  ]
  for (const [name, stored] of cases) {
    it(`${name} → ${stored}`, () => assert.strictEqual(normalise(name), stored))
  }
})
