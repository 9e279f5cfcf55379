/**
 * A supervised container: the monitors watch its task, and the exit handler
 * restarts it when it fails, up to three times — a restart policy in a few lines.
 * Recovery at start means it keeps working across restarts of this program.
 *
 *   npm run build && node dist/scratchpad/supervise.js docker.io/library/busybox:latest sh -c 'exit 1'
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Stream } from "effect"
import * as Live from "../src/layers/Live.ts"
import { ExitHandler, Monitors } from "../src/services/Monitors.ts"

const [image = "docker.io/library/busybox:latest", ...command] = process.argv.slice(2)
const restarts = new Map<string, number>()

const restartOnFailure = Layer.succeed(ExitHandler, ExitHandler.of({
  handle: (exit, monitors) =>
    Effect.gen(function*() {
      const count = restarts.get(exit.containerId) ?? 0
      yield* Effect.log(`${exit.containerId} exited with ${exit.status.code} (restarts so far: ${count})`)
      if (exit.status.code !== 0 && count < 3) {
        restarts.set(exit.containerId, count + 1)
        yield* monitors.start(exit.containerId)
      }
    })
}))

const program = Effect.gen(function*() {
  const monitors = yield* Monitors
  const changes = yield* monitors.changes
  yield* Effect.forkScoped(Stream.runForEach(changes, (state) => Effect.log(`state: ${state.id} ${state.status}`)))
  yield* monitors.create({ id: "supervised", image, command: command.length > 0 ? command : undefined })
  yield* monitors.start("supervised")
  yield* Effect.sleep("10 seconds")
  yield* monitors.remove("supervised")
}).pipe(Effect.scoped)

const layer = Monitors.layer().pipe(
  Layer.provideMerge(restartOnFailure),
  Layer.provideMerge(Live.layerConfig())
)

program.pipe(Effect.provide(layer), NodeRuntime.runMain)
