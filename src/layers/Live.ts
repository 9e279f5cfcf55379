/**
 * The library's services composed into ready layers: what a program that runs
 * containers on containerd provides once, at its edge.
 *
 * `services` builds the stack over a `Containerd` client the caller provides
 * (tests and benchmarks point it at their own daemon); `layerConfig` adds the
 * client configured from the environment (`CONTAINERD_ADDRESS`, ...).
 */
import { Layer } from "effect"
import { BackoffQueue } from "../services/BackoffQueue.ts"
import { Containerd } from "../services/Containerd.ts"
import { Events } from "../services/Events.ts"
import { ExitHub } from "../services/ExitHub.ts"
import { Images } from "../services/Images.ts"
import { Networks, type NetworksOptions } from "../services/Networks.ts"
import { Registry, type RegistryOptions } from "../services/Registry.ts"
import { Runtime, type RuntimeOptions } from "../services/Runtime.ts"
import { Singleflight } from "../services/Singleflight.ts"

/** Settings of the composed services. */
export interface LiveOptions {
  readonly runtime?: RuntimeOptions | undefined
  readonly registry?: RegistryOptions | undefined
}

/** Images with their registry client, event stream and singleflight, over the `Containerd` in context. */
export const images = (options?: LiveOptions) =>
  Images.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(Events.layer(), Registry.layer(options?.registry), Singleflight.layer))
  )

/**
 * Runtime, exit hub, images, registry client, event stream, singleflight and backoff queue
 * (what `Monitors.layer` needs besides an `ExitHandler`), over the `Containerd` in context.
 */
export const services = (options?: LiveOptions) =>
  Runtime.layer(options?.runtime).pipe(
    Layer.provideMerge(ExitHub.layer),
    Layer.provideMerge(images(options)),
    Layer.provideMerge(BackoffQueue.layer())
  )

/**
 * Container networking over this host's CNI plugins (needs no containerd: it
 * runs plugins, iptables and netns). Separate from `services`, which does not
 * require it: a program without networks needs no plugins installed.
 */
export const networks = (options: NetworksOptions) => Networks.layer(options)

/** Everything, with the client configured from the environment. */
export const layerConfig = (options?: LiveOptions) => services(options).pipe(Layer.provideMerge(Containerd.layerConfig))
