/**
 * effect-containerd: containerd from Effect 4.
 *
 * Each module is exported as a namespace, as Effect's own packages do:
 * `Containerd.Containerd.layerConfig`, `ExitHub.ExitHub.layer`, ...
 */
export * as Any from "./domain/Any.ts"
export * as ContainerdError from "./domain/ContainerdError.ts"
export * as Event from "./domain/Event.ts"
export * as ExitStatus from "./domain/ExitStatus.ts"
export * as Identifier from "./domain/Identifier.ts"
export * as Containerd from "./services/Containerd.ts"
export * as Events from "./services/Events.ts"
export * as ExitHub from "./services/ExitHub.ts"
