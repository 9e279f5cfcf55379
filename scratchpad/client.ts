/**
 * The smallest useful program: compose the client Layer from the environment
 * (CONTAINERD_ADDRESS, CONTAINERD_NAMESPACE) and ask containerd a few things.
 *
 *   npm run build && node dist/scratchpad/client.js
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { Containerd } from "../src/services/Containerd.ts"

const program = Effect.gen(function*() {
  const client = yield* Containerd
  const { version } = yield* client.version.version()
  const { containers } = yield* client.containers.list()
  const namespace = yield* client.currentNamespace
  yield* Effect.log(`containerd ${version} at ${client.address}: ${containers.length} containers in "${namespace}"`)
})

program.pipe(Effect.provide(Containerd.layerConfig), NodeRuntime.runMain)
