/**
 * The whole library over the shared containerd, in a namespace of the test's own,
 * with FIFOs in a temporary directory; and what such a namespace holds, for
 * tests that check nothing was left behind.
 */
import { Context, Effect, Fiber, Layer, Stream } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as Live from "../../src/layers/Live.ts"
import { Containerd } from "../../src/services/Containerd.ts"
import { Images } from "../../src/services/Images.ts"
import { Runtime, type RuntimeOptions, Stdio } from "../../src/services/Runtime.ts"
import { importFixture, sharedClient, uniqueNamespace } from "./SharedContainerd.ts"

/** A temporary directory named `<prefix>…`, removed with the scope. */
const tempDirNamed = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), prefix))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

/** A temporary directory removed with the scope. */
export const tempDir = tempDirNamed("ectr-test-")
/** A FIFO directory (`ectr-fifo-…`: the runtime tests look for what is left in these). */
const fifoDir = tempDirNamed("ectr-fifo-")

/** Runtime, hub, images, events and client for `namespace` of the shared daemon. */
export const runtimeLayer = (namespace: string, options?: RuntimeOptions) =>
  Layer.unwrap(Effect.gen(function*() {
    yield* importFixture(namespace)
    return Live.services({ runtime: { fifoDir: yield* fifoDir, ...options } }).pipe(Layer.provideMerge(sharedClient(namespace)))
  }))

/** The library in a new, empty namespace (nothing imported: every pull is cold), with a temporary directory. */
export const emptyLibrary = (prefix: string) =>
  Effect.gen(function*() {
    const namespace = uniqueNamespace(prefix)
    const context = yield* Layer.build(
      Live.services({ runtime: { fifoDir: yield* fifoDir } }).pipe(Layer.provideMerge(sharedClient(namespace)))
    )
    return {
      namespace,
      dir: yield* tempDir,
      images: Context.get(context, Images),
      runtime: Context.get(context, Runtime),
      client: Context.get(context, Containerd)
    }
  })

/** What a namespace holds: image records, leases, ingests in progress and blobs. */
export const holdings = (client: Containerd["Service"]) =>
  Effect.gen(function*() {
    const images = (yield* client.images.list({})).images.map((i) => i.name)
    const leases = (yield* client.leases.list({})).leases.map((l) => l.id)
    const ingests = (yield* client.content.listStatuses({})).statuses.map((s) => s.ref)
    const blobs = yield* client.content.list({}).pipe(
      Stream.runCollect,
      Effect.map((pages) => pages.flatMap((page) => page.info.map((info) => info.digest)))
    )
    return { images, leases, ingests, blobs }
  })

/** Runs `command` in a new container of `image`: its stdout. */
export const output = (runtime: Runtime["Service"], image: string, command?: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const container = yield* runtime.containers.create({
      id: `run-${crypto.randomBytes(4).toString("hex")}`,
      image,
      ...(command === undefined ? {} : { command })
    })
    const task = yield* container.newTask({ stdio: Stdio.pipe() })
    const stdout = yield* Effect.forkChild(task.stdout.pipe(Stream.decodeText(), Stream.mkString))
    yield* task.start
    yield* task.wait
    yield* task.delete
    yield* container.delete()
    return yield* Fiber.join(stdout)
  })
