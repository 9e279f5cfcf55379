/**
 * Monitors: what a long-running program (our daemon, or a user's) uses to keep
 * its view of containers true — containerd CRI's event monitor and moby's
 * restore, as an Effect service.
 *
 * - Every tracked container owns a `Scope` holding its exit monitor, its task's
 *   stdio and exit registration, and its state. The scope closes when the
 *   container is removed through us, when anyone else deletes it (ContainerDelete;
 *   a TaskDelete we did not cause followed by a missing container; its namespace
 *   deleted; or found missing after `Resynced`), and when the Layer shuts down.
 *   After that nothing of it remains: no fiber, fd, directory, map or backoff entry.
 * - Each container has one monitor fiber (src/fibers/ExitMonitor.ts) that owns
 *   its exit handling: on exit the container's state becomes "exited" at once
 *   (once the previous exit's handling is done, if it is still running); then,
 *   under the container's lock and in its scope, the task is deleted, the exit is
 *   recorded on the containerd container (a label, so it survives us), and the
 *   consumer's `ExitHandler` runs — the whole handling bounded (default 10 s, as
 *   CRI). Any failure goes to the `BackoffQueue` (1 s doubling to 5 min), whose
 *   retry is that same handling; later exits of the container wait behind it.
 * - TaskOOM marks the container `oomKilled` at once; starting its task again
 *   clears the mark (moby's semantics since its libcontainerd overhaul).
 * - Recovery at start (CRI's recover, moby's restore): subscribe first, then list
 *   our containers and attach to each one's task (registering for its exit before
 *   reading its state). Running → watched again; stopped → handled with its real
 *   status (unless its exit is already recorded), then deleted; created but never
 *   started → deleted; missing while recorded as running → handled as
 *   `ExitUnknown` (255). So exits that happened while we were down are handled
 *   exactly once. A failed list or attach is retried until it succeeds.
 *
 * - Networks (when a `Networks` service is provided): a task's attachment lives
 *   in the task's scope, a child of its entry's, so a container deleted by
 *   anyone has its addresses, ports and namespace released with its entry. At
 *   shutdown the tasks still there keep theirs, for recovery: each task found
 *   adopts its attachment, and once a namespace's containers are recovered the
 *   attachments of every other container of it (gone, or its task gone) are
 *   released (`Networks.sweep`).
 *
 * "Recorded as running" costs no RPC per start: when the Layer shuts down it
 * labels the containers still running. A program that dies without shutting down
 * leaves no such label, and a task deleted behind its back while it is dead is
 * then indistinguishable from one never started.
 */
import { Context, type Duration, Effect, Exit, Layer, Option, Schema, Scope, type Stream } from "effect"
import { type ContainerdError, notFound } from "../domain/ContainerdError.ts"
import type { ContainerExit, ContainerState } from "../domain/ContainerState.ts"
import { exitUnknown } from "../domain/ExitStatus.ts"
import { type MonitorEntry, type MonitorsCore, makeMonitorsCore, type Tracked } from "../internal/MonitorsCore.ts"
import { retryForever, retryWhile } from "../internal/Retry.ts"
import { BackoffQueue } from "./BackoffQueue.ts"
import { Containerd, withNamespace } from "./Containerd.ts"
import { Events } from "./Events.ts"
import { Networks } from "./Networks.ts"
import { type Container, type CreateContainerOptions, type NewTaskOptions, Runtime, type Task } from "./Runtime.ts"

export { ContainerState } from "../domain/ContainerState.ts"
export type { ContainerExit } from "../domain/ContainerState.ts"
export { ExitMonitorFibers, MonitoredContainers } from "../internal/MonitorsCore.ts"
export type { Tracked } from "../internal/MonitorsCore.ts"

/** Labels the monitors keep on containerd containers. */
export const MonitorLabels = {
  /** Marks containers created through the monitors, the ones recovery adopts. */
  managed: "effect-containerd.io/managed",
  /** The last handled exit, as JSON: its code, time, OOM mark, and whether it is unknown. */
  exit: "effect-containerd.io/exit",
  /** Set at shutdown on containers whose task was still running: when they started. */
  running: "effect-containerd.io/running",
  /**
   * "true" on containers removed as soon as they exit (Docker's `--rm`): their
   * exit is handled but not recorded, which saves an RPC per run. Recovery
   * then sees such a container as never started; its owner removes it anyway.
   */
  transient: "effect-containerd.io/transient"
} as const

