/**
 * The daemon's container engine: Docker's container semantics (names, ids,
 * create/start/stop/kill/wait/remove, restart policies, AutoRemove) on the
 * library's `Monitors` and `Runtime`. The HTTP API (`Api.ts`) only translates.
 *
 * This module is the assembly; each concept is a module of `engine/`, as moby
 * lays out `daemon/`: the store (`Store`), the state machine (`State`), the
 * host-config parsers (`HostConfig`), the create table (`CreateFields`), the
 * restart manager (`RestartManager`), streams, exec, views, create and the
 * lifecycle verbs.
 *
 * State lives in containerd: what a container was created with is an extension
 * of the containerd container (`StoredContainer`), written in the same
 * `Containers.Create`; what changes is in labels (the monitors' exit record, the
 * restart count, a manual stop). The in-memory index (names, ids) is rebuilt
 * from the one `Containers.List` of the monitors' recovery at start, so a
 * restarted daemon loses nothing and no second database can disagree with
 * containerd.
 */
import { Context, Deferred, Effect, Layer, Option, PubSub } from "effect"
import { Containerd } from "../services/Containerd.ts"
import type { BackoffQueue } from "../services/BackoffQueue.ts"
import type { Events } from "../services/Events.ts"
import { Images } from "../services/Images.ts"
import { type ContainerExit, ExitHandler, makeMonitors, type MonitorsShape } from "../services/Monitors.ts"
import type { Runtime } from "../services/Runtime.ts"
import { EventLog } from "./EventLog.ts"
import { makeHostsFiles } from "./network/HostsFiles.ts"
import { DockerNetworks } from "./Networks.ts"
import { DockerVolumes } from "./Volumes.ts"
import { removeLeftovers } from "./Leftovers.ts"
import { removeOrphanDirs } from "./LogFiles.ts"
import { makeCommit } from "./engine/Commit.ts"
import { makeCreate, namesOf, userNetworkIds } from "./engine/Create.ts"
import { readPlatform } from "./engine/Security.ts"
import { type Environment, inNamespace, lib, type Notice, targetOf, taskOf } from "./engine/Environment.ts"
import { makeExecs } from "./engine/Exec.ts"
import { makeLifecycle } from "./engine/Lifecycle.ts"
import { makePrune, sizeRw } from "./engine/Prune.ts"
import { makeRename } from "./engine/Rename.ts"
import { makeUpdate } from "./engine/Update.ts"
import { makeConnections } from "./engine/Networking.ts"
import type { EngineOptions, EngineShape } from "./engine/Shape.ts"
import { makeEntry, makeStore, storedOf } from "./engine/Store.ts"
import * as Stats from "./engine/Stats.ts"
import * as Streams from "./engine/Streams.ts"
import * as Top from "./engine/Top.ts"
import * as Archive from "./engine/Archive.ts"
import { mountRootOf, removeLeftoverMounts } from "./engine/ContainerFs.ts"
import * as Views from "./engine/Views.ts"

export type { CommitSource } from "./engine/Commit.ts"
export type {
  AttachOptions,
  AttachSession,
  ContainerFilters,
  EngineOptions,
  EngineShape,
  LogsOptions,
  WaitCondition
} from "./engine/Shape.ts"

