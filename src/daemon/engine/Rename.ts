/**
 * `docker rename`, as moby's `daemon/rename.go`: the new name is held while it
 * is recorded (the name label on the containerd container, which the index is
 * rebuilt from at start), then the index follows, the hosts files of the
 * container's user networks are rewritten with it, and a `rename` event names
 * the old one. Refusals come before anything changes, in dockerd's order and
 * words: an empty name, a missing container, the same name, a bad name, a taken
 * one (409).
 */
import { Effect } from "effect"
import { badRequest, conflict, DockerError } from "../DockerError.ts"
import { type Environment, publish, setLabels } from "./Environment.ts"
import { checkName, DaemonLabels } from "./Store.ts"

/** `POST /containers/{id}/rename?name=`. */
export const makeRename = (env: Environment) =>
  Effect.fn("Engine.rename")(function*(ref: string, newName: string | undefined) {
    if (newName === undefined || newName === "") return yield* badRequest("Neither old nor new names may be empty")
    const entry = yield* env.store.find(ref)
    // As moby's container lock: no start or removal is half-way while the name changes.
    yield* entry.lock.withPermits(1)(Effect.gen(function*() {
      const oldName = entry.name
      const bare = newName.replace(/^\//, "")
      if (bare === oldName) return yield* badRequest("Renaming a container with the same name as its current name")
      if (entry.phase._tag === "Removing") {
        return yield* conflict(`Container ${entry.id} is marked for removal and cannot be renamed`)
      }
      // dockerd's reserveName: the name checked with its `/`, and both refusals prefixed.
      yield* Effect.flatMap(checkName(`/${bare}`), () => env.store.rename(entry, bare, setLabels(env, entry, { [DaemonLabels.name]: bare }))).pipe(
        Effect.mapError((error) =>
          error.status === 400 || error.status === 409
            ? new DockerError({ status: error.status, message: `Error when allocating new name: ${error.message}` })
            : error
        )
      )
      yield* env.hosts.refreshAll([entry.id])
      yield* publish(env, entry, "rename", { oldName: `/${oldName}` })
    }))
  })
