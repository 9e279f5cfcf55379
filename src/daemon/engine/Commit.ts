/**
 * The engine's side of `docker commit` (moby's `daemon/commit.go`): what a
 * commit reads of a container (its config as dockerd's `container.Config`
 * holds it, its rootfs snapshot over its image), and the container paused
 * while its changes are read, as `CreateImageFromContainer` pauses it. The
 * image itself is made by the library (`Images.commit`), from the daemon's
 * images service.
 */
import { Effect } from "effect"
import type { ContainerDefaults } from "../../domain/Image.ts"
import type { CommitTarget } from "../../services/Images.ts"
import { conflict, type DockerError } from "../DockerError.ts"
import { type Environment, publish, trackedOf } from "./Environment.ts"
import { isPaused, isRunning } from "./State.ts"

/** What a commit reads of a container. */
export interface CommitSource {
  readonly id: string
  /**
   * Its config as dockerd merges a commit's over: the create request completed
   * by the image's (its Cmd, Env, Labels, ...), and the image's ExposedPorts,
   * Volumes and Healthcheck, which a container here cannot set.
   */
  readonly config: ContainerDefaults
  /** Its rootfs snapshot and the image it is over. */
  readonly target: CommitTarget
  /** Publishes the container's `commit` event with `attributes` besides its own. */
  readonly published: (attributes: Record<string, string>) => Effect.Effect<void>
}

/** The commit operations over the engine's parts; `pause`/`unpause` are the lifecycle's (state, task, events). */
export const makeCommit = (
  env: Environment,
  lifecycle: { readonly pause: (ref: string) => Effect.Effect<void, DockerError>; readonly unpause: (ref: string) => Effect.Effect<void, DockerError> }
) => {
  const source = Effect.fn("Engine.commitSource")(function*(ref: string) {
    const entry = yield* env.store.find(ref)
    if (entry.phase._tag === "Removing") {
      return yield* Effect.fail(conflict(`You cannot commit container ${entry.id} which is being removed`))
    }
    const tracked = yield* trackedOf(env, entry)
    if (tracked?.container === undefined) return yield* Effect.fail(conflict(`You cannot commit container ${entry.id} which is Dead`))
    const { config } = entry
    const image = entry.stored.ImageConfig
    const info = tracked.container.info
    return {
      id: entry.id,
      config: {
        User: config.User,
        Env: config.Env,
        Cmd: config.Cmd,
        Entrypoint: config.Entrypoint,
        WorkingDir: config.WorkingDir,
        Labels: config.Labels,
        ...(config.StopSignal === "" ? {} : { StopSignal: config.StopSignal }),
        ...(image?.ExposedPorts ? { ExposedPorts: image.ExposedPorts } : {}),
        ...(image?.Volumes ? { Volumes: image.Volumes } : {}),
        ...(image?.Healthcheck !== undefined && image.Healthcheck !== null ? { Healthcheck: image.Healthcheck } : {})
      },
      target: { image: info.image, snapshotter: info.snapshotter, snapshotKey: info.snapshotKey },
      published: (attributes: Record<string, string>) => publish(env, entry, "commit", attributes)
    } satisfies CommitSource
  })

  /**
   * Runs `effect` with the container paused if it is running and not paused
   * already, and unpauses it after, whatever the result. As dockerd, a pause or
   * unpause that fails does not fail the commit (it is logged).
   */
  const whilePaused = <A, E, R>(id: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.gen(function*() {
      const entry = env.store.get(id)
      const status = entry === undefined ? undefined : (yield* trackedOf(env, entry))?.state.status
      if (entry === undefined || !isRunning(status) || isPaused(status, entry.phase)) return yield* effect
      const paused = yield* lifecycle.pause(id).pipe(
        Effect.as(true),
        Effect.catch((error) => Effect.as(Effect.logWarning(`commit of ${id}: could not pause it`, error), false))
      )
      if (!paused) return yield* effect
      return yield* effect.pipe(
        Effect.ensuring(lifecycle.unpause(id).pipe(
          Effect.catch((error) => Effect.logWarning(`commit of ${id}: could not unpause it`, error))
        ))
      )
    })

  return { source, whilePaused }
}
