/**
 * The container store, as moby's `daemon/names.go` and its container index: every
 * container of the daemon by id, by name and by unique id prefix, with the names
 * being taken by creates in flight. Nothing here is a second database: what a
 * container was created with is an extension of the containerd container
 * (`StoredContainer`), what changes is in its labels, and the index is rebuilt
 * from them when the daemon starts.
 */
import * as crypto from "node:crypto"
import { type Deferred, Effect, Option, Schema, Semaphore } from "effect"
import { packJson, unpackJson } from "../../domain/Any.ts"
import type { Any } from "../../gen/google/protobuf/any.ts"
import type { Container } from "../../services/Runtime.ts"
import { badRequest, conflict, type DockerError, notFound } from "../DockerError.ts"
import { StoredContainer } from "../Model.ts"
import { effectiveConfig, type EffectiveConfig } from "./Config.ts"
import type { HealthState } from "./Health.ts"
import { policyOf } from "./HostConfig.ts"
import { type ContainerNetwork, NETWORKS_LABEL, networksOfLabels } from "./Networking.ts"
import { makeRestartManager, type RestartManager } from "./RestartManager.ts"
import { idle, type Phase } from "./State.ts"
import { type ContainerOutput, makeOutput } from "./Streams.ts"

/** Labels the daemon keeps on its containerd containers (besides the monitors'). */
export const DaemonLabels = {
  /**
   * The container's name, without the leading `/` (for people reading `ctr containers ls` too): the
   * one it has now, which a rename changes; `StoredContainer.Name` stays the one it was created with.
   */
  name: "effect-containerd.io/docker.name",
  /** How often a restart policy restarted it. */
  restartCount: "effect-containerd.io/docker.restart-count",
  /** Set when it was stopped by hand: `always` and `unless-stopped` leave it stopped. */
  stopped: "effect-containerd.io/docker.stopped"
} as const

const STORED_EXTENSION = "effect-containerd.io/docker"
const STORED_TYPE_URL = "types.effect-containerd.io/docker/StoredContainer"
const decodeStored = Schema.decodeUnknownOption(StoredContainer)

/** The extensions that store `stored` on the containerd container, written by its create. */
export const storedExtensions = (stored: StoredContainer): Record<string, Any> => ({
  [STORED_EXTENSION]: packJson(STORED_TYPE_URL, stored)
})

/** What a containerd container stores of its Docker container; none when it is not one of ours. */
export const storedOf = (container: Container): Effect.Effect<Option.Option<StoredContainer>> => {
  const extension = container.info.extensions[STORED_EXTENSION]
  return extension === undefined ? Effect.succeed(Option.none()) : unpackJson(STORED_TYPE_URL, extension).pipe(
    Effect.map(decodeStored),
    // An extension we cannot read is not a container of ours to manage: it is left alone, never
    // deleted, and logged, since `docker ps` will not show it.
    Effect.catch((error) =>
      Effect.as(
        Effect.logWarning(`container ${container.id}: its stored Docker config cannot be read, so it is left alone`, error),
        Option.none<StoredContainer>()
      )
    )
  )
}

/** A container as the engine knows it: what it was created with, its state beyond the task, its streams. */
export interface Entry {
  readonly id: string
  /** Its name now; changed only by `Store.rename`. */
  name: string
  readonly stored: StoredContainer
  /** Its config completed by its image's. */
  readonly config: EffectiveConfig
  /** The engine's side of its state; changed only through `State.transition`. */
  phase: Phase
  readonly restarts: RestartManager
  readonly output: ContainerOutput
  /** Completed once the engine has handled the current run's exit (so the next start may come). */
  handled: Deferred.Deferred<void> | undefined
  /** Its health since its first start with a healthcheck (`Health.ts`); in memory only. */
  health: HealthState | undefined
  /** The networks it joins at each start (none: it is not on networks, but `none`, `host` or another's). */
  networks: ReadonlyArray<ContainerNetwork> | undefined
  /**
   * The container's own lock, as moby's container lock: a start holds it from its checks until its
   * task runs, and a removal takes it to mark itself under way, so neither sees the other half-done.
   */
  readonly lock: Semaphore.Semaphore
}

