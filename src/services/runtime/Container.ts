/**
 * A container, as containerd's Go client has it (`container.go`): its record
 * and rootfs snapshot, its labels, and the handle to its task — a new one
 * (`newTask`) or the one it has (`task`).
 *
 * The handle keeps what it learned (the record, the image, the rootfs mounts)
 * so that no call reloads it, and it knows whether it made a task it has not
 * deleted, or is making one: a container with a task cannot be deleted
 * (containerd would delete the record and leave the task's shim running, out of
 * reach: it touches no task without its container).
 */
import { type Cause, Effect, Exit, Option, Scope } from "effect"
import { OciSpecTypeUrl, packJson } from "../../domain/Any.ts"
import { type ContainerdError, failedPrecondition, notFound } from "../../domain/ContainerdError.ts"
import { exitedOf } from "../../domain/ExitStatus.ts"
import { validateLabels } from "../../domain/Labels.ts"
import { applyOptions, type Spec, type SpecOption } from "../../domain/OciSpec.ts"
import { Stdio } from "../../domain/Stdio.ts"
import type { Container as ContainerRecord } from "../../gen/containerd/services/containers/v1/containers.ts"
import type { Mount as SnapshotMount } from "../../gen/containerd/types/mount.ts"
import type { Any } from "../../gen/google/protobuf/any.ts"
import { withNamespace } from "../Containerd.ts"
import type { ResolvedImage } from "../Images.ts"
import type { Attachment, AttachOptions } from "../Networks.ts"
import type { RuntimeEnv } from "./Env.ts"
import { holdAttachment, joinsNetns, storedNetworkOf, validateNetwork } from "./Network.ts"
import { prepareProcess } from "./Process.ts"
import { makeTask, statusSeenOf, type Task } from "./Task.ts"

/** What a container record says, decoded. */
export interface ContainerInfo {
  readonly id: string
  readonly namespace: string
  readonly image: string
  readonly labels: Readonly<Record<string, string>>
  readonly runtime: string
  readonly snapshotter: string
  readonly snapshotKey: string
  readonly createdAt: Date | undefined
  readonly updatedAt: Date | undefined
  /** The OCI spec as stored (JSON). */
  readonly spec: unknown
  /** The client data stored with the record (`CreateContainerOptions.extensions`). */
  readonly extensions: Readonly<Record<string, Any>>
}

/** A container: a record and its rootfs snapshot, and the handle to its task. */
export interface Container {
  readonly id: string
  /** The record as last known to this handle. */
  readonly info: ContainerInfo
  /** The image as resolved at creation (absent for a loaded container). */
  readonly image: ResolvedImage | undefined
  /** The labels as last known to this handle. */
  readonly labels: Readonly<Record<string, string>>
  /** Sets (or, with an empty value, removes) the given labels; returns them all. */
  readonly setLabels: (labels: Readonly<Record<string, string>>) => Effect.Effect<Readonly<Record<string, string>>, ContainerdError>
  /**
   * Creates the task (its init process, not started). `spec` changes the stored
   * spec first (one `Containers.Update`), for what is only known at the start:
   * a namespace joined from another container's running process. A container
   * on networks is attached first (no RPC), for the task's life.
   */
  readonly newTask: (options?: NewTaskOptions) => Effect.Effect<Task, ContainerdError, Scope.Scope>
  /**
   * Attaches to the container's existing task (without stdio). It registers for
   * the task's exit before asking containerd about it, so an exit in between is
   * not lost. A network attachment recorded for it is adopted, for the task's life.
   *
   * Gotcha: the caller's scope then owns that attachment: closing it releases
   * the network of a task that may still run, unless `keepAttachment` was called.
   */
  readonly task: Effect.Effect<Task, ContainerdError, Scope.Scope>
  /** Deletes the container and (by default) its rootfs snapshot; its task must be deleted first. */
  readonly delete: (options?: { readonly snapshotCleanup?: boolean }) => Effect.Effect<void, ContainerdError>
  /**
   * What its rootfs snapshot holds beyond its parent (`Snapshots.Usage`: the
   * snapshotter walks the snapshot's own directory), so what the container wrote
   * (Docker's `SizeRw`). Costs a walk of those files: not for hot paths.
   */
  readonly usage: Effect.Effect<{ readonly size: number; readonly inodes: number }, ContainerdError>
  /** How its rootfs snapshot is mounted (`Snapshots.Mounts`, asked once): to read or write it while no task has it mounted. */
  readonly mounts: Effect.Effect<ReadonlyArray<SnapshotMount>, ContainerdError>
}

