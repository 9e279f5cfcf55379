/**
 * The library's services composed into ready layers: what a program that runs
 * containers on containerd provides once, at its edge.
 *
 * `services` builds the stack over a `Containerd` client the caller provides
 * (tests and benchmarks point it at their own daemon); `layerConfig` adds the
 * client configured from the environment (`CONTAINERD_ADDRESS`, ...).
 */
import { Layer } from "effect"
import type { ContainerdError } from "../domain/ContainerdError.ts"
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
  /** Containers on CNI networks: `services` then provides `Networks` too, under the runtime (which uses it). */
  readonly networks?: NetworksOptions | undefined
}

/** Images with their registry client, event stream and singleflight, over the `Containerd` in context. */
export const images = (options?: LiveOptions) =>
  Images.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(Events.layer(), Registry.layer(options?.registry), Singleflight.layer))
  )

const withoutNetworks = (options?: LiveOptions) =>
  Runtime.layer(options?.runtime).pipe(
    Layer.provideMerge(ExitHub.layer),
    Layer.provideMerge(images(options)),
    Layer.provideMerge(BackoffQueue.layer())
  )
type Services = ReturnType<typeof withoutNetworks>

/**
 * Runtime, exit hub, images, registry client, event stream, singleflight and backoff queue
 * (what `Monitors.layer` needs besides an `ExitHandler`), over the `Containerd` in context;
 * with `networks`, the `Networks` service too, which the runtime and the monitors then use
 * (its layer fails when the CNI plugins are missing).
 */
export function services(
  options?: LiveOptions & { readonly networks?: undefined }
): Layer.Layer<Layer.Success<Services>, Layer.Error<Services>, Layer.Services<Services>>
export function services(
  options?: LiveOptions
): Layer.Layer<Layer.Success<Services> | Networks, Layer.Error<Services> | ContainerdError, Layer.Services<Services>>
export function services(options?: LiveOptions) {
  return options?.networks === undefined
    ? withoutNetworks(options)
    : withoutNetworks(options).pipe(Layer.provideMerge(Networks.layer(options.networks)))
}

/**
 * Container networking over this host's CNI plugins (needs no containerd: it
 * runs plugins, iptables and netns), alone; `services({ networks })` composes it
 * under the runtime. `services()` has none: a program without networks needs no
 * plugins installed.
 */
export const networks = (options: NetworksOptions) => Networks.layer(options)

/** Everything, with the client configured from the environment. */
export const layerConfig = (options?: LiveOptions) => services(options).pipe(Layer.provideMerge(Containerd.layerConfig))