/** A new entry for a container, resuming what its labels recorded. */
export const makeEntry = (id: string, stored: StoredContainer, labels: Readonly<Record<string, string>>): Effect.Effect<Entry> =>
  Effect.map(makeOutput, (output) => ({
    id,
    name: labels[DaemonLabels.name] ?? stored.Name.replace(/^\//, ""),
    stored,
    config: effectiveConfig(stored.Config, stored.ImageConfig),
    phase: idle,
    restarts: makeRestartManager(policyOf(stored), {
      count: Number(labels[DaemonLabels.restartCount] ?? 0) || 0,
      manuallyStopped: labels[DaemonLabels.stopped] === "true"
    }),
    output,
    handled: undefined,
    health: undefined,
    networks: labels[NETWORKS_LABEL] === undefined ? undefined : networksOfLabels(labels),
    lock: Semaphore.makeUnsafe(1)
  }))

/** Docker's rule for names (daemon/names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`). */
const NAME_PATTERN = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$/

/** A requested name, checked: without its `/`, or `undefined` to generate one. */
export const checkName = (name: string | undefined): Effect.Effect<string | undefined, DockerError> => {
  if (name === undefined || name === "") return Effect.succeed(undefined)
  return NAME_PATTERN.test(name)
    ? Effect.succeed(name.replace(/^\//, ""))
    : Effect.fail(badRequest(`Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`))
}

const adjectives = ["brave", "calm", "eager", "fervent", "gentle", "happy", "keen", "lucid", "nifty", "quirky", "sharp", "vibrant"]
const scientists = ["curie", "darwin", "euler", "galois", "hopper", "kepler", "lovelace", "noether", "pike", "ritchie", "turing", "wozniak"]

/** The daemon's containers, indexed. */
export interface Store {
  readonly all: () => ReadonlyArray<Entry>
  readonly get: (id: string) => Entry | undefined
  readonly add: (entry: Entry) => void
  readonly delete: (entry: Entry) => void
  /** The entry a ref names: full id, name (with or without `/`), or unique id prefix. */
  readonly find: (ref: string) => Effect.Effect<Entry, DockerError>
  /**
   * Runs `create` with `name` (or a generated one) held for it, so two creates
   * cannot take the same name; 409 when it is in use.
   */
  readonly withName: <A, E, R>(
    name: string | undefined,
    create: (name: string) => Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | DockerError, R>
  /** Gives `entry` the name `name` once `record` (which stores it) succeeds, holding the name meanwhile; 409 when it is in use. */
  readonly rename: <E, R>(entry: Entry, name: string, record: Effect.Effect<void, E, R>) => Effect.Effect<void, E | DockerError, R>
}

/** An empty store. */
export const makeStore = (): Store => {
  const byId = new Map<string, Entry>()
  const byName = new Map<string, string>()
  /** Names taken by creates in flight. */
  const reserved = new Set<string>()
  const taken = (name: string) => byName.has(name) || reserved.has(name)
  const generateName = (): string => {
    for (;;) {
      const pick = (xs: ReadonlyArray<string>) => xs[crypto.randomInt(xs.length)]!
      const name = `${pick(adjectives)}_${pick(scientists)}${crypto.randomInt(100)}`
      if (!taken(name)) return name
    }
  }
  const store: Store = {
    all: () => [...byId.values()],
    get: (id) => byId.get(id),
    add: (entry) => {
      byId.set(entry.id, entry)
      byName.set(entry.name, entry.id)
    },
    delete: (entry) => {
      byId.delete(entry.id)
      if (byName.get(entry.name) === entry.id) byName.delete(entry.name)
    },
    find: (ref) =>
      Effect.suspend(() => {
        const exact = byId.get(ref) ?? byId.get(byName.get(ref.replace(/^\//, "")) ?? "")
        if (exact !== undefined) return Effect.succeed(exact)
        if (ref.length > 0 && /^[0-9a-f]+$/.test(ref)) {
          const matches = [...byId.keys()].filter((id) => id.startsWith(ref))
          if (matches.length === 1) return Effect.succeed(byId.get(matches[0]!)!)
          if (matches.length > 1) return Effect.fail(badRequest(`multiple IDs found with provided prefix: ${ref}`))
        }
        return Effect.fail(notFound(`No such container: ${ref}`))
      }),
    withName: <A, E, R>(requested: string | undefined, create: (name: string) => Effect.Effect<A, E, R>) =>
      Effect.suspend((): Effect.Effect<A, E | DockerError, R> => {
        const name = requested ?? generateName()
        if (taken(name)) {
          const holder = byName.get(name) ?? "(being created)"
          return Effect.fail(conflict(
            `Conflict. The container name "/${name}" is already in use by container "${holder}". You have to remove (or rename) that container to be able to reuse that name.`
          ))
        }
        reserved.add(name)
        return create(name).pipe(Effect.ensuring(Effect.sync(() => reserved.delete(name))))
      }),
    rename: (entry, name, record) =>
      store.withName(name, () =>
        Effect.tap(record, () =>
          Effect.sync(() => {
            if (byName.get(entry.name) === entry.id) byName.delete(entry.name)
            entry.name = name
            byName.set(name, entry.id)
          })))
  }
  return store
}