/** How a task is created: its init's stdio, a last change to the spec, and its networks. */
export interface NewTaskOptions {
  readonly stdio?: Stdio | undefined
  readonly spec?: SpecOption | undefined
  /**
   * The networks this task is attached to, instead of those the container was
   * created with (connected or disconnected while it was stopped). Only for a
   * container created on networks: its spec joins the namespace they are set up in.
   */
  readonly network?: AttachOptions | undefined
  /**
   * Runs once the task's networks are attached and before the task is created
   * (its process cannot run yet): what must know its addresses first, such as
   * the hosts file it will read. A failure fails the task's creation.
   */
  readonly onAttached?: ((attachment: Attachment) => Effect.Effect<void, ContainerdError>) | undefined
}

const infoOf = (namespace: string, record: ContainerRecord, spec: unknown): ContainerInfo => ({
  id: record.id,
  namespace,
  image: record.image,
  labels: record.labels,
  runtime: record.runtime?.name ?? "",
  snapshotter: record.snapshotter,
  snapshotKey: record.snapshotKey,
  createdAt: record.createdAt,
  updatedAt: record.updatedAt,
  spec,
  extensions: record.extensions
})

/** The handle of a container record (with its decoded spec) and what the caller already knows of it. */
export const makeContainer = (
  env: RuntimeEnv,
  namespace: string,
  record: ContainerRecord,
  spec: unknown,
  learned: { readonly mounts?: ReadonlyArray<SnapshotMount>; readonly image?: ResolvedImage }
): Container => {
  const { client, hub } = env
  const id = record.id
  const rpc = withNamespace(namespace)
  let info = infoOf(namespace, record, spec)
  let mountsLearned = learned.mounts
  /** Whether this handle created a task that it has not deleted. */
  let liveTask: Task | undefined
  /** `newTask`s of this handle in flight (until the task is tracked, or the create failed). */
  let creatingTasks = 0
  const mounts = Effect.suspend(() =>
    mountsLearned !== undefined
      ? Effect.succeed(mountsLearned)
      : rpc(Effect.map(client.snapshots.mounts({ snapshotter: info.snapshotter, key: info.snapshotKey }), (r) => {
        mountsLearned = r.mounts
        return r.mounts
      }))
  )
  const terminal = (spec as { process?: { terminal?: boolean } } | undefined)?.process?.terminal === true
  let currentSpec = spec
  const taskParams = () => ({ namespace, containerId: id, spec: currentSpec, mounts, imageConfigDigest: learned.image?.configDigest })

  const trackTask = (task: Task): Task => {
    liveTask = task
    return {
      ...task,
      get pid() {
        return task.pid
      },
      get deleted() {
        return task.deleted
      },
      // Deleted, or found gone (NotFound): either way the container has no task
      // (unless this handle is a stale one and the container has a newer task).
      delete: task.delete.pipe(
        Effect.onExit((exit) =>
          (Exit.isSuccess(exit) || Exit.findErrorOption(exit).pipe(Option.exists((e) => e.reason._tag === "NotFound"))) &&
            liveTask === task
            ? Effect.sync(() => void (liveTask = undefined))
            : Effect.void
        )
      )
    }
  }

  /** The networks a new task is attached to, checked against the spec it will have (none: no networks). */
  const networksOf = Effect.fnUntraced(function*(method: string, spec: unknown, override: AttachOptions | undefined) {
    const stored = storedNetworkOf(info.extensions)
    if (override === undefined && Option.isSome(stored) && Option.isNone(stored.value)) {
      return yield* Effect.fail(failedPrecondition(method, `container ${id}: its stored networks cannot be read`))
    }
    const wanted = override ?? Option.getOrUndefined(Option.flatten(stored))
    if (wanted === undefined) return undefined
    const networks = yield* validateNetwork(method, env.networks, wanted)
    if (!joinsNetns(spec, networks.netnsPath(namespace, id))) {
      return yield* Effect.fail(failedPrecondition(
        method,
        `container ${id} was not created on networks: its spec joins no namespace to attach them in`
      ))
    }
    return { networks, options: wanted }
  })

  const newTask = Effect.fn("Container.newTask")(function*(taskOptions?: NewTaskOptions) {
    const method = "Container.newTask"
    if (taskOptions?.spec !== undefined && currentSpec === undefined) {
      return yield* Effect.fail(failedPrecondition(method, `container ${id} has no spec to change`))
    }
    const changed = taskOptions?.spec === undefined ? undefined : applyOptions(currentSpec as Spec, [taskOptions.spec])
    // Checked before anything changes.
    const network = yield* networksOf(method, changed ?? currentSpec, taskOptions?.network)
    if (changed !== undefined) {
      const { container } = yield* rpc(client.containers.update({
        container: { id, spec: packJson(OciSpecTypeUrl, changed) },
        updateMask: ["spec"]
      }))
      currentSpec = changed
      if (container !== undefined) info = infoOf(namespace, container, changed)
    }
    const rootfs = yield* mounts
    const prepared = yield* prepareProcess(env, namespace, id, "", taskOptions?.stdio ?? Stdio.null, terminal)
    const failed = <E>(cause: Cause.Cause<E>) => Scope.close(prepared.scope, Exit.failCause(cause))
    // Before Tasks.Create: runc joins the namespace, which must be set up by then.
    const held = network === undefined ? Option.none() : yield* holdAttachment(
      prepared.scope,
      Effect.map(network.networks.attach(namespace, id, network.options), Option.some)
    ).pipe(Effect.onError(failed))
    if (Option.isSome(held) && taskOptions?.onAttached !== undefined) {
      yield* taskOptions.onAttached(held.value.attachment).pipe(Effect.onError(failed))
    }
    const created = yield* rpc(client.tasks.create({ containerId: id, rootfs: [...rootfs], terminal, ...prepared.io.request })).pipe(
      // The task's scope goes, and the attachment with it.
      Effect.onError(failed)
    )
    // Its init exists from now on: if it dies before a start, that is its exit.
    yield* rpc(hub.created(id, "", created.pid))
    yield* prepared.io.connected
    return trackTask(yield* makeTask(env, {
      ...prepared,
      ...taskParams(),
      pid: created.pid,
      started: false,
      statusSeen: "created",
      network: Option.getOrUndefined(held)
    }))
  }, (effect) =>
    Effect.suspend(() => {
      creatingTasks++
      return Effect.ensuring(effect, Effect.sync(() => void creatingTasks--))
    }))

  const attach = Effect.gen(function*() {
    // Register first, then read: an exit between the two is held for the pid read.
    const prepared = yield* prepareProcess(env, namespace, id, "", Stdio.null, false)
    const { process } = yield* rpc(client.tasks.get({ containerId: id })).pipe(
      Effect.flatMap(({ process }) =>
        process === undefined
          ? Effect.fail(notFound("Container.task", `container ${id} has no task`))
          : Effect.succeed({ process })
      ),
      Effect.onError((cause) => Scope.close(prepared.scope, Exit.failCause(cause)))
    )
    const seen = statusSeenOf(process.status)
    if (seen === "created") yield* rpc(hub.created(id, "", process.pid))
    else if (seen !== "stopped") yield* rpc(hub.started(id, "", process.pid))
    // Only once the task is known to exist: a failed look must not release a running task's network.
    const held = Option.isNone(env.networks)
      ? Option.none()
      : yield* holdAttachment(prepared.scope, env.networks.value.adopt(namespace, id))
    return trackTask(yield* makeTask(env, {
      ...prepared,
      ...taskParams(),
      network: Option.getOrUndefined(held),
      pid: process.pid,
      started: seen !== "created",
      status: seen === "stopped" ? exitedOf(process) : undefined,
      statusSeen: seen
    }))
  }).pipe(Effect.withSpan("Container.task"))

  const setLabels = Effect.fn("Container.setLabels")(function*(labels: Readonly<Record<string, string>>) {
    yield* validateLabels("Container.setLabels", labels)
    const { container } = yield* rpc(client.containers.update({
      container: { id, labels },
      updateMask: Object.keys(labels).map((key) => `labels.${key}`)
    }))
    if (container !== undefined) info = infoOf(namespace, container, currentSpec)
    return info.labels
  })

  const remove = Effect.fn("Container.delete")(function*(deleteOptions?: { readonly snapshotCleanup?: boolean }) {
    if (liveTask !== undefined || creatingTasks > 0) {
      const what = liveTask !== undefined ? "has a task" : "has a task being created"
      return yield* Effect.fail(failedPrecondition("Container.delete", `container ${id} ${what}: delete it first`))
    }
    if ((deleteOptions?.snapshotCleanup ?? true) && info.snapshotKey !== "") {
      yield* rpc(client.snapshots.remove({ snapshotter: info.snapshotter, key: info.snapshotKey })).pipe(
        Effect.catchReason("ContainerdError", "NotFound", () => Effect.void)
      )
    }
    yield* rpc(client.containers.delete({ id }))
  })

  return {
    id,
    get info() {
      return info
    },
    image: learned.image,
    get labels() {
      return info.labels
    },
    setLabels,
    newTask,
    task: attach,
    delete: remove,
    usage: Effect.suspend(() =>
      rpc(Effect.map(client.snapshots.usage({ snapshotter: info.snapshotter, key: info.snapshotKey }), ({ size, inodes }) => ({ size, inodes })))
    ),
    mounts
  }
}