/**
 * The consumer's exit handler. It may restart the container (`monitors.start`)
 * or remove it (`monitors.remove`, which then runs at once, and the container's
 * scope closes when the handler returns).
 */
export class ExitHandler extends Context.Service<ExitHandler, {
  readonly handle: (exit: ContainerExit, monitors: MonitorsShape) => Effect.Effect<void, unknown>
}>()("effect-containerd/ExitHandler") {
  /** A handler that does nothing beyond what the monitors do themselves. */
  static readonly none: Layer.Layer<ExitHandler> = Layer.succeed(ExitHandler, ExitHandler.of({ handle: () => Effect.void }))
}

/** The monitors service. */
export interface MonitorsShape {
  /** Creates a container (marked as ours, for recovery) and tracks it. */
  readonly create: (options: CreateContainerOptions) => Effect.Effect<Container, ContainerdError>
  /** Tracks a container created elsewhere. */
  readonly track: (container: Container) => Effect.Effect<void>
  /** Creates the container's task, starts it and watches its exit. */
  readonly start: (id: string, options?: NewTaskOptions) => Effect.Effect<Task, ContainerdError>
  /** A tracked container, in the current namespace. */
  readonly get: (id: string) => Effect.Effect<Option.Option<Tracked>>
  /** Deletes a tracked container (its task must have exited) and closes its scope. */
  readonly remove: (id: string, options?: { readonly snapshotCleanup?: boolean }) => Effect.Effect<void, ContainerdError>
  /** Every tracked container's state. */
  readonly states: Effect.Effect<ReadonlyArray<ContainerState>>
  /** Every state change from now on (a sliding buffer of 4096: read it, or read `states`). */
  readonly changes: Effect.Effect<Stream.Stream<ContainerState>, never, Scope.Scope>
}

/** The JSON of the exit label. */
const ExitRecord = Schema.Struct({
  code: Schema.Int,
  exitedAt: Schema.optional(Schema.String),
  oomKilled: Schema.Boolean,
  unknown: Schema.Boolean
})
const decodeExitRecord = Schema.decodeUnknownOption(Schema.fromJsonString(ExitRecord))

const ignoreNotFound = <A, R>(effect: Effect.Effect<A, ContainerdError, R>) =>
  effect.pipe(Effect.asVoid, Effect.catchReason("ContainerdError", "NotFound", () => Effect.void))

