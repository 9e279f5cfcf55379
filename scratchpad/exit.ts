/**
 * Waits for an existing task to exit, the way recovery code must: register with
 * the hub first, then ask containerd, so no exit can slip between the two.
 *
 *   npm run build && node dist/scratchpad/exit.js <container-id>
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { Containerd } from "../src/services/Containerd.ts"
import { Events } from "../src/services/Events.ts"
import { ExitHub } from "../src/services/ExitHub.ts"
import { Status } from "../src/gen/containerd/types/task/task.ts"

const containerId = process.argv[2] ?? "example"

const program = Effect.gen(function*() {
  const client = yield* Containerd
  const hub = yield* ExitHub
  const exited = yield* hub.awaitExit(containerId)
  const { process: task } = yield* client.tasks.get({ containerId })
  if (task?.status === Status.STOPPED) {
    return yield* Effect.log(`${containerId} had already exited with ${task.exitStatus}`)
  }
  yield* hub.started(containerId, "", task?.pid ?? 0)
  yield* Effect.log(`waiting for ${containerId} (pid ${task?.pid})`)
  const status = yield* exited
  yield* Effect.log(`${containerId} ended: ${status._tag} ${status.code}`)
}).pipe(Effect.scoped)

const layer = ExitHub.layer.pipe(
  Layer.provideMerge(Events.layer()),
  Layer.provideMerge(Containerd.layerConfig)
)

program.pipe(Effect.provide(layer), NodeRuntime.runMain)
