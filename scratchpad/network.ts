/**
 * `docker run --rm --network NET -p 8080:80 IMAGE CMD...` with the library: a
 * CNI bridge network defined (if it is not yet), a container on it with a
 * published port, its address printed, and everything released when it exits
 * (the address, the port, the netns go with its task). Still seven RPCs once
 * the image is known: the attachment is the `Networks` service's, not containerd's.
 *
 *   npm run build && node dist/scratchpad/network.js docker.io/library/busybox:latest busybox httpd -f -p 80
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Stream } from "effect"
import * as crypto from "node:crypto"
import * as Live from "../src/layers/Live.ts"
import { Containerd } from "../src/services/Containerd.ts"
import { Networks } from "../src/services/Networks.ts"
import { Runtime, Stdio } from "../src/services/Runtime.ts"

const [image = "docker.io/library/busybox:latest", ...command] = process.argv.slice(2)

const program = Effect.gen(function*() {
  const networks = yield* Networks
  yield* networks.define({ name: "scratch", bridge: "efc-scratch0", subnet: "10.254.250.0/24" })
  const runtime = yield* Runtime
  const container = yield* runtime.containers.create({
    id: `net-${crypto.randomBytes(6).toString("hex")}`,
    image,
    command: command.length > 0 ? command : undefined,
    network: { networks: [{ network: "scratch" }], ports: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] }
  })
  const task = yield* container.newTask({ stdio: Stdio.pipe() })
  const endpoint = task.attachment?.endpoints[0]
  yield* Effect.logInfo(`${container.id} is ${endpoint?.address}/${endpoint?.prefixLength} on scratch, 127.0.0.1:8080 -> 80`)
  yield* Effect.forkChild(Stream.runForEach(task.stdout, (chunk) => Effect.sync(() => process.stdout.write(chunk))))
  yield* task.start
  const status = yield* task.wait
  yield* task.delete
  yield* container.delete()
  process.exitCode = status.code
}).pipe(Effect.scoped)

const layer = Live.services({
  networks: { confDir: "/var/lib/effect-containerd/scratch/network", runRoot: "/run/effect-containerd/scratch" }
}).pipe(Layer.provideMerge(Containerd.layerConfig))

program.pipe(Effect.provide(layer), NodeRuntime.runMain)
