/**
 * effect-containerd: containerd from Effect 4.
 *
 * Each module is exported as a namespace, as Effect's own packages do:
 * `Containerd.Containerd.layerConfig`, `ContainerdError.ContainerdError`, ...
 */
export * as Any from "./domain/Any.ts"
export * as ContainerdError from "./domain/ContainerdError.ts"
export * as Containerd from "./services/Containerd.ts"
