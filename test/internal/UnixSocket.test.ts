import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { holdLock } from "../../src/internal/UnixSocket.ts"

describe("holdLock", () => {
  it.live("one holder at a time per key; released with the holder's scope", () =>
    Effect.gen(function*() {
      const key = `/tmp/lock-test-${process.pid}-${Date.now()}`
      const first = yield* Scope.make()
      assert.isTrue(yield* holdLock("test", key).pipe(Scope.provide(first)))
      assert.isFalse(yield* Effect.scoped(holdLock("test", key)), "held by the first")
      assert.isTrue(yield* Effect.scoped(holdLock("other-purpose", key)), "purposes do not collide")
      yield* Scope.close(first, Exit.void)
      assert.isTrue(yield* Effect.scoped(holdLock("test", key)), "free again once released")
    }))
})