/** Builds the live monitors: the engine over the runtime, with recovery of `namespaces`. */
export const makeMonitors = Effect.fnUntraced(function*(options: {
  /** Namespaces to recover at start; default the client's. */
  readonly namespaces?: ReadonlyArray<string> | undefined
  /** How long the handling of one exit may take; default 10 seconds, as CRI. */
  readonly handlingTimeout?: Duration.Input | undefined
} = {}) {
  const client = yield* Containerd
  const runtime = yield* Runtime
  const handler = yield* ExitHandler
  const networks = yield* Effect.serviceOption(Networks)
  let service: MonitorsShape | undefined

  const recordExit = (namespace: string, id: string, exit: ContainerExit) =>
    client.containers.update({
      container: {
        id,
        labels: {
          [MonitorLabels.exit]: JSON.stringify({
            code: exit.status.code,
            exitedAt: exit.status._tag === "Exited" ? exit.status.exitedAt.toISOString() : undefined,
            oomKilled: exit.oomKilled,
            unknown: exit.status._tag === "ExitUnknown"
          }),
          [MonitorLabels.running]: ""
        }
      },
      updateMask: [`labels.${MonitorLabels.exit}`, `labels.${MonitorLabels.running}`]
    }).pipe(withNamespace(namespace), Effect.asVoid)

  const core: MonitorsCore = yield* makeMonitorsCore({
    events: yield* Events,
    backoff: yield* BackoffQueue,
    handle: (exit) => handler.handle(exit, service!),
    handlingTimeout: options.handlingTimeout,
    ops: {
      finishExit: (tracked, task, exit) =>
        Effect.gen(function*() {
          // A retry finds the task deleted already: no RPC, and no TaskDelete of ours to expect.
          if (task !== undefined && !task.deleted) {
            const entry = yield* core.entry(tracked.namespace, tracked.id)
            if (Option.isSome(entry)) yield* core.markDeletingTask(entry.value)
            yield* ignoreNotFound(task.delete)
          }
          if (tracked.container?.labels[MonitorLabels.transient] !== "true") {
            yield* ignoreNotFound(recordExit(tracked.namespace, tracked.id, exit))
          }
        }),
      exists: (namespace, id) =>
        client.containers.get({ id }).pipe(
          withNamespace(namespace),
          Effect.as(true),
          Effect.catchReason("ContainerdError", "NotFound", () => Effect.succeed(false))
        ),
      ids: (namespace) =>
        client.containers.list({}).pipe(
          withNamespace(namespace),
          Effect.map(({ containers }) => new Set(containers.map((c) => c.id)))
        ),
      markRunning: (namespace, id, startedAt) =>
        client.containers.update({
          container: { id, labels: { [MonitorLabels.running]: startedAt.toISOString() } },
          updateMask: [`labels.${MonitorLabels.running}`]
        }).pipe(withNamespace(namespace), Effect.asVoid)
    }
  })

  const entryOrFail = (method: string, id: string) =>
    Effect.flatMap(client.currentNamespace, (namespace) =>
      Effect.flatMap(core.entry(namespace, id), Option.match({
        onNone: () => Effect.fail(notFound(method, `container ${id} is not tracked in namespace ${namespace}`)),
        onSome: Effect.succeed
      })))

  /** Deletes a task of ours; if containerd will not, keeps trying in the container's scope (a left task blocks its next start). */
  const deleteTask = (entry: MonitorEntry, task: Task) =>
    Effect.gen(function*() {
      yield* core.markDeletingTask(entry)
      if (entry.task === task) entry.task = undefined
      const deleted = yield* Effect.exit(ignoreNotFound(task.delete))
      if (deleted._tag === "Failure") {
        yield* Effect.forkIn(
          retryWhile(`deleting the task of ${entry.id}`, ignoreNotFound(task.delete), () => core.isTracked(entry)),
          entry.scope
        )
      }
    })

  service = {
    create: Effect.fn("Monitors.create")(function*(createOptions) {
      const container = yield* runtime.containers.create({
        ...createOptions,
        labels: { ...createOptions.labels, [MonitorLabels.managed]: "true" }
      })
      yield* core.track({ namespace: container.info.namespace, id: container.id, container })
      return container
    }),
    track: Effect.fn("Monitors.track")(function*(container) {
      yield* core.track({ namespace: container.info.namespace, id: container.id, container })
    }),
    start: Effect.fn("Monitors.start")(function*(id, startOptions) {
      const entry = yield* entryOrFail("Monitors.start", id)
      const container = entry.container
      if (container === undefined) return yield* Effect.fail(notFound("Monitors.start", `container ${id} is gone`))
      const task = yield* container.newTask(startOptions).pipe(Scope.provide(entry.scope))
      yield* task.start.pipe(Effect.onError(() => deleteTask(entry, task)))
      yield* core.watch(entry, { wait: task.wait, pid: task.pid, task })
      return task
    }),
    get: Effect.fn("Monitors.get")(function*(id) {
      const namespace = yield* client.currentNamespace
      return Option.map(yield* core.entry(namespace, id), core.publicOf)
    }),
    remove: Effect.fn("Monitors.remove")(function*(id, removeOptions) {
      const entry = yield* entryOrFail("Monitors.remove", id)
      // After any handling in flight (or at once, from the container's own
      // handler); an exited task whose handling is still pending (in backoff)
      // goes with the container.
      yield* core.exclusive(entry, Effect.gen(function*() {
        const task = entry.task
        if (task !== undefined && !task.deleted && entry.state.status === "exited") {
          yield* core.markDeletingTask(entry)
          yield* ignoreNotFound(task.delete)
          entry.task = undefined
        }
        if (entry.container !== undefined) yield* entry.container.delete(removeOptions)
      }))
    }),
    states: Effect.withSpan(core.states, "Monitors.states"),
    changes: Effect.withSpan(core.changes, "Monitors.changes")
  }

  /** Adopts one container of ours: tracks it and picks up its task where it is (noting it in `withTasks` if it has one). */
  const recoverOne = (namespace: string, container: Container, withTasks: Set<string>) =>
    Effect.gen(function*() {
      const recorded = Option.getOrUndefined(decodeExitRecord(container.labels[MonitorLabels.exit] ?? ""))
      const entry = yield* core.track({
        namespace,
        id: container.id,
        container,
        state: recorded === undefined ? undefined : {
          status: "exited",
          exitCode: recorded.code,
          exitedAt: recorded.exitedAt === undefined ? undefined : new Date(recorded.exitedAt),
          exitUnknown: recorded.unknown,
          oomKilled: recorded.oomKilled
        }
      })
      // Registers for the exit before reading the task's state; retried while the container is tracked.
      const attach = container.task.pipe(
        Scope.provide(entry.scope),
        Effect.map(Option.some<Task>),
        Effect.catchReason("ContainerdError", "NotFound", () => Effect.succeed(Option.none<Task>()))
      )
      const adopt = Effect.gen(function*() {
        const found = yield* attach
        if (Option.isSome(found)) withTasks.add(container.id)
        if (Option.isNone(found)) {
          if (container.labels[MonitorLabels.running] === undefined) return
          const unknown = exitUnknown(0, "the task was deleted while we were not watching")
          return yield* core.dispatch(entry, unknown, undefined)
        }
        const task = found.value
        entry.task = task
        switch (task.statusSeen) {
          case "running":
          case "paused": {
            const startedAt = container.labels[MonitorLabels.running]
            yield* core.watch(entry, {
              wait: task.wait,
              pid: task.pid,
              task,
              startedAt: startedAt === undefined ? undefined : new Date(startedAt)
            })
            if (task.statusSeen === "paused") yield* core.setState(entry, { status: "paused" })
            return
          }
          case "stopped": {
            const status = yield* task.wait
            if (status._tag === "Exited" && recorded?.exitedAt === status.exitedAt.toISOString()) {
              // Handled before we stopped; only the task is left to delete.
              yield* core.setState(entry, { status: "exited", pid: status.pid })
              yield* core.markDeletingTask(entry)
              yield* ignoreNotFound(task.delete)
              entry.task = undefined
              return
            }
            return yield* core.dispatch(entry, status, task)
          }
          case "created":
            // Created but never started: nothing ran, so nothing to report.
            yield* core.markDeletingTask(entry)
            yield* ignoreNotFound(task.delete)
            entry.task = undefined
        }
      })
      yield* retryWhile(`recovering container ${container.id}`, adopt, () => core.isTracked(entry)).pipe(
        // Only when it was deleted meanwhile: there is nothing left to recover.
        Effect.catch(() => Effect.void)
      )
    })

  // Recovery: our subscriptions are in place; now look at what is there.
  const recover = (namespace: string) =>
    Effect.gen(function*() {
      const containers = yield* retryForever(
        `listing the containers of namespace ${namespace} to recover`,
        runtime.containers.list([`labels."${MonitorLabels.managed}"==true`]).pipe(withNamespace(namespace))
      )
      const withTasks = new Set<string>()
      yield* Effect.forEach(containers, (container) => recoverOne(namespace, container, withTasks), {
        concurrency: 16,
        discard: true
      })
      // Each task found adopted its attachment (released again if the task had
      // stopped); what is left belongs to a container or task that went while we
      // were down.
      // Recovery does not wait on a plugin that keeps failing: the sweep is tried
      // again in the background until it gets through (what it releases stays
      // held meanwhile, and a new start of one of those containers releases its
      // old attachment first).
      if (Option.isSome(networks)) {
        const sweep = networks.value.sweep(namespace, withTasks)
        yield* Effect.exit(sweep).pipe(
          Effect.flatMap((exit) =>
            Exit.isSuccess(exit)
              ? Effect.void
              : Effect.asVoid(Effect.forkScoped(retryForever(`sweeping the network attachments of namespace ${namespace}`, sweep)))
          )
        )
      }
    })
  const namespaces = options.namespaces ?? [yield* client.currentNamespace]
  yield* Effect.forEach(namespaces, recover, { discard: true })
  return service
})

/** The monitors service. */
export class Monitors extends Context.Service<Monitors, MonitorsShape>()("effect-containerd/Monitors") {
  /** Monitors over the runtime, recovering the client's namespace (or `namespaces`) at start. */
  static readonly layer = (
    options?: Parameters<typeof makeMonitors>[0]
  ): Layer.Layer<Monitors, never, Containerd | Runtime | Events | ExitHandler | BackoffQueue> =>
    Layer.effect(Monitors, makeMonitors(options))
}
