/**
 * What a previous process of the daemon's left half-done when it was killed
 * (SIGKILL, OOM, power), found and removed at start, before the engine
 * recovers its containers and before any request: the daemon owns its
 * containerd namespace (one daemon per data root), so whatever of these is
 * there was left by one of its own.
 *
 * - A pull's or import's lease (`PullLeases`): containerd keeps what it pins
 *   (the partial downloads too) until it expires, a day later. Deleted with a
 *   synchronous collection, as a failed pull's.
 * - A container whose create did not finish: the runtime makes the record, then
 *   its rootfs snapshot, so a record of ours without its snapshot is one (it
 *   could never start: containerd answers 404 for its rootfs); so is one still
 *   marked `RuntimeLabels.creating` (its spec's user not yet the image's answer).
 * - A task whose container is gone (a removal that raced a start, in daemons
 *   before the container lock): its shim runs on, and containerd will not touch
 *   a task without its container. A placeholder record of the same id lets it
 *   be killed and deleted, then goes too.
 *
 * Each removal is logged. A failure is logged and left for the next start: what
 * is left is a leak, never a reason not to serve.
 */
import { Duration, Effect, Stream } from "effect"
import type { ContainerdError } from "../domain/ContainerdError.ts"
import { Kind } from "../gen/containerd/services/snapshots/v1/snapshots.ts"
import { bareRecord } from "../internal/BareRecord.ts"
import { Containerd, withNamespace } from "../services/Containerd.ts"
import { PullLeases } from "../services/Images.ts"
import { MonitorLabels } from "../services/Monitors.ts"
import { RuntimeLabels } from "../services/Runtime.ts"

/** How long a task killed at start may take to exit before it is left for the next start. */
const KILL_TIMEOUT = Duration.seconds(10)

/** What to sweep and where. */
export interface LeftoverOptions {
  readonly namespace: string
  /** The snapshotter the daemon's containers use; default overlayfs. */
  readonly snapshotter?: string | undefined
  /** The runtime a placeholder record names to reach an orphan task's shim; default io.containerd.runc.v2. */
  readonly runtime?: string | undefined
}

/** The label of a placeholder record, so one whose removal failed is found (and removed) at the next start. */
export const PLACEHOLDER = "effect-containerd.io/placeholder"

const ignoreNotFound = <A, R>(effect: Effect.Effect<A, ContainerdError, R>) =>
  effect.pipe(Effect.asVoid, Effect.catchReason("ContainerdError", "NotFound", () => Effect.void))

/** Removes what a killed daemon of this namespace left half-done, logging each thing removed. */
export const removeLeftovers = Effect.fn("Daemon.removeLeftovers")(function*(options: LeftoverOptions) {
  const client = yield* Containerd
  const snapshotter = options.snapshotter ?? "overlayfs"
  const attempt = (what: string, effect: Effect.Effect<void, ContainerdError>) =>
    effect.pipe(
      Effect.andThen(Effect.logInfo(`removed ${what}`)),
      Effect.catch((error) => Effect.logWarning(`could not remove ${what}; the next start tries again`, error))
    )

  const { containers } = yield* client.containers.list({})
  const containerIds = new Set(containers.map((c) => c.id))
  const placeholders = new Set(containers.filter((c) => c.labels[PLACEHOLDER] === "true").map((c) => c.id))

  // Tasks whose container is gone: a placeholder record lets containerd reach the shim.
  const { tasks } = yield* client.tasks.list({})
  yield* Effect.forEach(tasks.filter((t) => !containerIds.has(t.id) || placeholders.has(t.id)), (task) =>
    attempt(
      `task ${task.id} (pid ${task.pid}) of a container that is gone`,
      Effect.gen(function*() {
        if (!placeholders.has(task.id)) {
          yield* client.containers.create({ container: bareRecord(task.id, { [PLACEHOLDER]: "true" }, options.runtime) })
        }
        yield* Effect.gen(function*() {
          yield* ignoreNotFound(client.tasks.kill({ containerId: task.id, signal: 9, all: true }))
          yield* ignoreNotFound(client.tasks.wait({ containerId: task.id }, { timeout: KILL_TIMEOUT }))
          yield* ignoreNotFound(client.tasks.delete({ containerId: task.id }))
        }).pipe(
          // Harmless if it fails: the record is labelled a placeholder, and the next start removes it.
          Effect.ensuring(Effect.ignore(client.containers.delete({ id: task.id })))
        )
      })
    ), { discard: true })

  // Placeholders an earlier sweep could not remove (labelled, so the next start finds them; those with a task went with it above).
  const taskIds = new Set(tasks.map((t) => t.id))
  yield* Effect.forEach([...placeholders].filter((id) => !taskIds.has(id)), (id) =>
    attempt(`placeholder record ${id}`, ignoreNotFound(client.containers.delete({ id }))), {
    discard: true
  })

  // Our containers without their rootfs snapshot: creates that did not finish.
  const active = yield* client.snapshots.list({ snapshotter, filters: [] }).pipe(
    Stream.runCollect,
    Effect.map((chunks) => new Set([...chunks].flatMap((r) => r.info).filter((i) => i.kind === Kind.ACTIVE).map((i) => i.name)))
  )
  const snapshotless = (c: (typeof containers)[number]) =>
    c.snapshotKey !== "" && c.snapshotter === snapshotter && !active.has(c.snapshotKey)
  const unfinished = containers.filter((c) =>
    c.labels[MonitorLabels.managed] === "true" && (snapshotless(c) || c.labels[RuntimeLabels.creating] === "true")
  )
  yield* Effect.forEach(unfinished, (container) =>
    attempt(
      `container ${container.id}: its create did not finish (${snapshotless(container) ? "it has no rootfs snapshot" : "it is still marked as being created"})`,
      Effect.gen(function*() {
        // Snapshot first, while the record still references it (as the runtime deletes).
        if (!snapshotless(container)) {
          yield* ignoreNotFound(client.snapshots.remove({ snapshotter: container.snapshotter, key: container.snapshotKey }))
        }
        yield* client.containers.delete({ id: container.id })
      })
    ), { discard: true })

  // Leases of our pulls and imports: the one that is deleted last collects what they pinned.
  const { leases } = yield* client.leases.list({ filters: [] })
  const ours = leases.filter((l) => l.labels[PullLeases.label] === PullLeases.value || l.id.startsWith(PullLeases.idPrefix))
  yield* Effect.forEach(ours, (lease) =>
    attempt(
      `lease ${lease.id} of a pull that did not finish, and what it kept`,
      ignoreNotFound(client.leases.delete({ id: lease.id, sync: true }))
    ), { discard: true })
}, (effect, options) => withNamespace(effect, options.namespace), Effect.catch((error) =>
  // A containerd that cannot even list is the recovery's problem (it retries); the sweep waits for the next start.
  Effect.logWarning("could not look for what a killed daemon left; the next start looks again", error)
))
