/**
 * `docker pull IMAGE` with the library: pull an image into containerd, unpacked
 * for this host, printing progress per layer as Docker does.
 *
 *   npm run build && node dist/scratchpad/pull.js docker.io/library/busybox:latest
 *
 * `--plain-http` talks HTTP to the registry (loopback registries get it anyway).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Stream } from "effect"
import * as Live from "../src/layers/Live.ts"
import { Images, type PullProgress } from "../src/services/Images.ts"

const args = process.argv.slice(2)
const plainHttp = args.includes("--plain-http")
const [reference = "docker.io/library/busybox:latest"] = args.filter((arg) => !arg.startsWith("--"))

const line = (progress: PullProgress): string | undefined => {
  switch (progress._tag) {
    case "Resolving":
      return `resolving ${progress.reference}`
    case "Resolved":
      return `${progress.reference}: ${progress.digest}`
    case "Downloading":
      return undefined // byte counts: a progress bar would go here
    case "Pulled":
      return `pulled ${progress.image.name} (${progress.image.chainId})`
    default:
      return `${progress.id}: ${progress._tag}`
  }
}

const program = Effect.gen(function*() {
  const images = yield* Images
  yield* images.pullWithProgress(reference).pipe(
    Stream.runForEach((progress) =>
      Effect.sync(() => {
        const text = line(progress)
        if (text !== undefined) console.log(text)
      })
    )
  )
})

const registry = plainHttp ? { hosts: { [reference.split("/")[0]!]: { insecure: true } } } : undefined
program.pipe(Effect.provide(Live.layerConfig({ registry })), NodeRuntime.runMain)
