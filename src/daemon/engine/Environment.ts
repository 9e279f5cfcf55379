/**
 * What every part of the engine works with: its settings, the monitors, the
 * store, the event log, and the few lookups all verbs share (a container's
 * tracked record, its task, its state). Built once by the assembly
 * (`../Engine.ts`) and handed to each concept module.
 */
import { Effect, Option, type PubSub } from "effect"
import type { ContainerdError } from "../../domain/ContainerdError.ts"
import { withNamespace } from "../../services/Containerd.ts"
import type { MonitorsShape } from "../../services/Monitors.ts"
import { conflict, type DockerError, fromLibrary, internal } from "../DockerError.ts"
import type { EventLog } from "../EventLog.ts"
import type { HostsFiles } from "../network/HostsFiles.ts"
import type { DockerNetworksShape } from "../Networks.ts"
import type { DockerVolumesShape } from "../Volumes.ts"
import { logPath } from "../LogFiles.ts"
import { logConfigOf } from "./HostConfig.ts"
import type { Platform } from "./Security.ts"
import type { EngineOptions } from "./Shape.ts"
import { isRunning, type TaskStatus } from "./State.ts"
import type { Entry, Store } from "./Store.ts"
import type { StreamTarget } from "./Streams.ts"

/** A wait's news: an exit (whether or not a policy restart follows) or the removal. */
export type Notice =
  | { readonly _tag: "Exit"; readonly id: string; readonly code: number }
  | { readonly _tag: "Removed"; readonly id: string; readonly code: number }

/** The engine's shared parts. */
export interface Environment {
  readonly options: EngineOptions
  readonly monitors: MonitorsShape
  readonly store: Store
  readonly eventLog: EventLog["Service"]
  /** Exits and removals, for `wait`. */
  readonly notices: PubSub.PubSub<Notice>
  /** What the daemon can grant containers (capabilities, runtimes), learned at its start. */
  readonly platform: Platform
  /** The containers' hosts, resolv.conf and hostname files. */
  readonly hosts: HostsFiles
  /** The default bridge's gateway, which `--add-host NAME:host-gateway` names; undefined without one. */
  readonly hostGateway: () => string | undefined
  /** The daemon's networks; without them (an engine built alone) containers get `none` or `host` only. */
  readonly networks: DockerNetworksShape | undefined
  /** The daemon's volumes; without them (an engine built alone) a named volume in a create is refused. */
  readonly volumes: DockerVolumesShape | undefined
}

/** Runs in the daemon's namespace, whatever the client's default. */
export const inNamespace = (env: Environment) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  withNamespace(effect, env.options.namespace)

/** A library failure as the API answers it. */
export const lib = <A, R>(effect: Effect.Effect<A, ContainerdError, R>, context?: string) =>
  Effect.mapError(effect, (error) => fromLibrary(error, context))

/** Runs file work; a failure is a 500 that names what failed. */
export const files = (what: string, f: () => void) =>
  Effect.try({ try: f, catch: (cause) => internal(`${what}: ${cause instanceof Error ? cause.message : String(cause)}`, cause) })

/** Publishes a container event (Docker's attributes: its labels, image and name). */
export const publish = (env: Environment, entry: Entry, action: string, extra?: Record<string, string>) =>
  env.eventLog.publish({
    type: "container",
    action,
    id: entry.id,
    attributes: { ...entry.stored.Config.Labels, image: entry.stored.Image, name: entry.name, ...extra }
  })

/** What the monitors track of the container, if anything. */
export const trackedOf = (env: Environment, entry: Entry) =>
  Effect.map(inNamespace(env)(env.monitors.get(entry.id)), Option.getOrUndefined)

/** What the monitors say of its task. */
export const taskStatusOf = (env: Environment, entry: Entry): Effect.Effect<TaskStatus> =>
  Effect.map(trackedOf(env, entry), (tracked) => tracked?.state.status)

/** Its task while it runs; 409 when it does not. */
export const taskOf = (env: Environment, entry: Entry) =>
  Effect.flatMap(trackedOf(env, entry), (t) =>
    t?.task === undefined || !isRunning(t.state.status)
      ? Effect.fail(conflict(`Container ${entry.id} is not running`))
      : Effect.succeed(t.task))

/** Sets (or, with "", removes) labels on its containerd container, through the container's handle. */
export const setLabels = (env: Environment, entry: Entry, labels: Record<string, string>): Effect.Effect<void, DockerError> =>
  Effect.flatMap(trackedOf(env, entry), (tracked) =>
    tracked?.container === undefined
      ? Effect.fail(internal(`container ${entry.id} is not tracked: its labels cannot be set`))
      : lib(inNamespace(env)(tracked.container.setLabels(labels))).pipe(Effect.asVoid))

/** Its json-file log. */
export const logPathOf = (env: Environment, entry: Entry) => logPath(env.options.logRoot, entry.id)

/** Whether the shim logger writes its log (no stdin, no terminal: nothing else needs the daemon). */
export const shimLogged = (env: Environment, entry: Entry) =>
  env.options.shimLogger !== undefined && entry.stored.Config.OpenStdin !== true && entry.stored.Config.Tty !== true

/** What its streams need to know of it. */
export const targetOf = (env: Environment, entry: Entry): StreamTarget => ({
  id: entry.id,
  output: entry.output,
  logPath: logPathOf(env, entry),
  logConfig: logConfigOf(entry.stored),
  tty: entry.stored.Config.Tty === true,
  openStdin: entry.stored.Config.OpenStdin === true,
  stdinOnce: entry.stored.Config.StdinOnce === true,
  shimLogged: shimLogged(env, entry)
})
