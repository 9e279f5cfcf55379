/**
 * `docker container prune`, as moby's `daemon/prune.go`: every container that
 * is not running (nor paused, restarting, or being removed) and that the
 * filters select is removed as `docker rm` would, one at a time; one that
 * cannot be is skipped and logged, as dockerd does. The space reclaimed is
 * what those containers wrote (their rootfs snapshot's usage, read before they
 * go), and a `prune` event reports it.
 *
 * The size of a container's writable layer (`SizeRw`) is also what `system df`
 * shows: it is read here, from the library's `Container.usage`.
 */
import { Effect } from "effect"
import type { DockerError } from "../DockerError.ts"
import { type Environment, inNamespace, trackedOf } from "./Environment.ts"
import type { Entry } from "./Store.ts"
import { stateOf } from "./Views.ts"

/** What the container wrote to its rootfs (Docker's `SizeRw`); 0 when its snapshot cannot be measured (logged). */
export const sizeRw = (env: Environment, entry: Entry): Effect.Effect<number> =>
  Effect.flatMap(trackedOf(env, entry), (tracked) =>
    tracked?.container === undefined ? Effect.succeed(0) : inNamespace(env)(tracked.container.usage).pipe(
      Effect.map(({ size }) => size),
      Effect.catch((error) => Effect.as(Effect.logWarning(`container ${entry.id}: the size of its rootfs cannot be read`, error), 0))
    ))

/** What a prune removed, in dockerd's shape (`ContainersDeleted` is null when none was). */
export interface ContainersPruneReport {
  readonly ContainersDeleted: ReadonlyArray<string> | null
  readonly SpaceReclaimed: number
}

/** `POST /containers/prune`: removes the stopped containers `select` takes (by creation time in ms and labels). */
export const makePrune = (
  env: Environment,
  remove: (ref: string) => Effect.Effect<void, DockerError>
) =>
  Effect.fn("Engine.prune")(function*(select: (created: number, labels: Readonly<Record<string, string>>) => boolean) {
    const deleted: Array<string> = []
    let reclaimed = 0
    for (const entry of env.store.all()) {
      const state = yield* stateOf(env, entry)
      if (state.Running || state.Restarting || state.Status === "removing") continue
      if (!select(Date.parse(entry.stored.Created), entry.stored.Config.Labels ?? {})) continue
      const size = yield* sizeRw(env, entry)
      const removed = yield* remove(entry.id).pipe(
        Effect.as(true),
        Effect.catch((error) => Effect.as(Effect.logWarning(`failed to prune container ${entry.id}: ${error.message}`), false))
      )
      if (!removed) continue
      deleted.push(entry.id)
      reclaimed += size
    }
    yield* env.eventLog.publish({ type: "container", action: "prune", id: "", attributes: { reclaimed: String(reclaimed) } })
    return { ContainersDeleted: deleted.length === 0 ? null : deleted, SpaceReclaimed: reclaimed } satisfies ContainersPruneReport
  })
