/**
 * effect-containerd: containerd from Effect 4.
 *
 * Each module is exported as a namespace, as Effect's own packages do:
 * `Containerd.Containerd.layerConfig`, `ExitHub.ExitHub.layer`, ...
 */
export * as Any from "./domain/Any.ts"
export * as Capabilities from "./domain/Capabilities.ts"
export * as CniResult from "./domain/CniResult.ts"
export * as ContainerdError from "./domain/ContainerdError.ts"
export * as Event from "./domain/Event.ts"
export * as ContainerConfig from "./domain/ContainerConfig.ts"
export * as ExitStatus from "./domain/ExitStatus.ts"
export * as Identifier from "./domain/Identifier.ts"
export * as Image from "./domain/Image.ts"
export * as Labels from "./domain/Labels.ts"
export * as OciSpec from "./domain/OciSpec.ts"
export * as Reference from "./domain/Reference.ts"
export * as RegistryError from "./domain/RegistryError.ts"
export * as Seccomp from "./domain/Seccomp.ts"
export * as Signal from "./domain/Signal.ts"
export * as Stdio from "./domain/Stdio.ts"
export * as TaskMetrics from "./domain/TaskMetrics.ts"
export * as BackoffQueue from "./services/BackoffQueue.ts"
export * as Containerd from "./services/Containerd.ts"
export * as Events from "./services/Events.ts"
export * as ExitHub from "./services/ExitHub.ts"
export * as Images from "./services/Images.ts"
export * as Monitors from "./services/Monitors.ts"
export * as Networks from "./services/Networks.ts"
export * as Registry from "./services/Registry.ts"
export * as Runtime from "./services/Runtime.ts"
export * as Singleflight from "./services/Singleflight.ts"
export * as Live from "./layers/Live.ts"
