/**
 * The whole library over the shared containerd, in a namespace of the test's own,
 * with FIFOs in a temporary directory; the fixture image is imported first.
 */
import { Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Live from "../../src/layers/Live.ts"
import type { RuntimeOptions } from "../../src/services/Runtime.ts"
import { importFixture, sharedClient } from "./SharedContainerd.ts"

/** Runtime, hub, images, events and client for `namespace` of the shared daemon. */
export const runtimeLayer = (namespace: string, options?: RuntimeOptions) =>
  Layer.unwrap(Effect.gen(function*() {
    yield* importFixture(namespace)
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-fifo-"))),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    )
    return Live.services({ runtime: { fifoDir: dir, ...options } }).pipe(Layer.provideMerge(sharedClient(namespace)))
  }))
