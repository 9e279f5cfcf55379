/**
 * `docker run --rm IMAGE CMD...` with the library: create a container from an
 * image already in containerd, run its task with piped stdio, print its output,
 * exit with its code, and leave nothing behind. Seven RPCs once the image is known.
 *
 *   npm run build && node dist/scratchpad/run.js docker.io/library/busybox:latest echo hello
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Stream } from "effect"
import * as crypto from "node:crypto"
import * as Live from "../src/layers/Live.ts"
import { Runtime, Stdio } from "../src/services/Runtime.ts"

const [image = "docker.io/library/busybox:latest", ...command] = process.argv.slice(2)

const program = Effect.gen(function*() {
  const runtime = yield* Runtime
  const container = yield* runtime.containers.create({
    id: `run-${crypto.randomBytes(6).toString("hex")}`,
    image,
    command: command.length > 0 ? command : undefined
  })
  const task = yield* container.newTask({ stdio: Stdio.pipe() })
  yield* Effect.forkChild(Stream.runForEach(task.stdout, (chunk) => Effect.sync(() => process.stdout.write(chunk))))
  yield* Effect.forkChild(Stream.runForEach(task.stderr, (chunk) => Effect.sync(() => process.stderr.write(chunk))))
  yield* task.start
  const status = yield* task.wait
  yield* task.delete
  yield* container.delete()
  process.exitCode = status.code
}).pipe(Effect.scoped)

program.pipe(Effect.provide(Live.layerConfig()), NodeRuntime.runMain)
