/**
 * What a namespace of the shared containerd holds beyond its images: the
 * containers, tasks, active (writable) snapshots and leases containerd knows of,
 * and the shims still serving a task bundle of the namespace (found by PID from
 * containerd's state directory, never by name: see Processes.ts). Tests of
 * races and crashes count these to show that nothing was left behind.
 */
import { Effect, Stream } from "effect"
import { Containerd, withNamespace } from "../../src/services/Containerd.ts"
import { Kind } from "../../src/gen/containerd/services/snapshots/v1/snapshots.ts"
import { bundlesOf } from "./Processes.ts"
import { shared } from "./SharedContainerd.ts"

/** What is left in a namespace, by kind, as ids (shims: bundle ids with a live shim). */
export interface Debris {
  readonly containers: ReadonlyArray<string>
  readonly tasks: ReadonlyArray<string>
  readonly snapshots: ReadonlyArray<string>
  readonly leases: ReadonlyArray<string>
  readonly shims: ReadonlyArray<string>
}

/**
 * Everything of `namespace` a container run can leave: an empty `Debris` when nothing is left.
 * With `only`, just what is named by those ids (a namespace other tests share, as dockerd's).
 */
export const debrisOf = (namespace: string, only?: ReadonlySet<string>): Effect.Effect<Debris, unknown, Containerd> =>
  Effect.gen(function*() {
    const client = yield* Containerd
    const { containers } = yield* client.containers.list({})
    const { tasks } = yield* client.tasks.list({})
    const snapshots = yield* client.snapshots.list({ snapshotter: "overlayfs", filters: [] }).pipe(
      Stream.runCollect,
      Effect.map((chunks) => [...chunks].flatMap((r) => r.info).filter((i) => i.kind === Kind.ACTIVE).map((i) => i.name))
    )
    const { leases } = yield* client.leases.list({})
    const shims = bundlesOf(shared().state).filter((b) => b.namespace === namespace && b.shimPids.length > 0).map((b) => b.id)
    const ours = (ids: ReadonlyArray<string>) => ids.filter((id) => only === undefined || only.has(id)).sort()
    return {
      containers: ours(containers.map((c) => c.id)),
      tasks: ours(tasks.map((t) => t.id)),
      snapshots: ours(snapshots),
      leases: ours(leases.map((l) => l.id)),
      shims: ours(shims)
    }
  }).pipe(withNamespace(namespace))

/** A `Debris` with nothing in it. */
export const noDebris: Debris = { containers: [], tasks: [], snapshots: [], leases: [], shims: [] }

/** The content of `namespace`: its blobs (digests) and its ingests in progress (refs). */
export const contentOf = (namespace: string) =>
  Effect.gen(function*() {
    const client = yield* Containerd
    const blobs = yield* client.content.list({ filters: [] }).pipe(
      Stream.runCollect,
      Effect.map((chunks) => [...chunks].flatMap((r) => r.info).map((i) => i.digest).sort())
    )
    const { statuses } = yield* client.content.listStatuses({ filters: [] })
    return { blobs, ingests: statuses.map((s) => s.ref).sort() }
  }).pipe(withNamespace(namespace))
