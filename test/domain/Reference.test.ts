import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import { parseReference, parseReferenceResult } from "../../src/domain/Reference.ts"

const sha = `sha256:${"a".repeat(64)}`

describe("parseReference", () => {
  // input → [full form containerd stores, familiar form Docker prints, domain, path, object asked for]
  const valid: ReadonlyArray<readonly [string, string, string, string, string, string]> = [
    ["busybox", "docker.io/library/busybox:latest", "busybox:latest", "docker.io", "library/busybox", "latest"],
    ["busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36", "docker.io", "library/busybox", "1.36"],
    ["library/busybox", "docker.io/library/busybox:latest", "busybox:latest", "docker.io", "library/busybox", "latest"],
    ["docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest", "docker.io", "library/busybox", "latest"],
    ["index.docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest", "docker.io", "library/busybox", "latest"],
    ["user/app", "docker.io/user/app:latest", "user/app:latest", "docker.io", "user/app", "latest"],
    ["user/app/sub:v1", "docker.io/user/app/sub:v1", "user/app/sub:v1", "docker.io", "user/app/sub", "v1"],
    ["localhost/app", "localhost/app:latest", "localhost/app:latest", "localhost", "app", "latest"],
    ["localhost:5000/app:dev", "localhost:5000/app:dev", "localhost:5000/app:dev", "localhost:5000", "app", "dev"],
    ["127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest", "127.0.0.1:5000/a/b:latest", "127.0.0.1:5000", "a/b", "latest"],
    ["ghcr.io/org/app@" + sha, "ghcr.io/org/app@" + sha, "ghcr.io/org/app@" + sha, "ghcr.io", "org/app", sha],
    ["busybox:1@" + sha, "docker.io/library/busybox:1@" + sha, "busybox:1@" + sha, "docker.io", "library/busybox", sha],
    ["[::1]:5000/app", "[::1]:5000/app:latest", "[::1]:5000/app:latest", "[::1]:5000", "app", "latest"],
    ["Registry.Example/app", "Registry.Example/app:latest", "Registry.Example/app:latest", "Registry.Example", "app", "latest"],
    ["a.b/c__d.e-f---g_h", "a.b/c__d.e-f---g_h:latest", "a.b/c__d.e-f---g_h:latest", "a.b", "c__d.e-f---g_h", "latest"],
    ["localhost:5000", "docker.io/library/localhost:5000", "localhost:5000", "docker.io", "library/localhost", "5000"],
    ["app:_Tag.1-x", "docker.io/library/app:_Tag.1-x", "app:_Tag.1-x", "docker.io", "library/app", "_Tag.1-x"]
  ]
  for (const [input, full, familiar, domain, path, object] of valid) {
    it(`accepts ${input}`, () => {
      const reference = Result.getOrThrow(parseReferenceResult(input))
      assert.deepStrictEqual(
        [reference.toString(), reference.familiar, reference.domain, reference.path, reference.object],
        [full, familiar, domain, path, object]
      )
    })
  }

  // input → a fragment of the reason given
  const invalid: ReadonlyArray<readonly [string, string]> = [
    ["", "empty"],
    ["Busybox", "must be lowercase"],
    ["user/App", "must be lowercase"],
    ["a".repeat(64), "image ID"],
    ["busybox:", "tag \"\""],
    ["busybox:-x", "tag \"-x\""],
    ["busybox:" + "t".repeat(129), "1 to 128"],
    ["busybox@sha256:abc", "64 lowercase hex"],
    ["busybox@sha256:" + "A".repeat(64), "64 lowercase hex"],
    ["busybox@md5:" + "a".repeat(32), "not supported"],
    // Names an object inherits are no algorithms.
    ["busybox@constructor:" + "a".repeat(64), "not supported"],
    ["busybox@toString:" + "a".repeat(64), "not supported"],
    ["busybox@" + "a".repeat(64), "<algorithm>:<hex>"],
    [":latest", "repository name is empty"],
    ["bad_domain.com/app", "not a valid host"],
    ["-x.io/app", "not a valid host"],
    ["app//x", "path component \"\""],
    ["app/-x", "path component \"-x\""],
    ["app/x.", "path component \"x.\""],
    ["app/x___y", "path component"],
    ["app with space", "path component"],
    ["example.com/" + "a".repeat(250), "not be more than 255"]
  ]
  for (const [input, reason] of invalid) {
    it(`rejects ${JSON.stringify(input.length > 40 ? input.slice(0, 40) + "…" : input)}`, () => {
      const result = parseReferenceResult(input)
      assert.isTrue(Result.isFailure(result))
      if (Result.isFailure(result)) assert.include(result.failure, reason)
    })
  }

  it.effect("fails with InvalidArgument naming the input and the operation", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(parseReference("Busybox", "Images.pull"))
      assert.strictEqual(error.reason._tag, "InvalidArgument")
      assert.strictEqual(error.reason.method, "Images.pull")
      assert.include(error.message, "invalid reference \"Busybox\"")
      assert.include(error.message, "must be lowercase")
    }))

  it("withTag keeps the repository and drops the digest", () => {
    const reference = Result.getOrThrow(parseReferenceResult("busybox:1@" + sha))
    assert.strictEqual(reference.withTag("2").toString(), "docker.io/library/busybox:2")
  })
})
