import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { makeFifoPool } from "../../src/internal/Fifo.ts"

const tempRoot = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-fifo-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

describe("FifoPool", () => {
  it.live("30 concurrent takers of 3 FIFOs each get distinct FIFOs from two batches; the pool goes with its scope", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const scope = yield* Scope.make()
      const pool = yield* makeFifoPool(root).pipe(Scope.provide(scope))
      const wanted = Array.from({ length: 30 }, (_, i) => ["stdout", "stderr", "stdin"].map((name) => path.join(root, `p${i}`, name)))
      for (const paths of wanted) fs.mkdirSync(path.dirname(paths[0]!))
      yield* Effect.forEach(wanted, (paths) => pool.take(paths), { concurrency: "unbounded", discard: true })

      for (const file of wanted.flat()) assert.isTrue(fs.statSync(file).isFIFO(), file)
      assert.strictEqual(fs.statSync(wanted[0]![0]!).mode & 0o777, 0o600)
      // 90 taken from two batches of 64: one mkfifo each, 38 left over.
      const poolDir = fs.readdirSync(root).find((name) => name.startsWith(".pool-"))!
      assert.strictEqual(fs.readdirSync(path.join(root, poolDir)).length, 2 * 64 - 90)

      yield* Scope.close(scope, Exit.void)
      assert.isFalse(fs.existsSync(path.join(root, poolDir)))
      assert.isTrue(fs.statSync(wanted[29]![2]!).isFIFO(), "taken FIFOs belong to their takers")
    }))

  it.live("a taker interrupted while the batch is made leaves the others served", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const pool = yield* makeFifoPool(root)
      const first = yield* Effect.forkChild(pool.take([path.join(root, "a")]))
      const second = yield* Effect.forkChild(pool.take([path.join(root, "b")]))
      yield* Effect.yieldNow
      yield* Fiber.interrupt(first)
      yield* Fiber.join(second).pipe(Effect.timeout("5 seconds"))
      assert.isTrue(fs.statSync(path.join(root, "b")).isFIFO())
      yield* pool.take([path.join(root, "c")]).pipe(Effect.timeout("5 seconds"))
      assert.isTrue(fs.statSync(path.join(root, "c")).isFIFO())
    }))

  it.live("a destination that cannot be reached fails the take with a typed error, and the pool still serves", () =>
    Effect.gen(function*() {
      const root = yield* tempRoot
      const pool = yield* makeFifoPool(root)
      const error = yield* Effect.flip(pool.take([path.join(root, "missing-dir", "stdout")]))
      assert.strictEqual(error._tag, "ContainerdError")
      assert.include(error.message, "could not move FIFOs")
      const ok = path.join(root, "stdout")
      yield* pool.take([ok])
      assert.isTrue(fs.statSync(ok).isFIFO())
    }))
})