/** Builds the engine over the library's services, recovering the daemon's namespace. */
const makeEngine = Effect.fnUntraced(function*(options: EngineOptions) {
  yield* Containerd
  const images = yield* Images
  const eventLog = yield* EventLog

  // What a killed daemon left half-done goes before recovery adopts anything, and before any request.
  yield* removeLeftovers({ namespace: options.namespace })

  // Recovery may report exits before the engine is built: the handler waits for it.
  const built = yield* Deferred.make<(exit: ContainerExit, self: MonitorsShape) => Effect.Effect<void, unknown>>()
  const handler = ExitHandler.of({ handle: (exit, self) => Effect.flatMap(Deferred.await(built), (handle) => handle(exit, self)) })
  const monitors = yield* makeMonitors({ namespaces: [options.namespace] }).pipe(Effect.provideService(ExitHandler, handler))

  const store = makeStore()
  const networks = Option.getOrUndefined(yield* Effect.serviceOption(DockerNetworks))
  const volumes = Option.getOrUndefined(yield* Effect.serviceOption(DockerVolumes))
  // `--add-host NAME:host-gateway`: the default bridge's gateway, as dockerd's HostGatewayIP (fixed for the daemon's life).
  const gateway = networks === undefined ? undefined : (yield* Effect.option(networks.find("bridge"))).pipe(Option.getOrUndefined)?.Gateway
  const hostGateway = () => gateway
  const hosts = makeHostsFiles({
    root: options.logRoot,
    namespace: options.namespace,
    lookup: (id) =>
      Effect.suspend(() => {
        const entry = store.get(id)
        return entry === undefined
          ? Effect.succeed(undefined)
          : Effect.map(userNetworkIds(env), (user) => namesOf(entry.id, entry.name, entry.stored, entry.networks, user))
      }),
    hostGateway,
    networks: Option.fromNullishOr(networks?.library)
  })
  const env: Environment = {
    options,
    monitors,
    store,
    eventLog,
    notices: yield* PubSub.unbounded<Notice>(),
    platform: yield* readPlatform(new Map(Object.entries(options.runtimes ?? {}))),
    hosts,
    hostGateway,
    networks,
    volumes
  }
  // The index, from what the monitors' recovery just listed (one Containers.List
  // for both): every container of ours with its stored config.
  for (const state of yield* monitors.states) {
    if (state.namespace !== options.namespace) continue
    const container = Option.getOrUndefined(yield* inNamespace(env)(monitors.get(state.id)))?.container
    if (container === undefined) continue
    const stored = yield* storedOf(container)
    if (Option.isSome(stored)) env.store.add(yield* makeEntry(container.id, stored.value, container.labels))
  }

  yield* removeOrphanDirs(options.logRoot, new Set(
    (yield* monitors.states).filter((state) => state.namespace === options.namespace).map((state) => state.id)
  ))

  // Copy mounts of stopped containers that a killed daemon left: unmounted before any container can start.
  yield* removeLeftoverMounts(mountRootOf(env))

  const execs = yield* makeExecs(env)
  const lifecycle = yield* makeLifecycle(env, execs)
  yield* lifecycle.restore
  yield* Deferred.succeed(built, lifecycle.handleExit)

  // Members come and go: every hosts file of a network they share follows, for the engine's life.
  yield* hosts.follow
  const commit = makeCommit(env, lifecycle)
  const connections = makeConnections(env)
  return Engine.of({
    create: makeCreate(env, images),
    start: lifecycle.start,
    stop: lifecycle.stop,
    restart: lifecycle.restart,
    kill: lifecycle.kill,
    pause: lifecycle.pause,
    unpause: lifecycle.unpause,
    wait: lifecycle.wait,
    remove: lifecycle.remove,
    rename: makeRename(env),
    update: makeUpdate(env),
    prune: makePrune(env, (id) => lifecycle.remove(id)),
    inspect: Effect.fn("Engine.inspect")(function*(ref: string) {
      return yield* Views.inspect(env, yield* store.find(ref))
    }),
    list: Effect.fn("Engine.list")((listOptions) => Views.list(env, listOptions)),
    top: Effect.fn("Engine.top")(function*(ref: string, psArgs: string | undefined) {
      return yield* Top.top(env, yield* store.find(ref), psArgs)
    }),
    stats: Effect.fn("Engine.stats")(function*(ref, statsOptions) {
      return yield* Stats.stats(env, yield* store.find(ref), statsOptions)
    }),
    statPath: Effect.fn("Engine.statPath")(function*(ref: string, p: string) {
      return yield* Archive.statPath(env, yield* store.find(ref), ref, p)
    }),
    archivePath: Effect.fn("Engine.archivePath")(function*(ref: string, p: string) {
      return yield* Archive.archivePath(env, yield* store.find(ref), ref, p)
    }),
    extractToPath: Effect.fn("Engine.extractToPath")(function*(ref, p, body, extractOptions) {
      return yield* Archive.extractToPath(env, yield* store.find(ref), ref, p, body, extractOptions)
    }),
    attach: Effect.fn("Engine.attach")(function*(ref, attachOptions) {
      return yield* Streams.attach(targetOf(env, yield* store.find(ref)), attachOptions)
    }),
    logs: Effect.fn("Engine.logs")(function*(ref, logsOptions) {
      const target = targetOf(env, yield* store.find(ref))
      return { tty: target.tty, entries: Streams.logs(target, logsOptions) }
    }),
    resize: Effect.fn("Engine.resize")(function*(ref: string, height: number, width: number) {
      const task = yield* taskOf(env, yield* store.find(ref))
      yield* lib(task.resize(width, height))
    }),
    execCreate: Effect.fn("Engine.execCreate")(function*(ref, config) {
      return yield* execs.create(yield* store.find(ref), config)
    }),
    execStartable: Effect.fn("Engine.execStartable")((execId) => execs.startable(execId)),
    execStart: Effect.fn("Engine.execStart")((execId, startOptions) => execs.start(execId, startOptions)),
    execResize: Effect.fn("Engine.execResize")((execId, height, width) => execs.resize(execId, height, width)),
    execInspect: Effect.fn("Engine.execInspect")((execId) => execs.inspect(execId)),
    commitSource: commit.source,
    whilePaused: (id, effect) => Effect.withSpan(commit.whilePaused(id, effect), "Engine.whilePaused"),
    volumeUsers: Effect.sync(() => Views.volumeUsers(env)),
    usersOf: (imageId) => Effect.withSpan(Views.usersOf(env, imageId), "Engine.usersOf"),
    networkConnect: connections.connect,
    networkDisconnect: connections.disconnect,
    names: Effect.sync(() => new Map(store.all().map((entry) => [entry.id, entry.name]))),
    counts: Effect.withSpan(Views.counts(env), "Engine.counts"),
    // Suspended: the containers of each call, not of the engine's start.
    sizesRw: Effect.suspend(() =>
      Effect.forEach(store.all(), (entry) => Effect.map(sizeRw(env, entry), (size) => [entry.id, size] as const), { concurrency: 4 })
    ).pipe(Effect.map((sizes) => new Map(sizes)), Effect.withSpan("Engine.sizesRw"))
  })
})

/** The container engine. */
export class Engine extends Context.Service<Engine, EngineShape>()("effect-containerd/daemon/Engine") {
  /** The engine, with its monitors, over the library's services. */
  static readonly layer = (
    options: EngineOptions
  ): Layer.Layer<Engine, never, Containerd | Runtime | Events | Images | EventLog | BackoffQueue> =>
    Layer.effect(Engine, makeEngine(options))
}
