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
 * - Each started task has one monitor fiber (a FiberMap keyed by container). On
 *   exit the container's state becomes "exited" at once; then, in order for that
 *   container and in parallel across containers, the task is deleted, the exit is
 *   recorded on the containerd container (a label, so it survives us), and the
 *   consumer's `ExitHandler` runs under a timeout (default 10 s, as CRI). Any
 *   failure goes to the BackoffQueue (1 s doubling to 5 min), later exits of the
 *   container queued behind it.
 * - TaskOOM marks the container `oomKilled` at once; starting its task again
 *   clears the mark (moby's semantics since its libcontainerd overhaul).
 * - Recovery at start (CRI's recover, moby's restore): subscribe first, then list
 *   our containers and their tasks. Running → watched again; stopped → handled
 *   with its real status (unless its exit is already recorded), then deleted;
 *   created but never started → deleted; missing while recorded as running →
 *   handled as `ExitUnknown` (255). So exits that happened while we were down are
 *   handled exactly once.
 *
 * "Recorded as running" costs no RPC per start: when the Layer shuts down it
 * labels the containers still running. A program that dies without shutting down
 * leaves no such label, and a task deleted behind its back while it is dead is
 * then indistinguishable from one never started.
 */
import {
  Clock,
  Context,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberMap,
  Layer,
  Option,
  PubSub,
  Schema,
  Scope,
  Semaphore,
  Stream
} from "effect"
import { type ContainerdError, notFound } from "../domain/ContainerdError.ts"
import { Exited, ExitUnknown, type ExitStatus } from "../domain/ExitStatus.ts"
import { Status } from "../gen/containerd/types/task/task.ts"
import { exitMonitor, handleInOrder, type OrderedHandling } from "../fibers/ExitMonitor.ts"
import { type BackoffOptions, makeBackoffQueue } from "./BackoffQueue.ts"
import { Containerd, withNamespace } from "./Containerd.ts"
import { Events, type EventsShape } from "./Events.ts"
import { type Container, type CreateContainerOptions, Runtime, type Stdio, type Task } from "./Runtime.ts"

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

/** What the consumer is told when a monitored task ends. */
export interface ContainerExit {
  readonly namespace: string
  readonly containerId: string
  readonly status: ExitStatus
  readonly oomKilled: boolean
  /** Whether it ended while we were not running (found at recovery). */
  readonly recovered: boolean
}

/**
 * A container's state, as the consumer sees it. Plain data: it is rebuilt on
 * every change, so it is made directly rather than through a Schema constructor;
 * the Schema is its model and encoding.
 */
export const ContainerState = Schema.Struct({
  namespace: Schema.String,
  id: Schema.String,
  status: Schema.Literals(["created", "running", "paused", "exited", "deleted"]),
  pid: Schema.Int,
  startedAt: Schema.optional(Schema.Date),
  exitCode: Schema.optional(Schema.Int),
  exitedAt: Schema.optional(Schema.Date),
  /** The exit status could not be known (task gone while we were not watching). */
  exitUnknown: Schema.Boolean,
  oomKilled: Schema.Boolean
})

/** A container's state. */
export type ContainerState = typeof ContainerState.Type

/** A tracked container. */
export interface Tracked {
  readonly namespace: string
  readonly id: string
  readonly container: Container | undefined
  readonly task: Task | undefined
  readonly state: ContainerState
}

/** The consumer's exit handler; it may restart or remove the container through `monitors`. */
export class ExitHandler extends Context.Service<ExitHandler, {
  readonly handle: (exit: ContainerExit, monitors: MonitorsShape) => Effect.Effect<void, unknown>
}>()("effect-containerd/ExitHandler") {
  /** A handler that does nothing beyond what the monitors do themselves. */
  static readonly none: Layer.Layer<ExitHandler> = Layer.succeed(ExitHandler, ExitHandler.of({ handle: () => Effect.void }))
}

/** What the engine needs from containerd; the live layer passes the real thing. */
export interface MonitorsOps {
  /** After an exit: delete the task that ended (if any) and record the exit on the container. Idempotent. */
  readonly finishExit: (
    tracked: Tracked,
    task: Task | undefined,
    exit: ContainerExit
  ) => Effect.Effect<void, ContainerdError>
  /** Whether the container still exists. */
  readonly exists: (namespace: string, id: string) => Effect.Effect<boolean, ContainerdError>
  /** The ids of the containers in a namespace. */
  readonly ids: (namespace: string) => Effect.Effect<ReadonlySet<string>, ContainerdError>
  /** Labels a container whose task is running as such, when we stop watching it. */
  readonly markRunning: (namespace: string, id: string, startedAt: Date) => Effect.Effect<void, ContainerdError>
}

/** Counts, for tests and metrics. */
export interface MonitorStats {
  readonly tracked: number
  readonly monitors: number
  readonly backoffKeys: number
  readonly backoffEvents: number
}

/** The engine's record of a tracked container. */
export interface MonitorEntry {
  readonly key: string
  readonly namespace: string
  readonly id: string
  readonly scope: Scope.Closeable
  /** Serialises the handling of this container's exits; made when first needed (see `lockOf`). */
  lock: Semaphore.Semaphore | undefined
  container: Container | undefined
  task: Task | undefined
  state: ContainerState
  /** Our own Tasks.Delete is in flight or its event has not arrived yet. */
  deletingTask: boolean
}

const keyOf = (namespace: string, id: string) => `${namespace}\u0000${id}`

/** A container's lock, made at first use: most containers of a big fleet never need it. */
export const lockOf = (entry: MonitorEntry): Semaphore.Semaphore => entry.lock ??= Semaphore.makeUnsafe(1)

/** An exit as queued: with the task it ended, so a retry never touches a later task. */
interface ExitEvent {
  readonly exit: ContainerExit
  readonly task: Task | undefined
}

/** The engine of the monitors, over an event stream, a handler and `ops`. */
export const makeMonitorsCore = Effect.fnUntraced(function*(deps: {
  readonly events: EventsShape
  readonly handler: ExitHandler["Service"]
  readonly ops: MonitorsOps
  /** How long the consumer's handler may run; default 10 seconds, as CRI. */
  readonly handlerTimeout?: Duration.Input | undefined
  readonly backoff?: BackoffOptions | undefined
  /** The full service, passed to the handler (set by the live layer). */
  readonly self?: () => MonitorsShape
}) {
  const layerScope = yield* Effect.scope
  // Entries live in a scope of their own, closed after the layer's other finalizers.
  const entriesScope = yield* Scope.fork(layerScope)
  const entries = new Map<string, MonitorEntry>()
  const monitors = yield* FiberMap.make<string>()
  const changes = yield* PubSub.sliding<ContainerState>(4096)
  yield* Effect.addFinalizer(() => PubSub.shutdown(changes))
  const handlerTimeout = Duration.fromInputUnsafe(deps.handlerTimeout ?? "10 seconds")

  const publicOf = (entry: MonitorEntry): Tracked => ({
    namespace: entry.namespace,
    id: entry.id,
    container: entry.container,
    task: entry.task,
    state: entry.state
  })

  const setState = (entry: MonitorEntry, patch: Partial<ContainerState>) =>
    Effect.suspend(() => {
      entry.state = { ...entry.state, ...patch }
      return Effect.asVoid(PubSub.publish(changes, entry.state))
    })

  const handleExit = (entry: MonitorEntry, event: ExitEvent) =>
    Effect.suspend(() => {
      if (entries.get(entry.key) !== entry) return Effect.void
      return deps.ops.finishExit(publicOf(entry), event.task, event.exit).pipe(
        Effect.andThen(Effect.sync(() => {
          if (entry.task === event.task) entry.task = undefined
        })),
        Effect.andThen(deps.handler.handle(event.exit, deps.self?.() ?? unreachable).pipe(Effect.timeout(handlerTimeout)))
      )
    })

  const backoff = yield* makeBackoffQueue(
    (key: string, event: ExitEvent) => {
      const entry = entries.get(key)
      return entry === undefined ? Effect.void : handleExit(entry, event)
    },
    deps.backoff
  )

  const handlingOf = (entry: MonitorEntry): OrderedHandling<ExitEvent> => ({
    key: entry.key,
    lock: lockOf(entry),
    backoff,
    handle: (event) => handleExit(entry, event)
  })

  /** Closes an entry's scope from a fiber of the layer's, so a handler inside it may remove it. */
  const close = (entry: MonitorEntry) =>
    Effect.flatMap(Effect.forkIn(Scope.close(entry.scope, Exit.void), layerScope), Fiber.await).pipe(Effect.asVoid)

  const track = (ref: {
    readonly namespace: string
    readonly id: string
    readonly container?: Container | undefined
    readonly state?: Partial<ContainerState> | undefined
  }) =>
    Effect.suspend(() => {
      const key = keyOf(ref.namespace, ref.id)
      const existing = entries.get(key)
      if (existing !== undefined) {
        existing.container ??= ref.container
        return Effect.succeed(existing)
      }
      return Effect.gen(function*() {
        const scope = yield* Scope.fork(entriesScope)
        const entry: MonitorEntry = {
          key,
          namespace: ref.namespace,
          id: ref.id,
          scope,
          lock: undefined,
          container: ref.container,
          task: undefined,
          state: {
            namespace: ref.namespace,
            id: ref.id,
            status: "created",
            pid: 0,
            exitUnknown: false,
            oomKilled: false,
            ...ref.state
          },
          deletingTask: false
        }
        entries.set(key, entry)
        yield* Scope.addFinalizer(scope, Effect.gen(function*() {
          if (entries.get(key) === entry) entries.delete(key)
          yield* FiberMap.remove(monitors, key)
          yield* backoff.remove(key)
          entry.task = undefined
          entry.container = undefined
          yield* setState(entry, { status: "deleted" })
        }))
        yield* PubSub.publish(changes, entry.state)
        return entry
      })
    })

  /** Dispatches an exit found without a monitor (recovery), in order for its container. */
  const dispatch = (entry: MonitorEntry, exit: ContainerExit, task: Task | undefined) =>
    handleInOrder(handlingOf(entry), { exit, task })

  const exitedPatch = (status: ExitStatus): Partial<ContainerState> => ({
    status: "exited",
    pid: status.pid,
    exitCode: status.code,
    exitedAt: status._tag === "Exited" ? status.exitedAt : undefined,
    exitUnknown: status._tag === "ExitUnknown",
    // The hub saw the OOM in stream order; our own mark may still be on its way.
    ...(status._tag === "Exited" && status.oomKilled ? { oomKilled: true } : {})
  })

  const watch = (entry: MonitorEntry, options: {
    readonly wait: Effect.Effect<ExitStatus>
    readonly pid: number
    readonly task?: Task | undefined
    readonly startedAt?: Date | undefined
  }) =>
    Effect.gen(function*() {
      entry.task = options.task
      entry.deletingTask = false
      const startedAt = options.startedAt ?? new Date(yield* Clock.currentTimeMillis)
      yield* setState(entry, {
        status: "running",
        pid: options.pid,
        startedAt,
        exitCode: undefined,
        exitedAt: undefined,
        exitUnknown: false,
        oomKilled: false
      })
      const task = options.task
      yield* FiberMap.run(monitors, entry.key, exitMonitor(options.wait, (status) => onExit(entry, task, status)))
    })

  /** Records an exit and forks its handling, in order, into the container's scope. */
  const onExit = (entry: MonitorEntry, task: Task | undefined, status: ExitStatus) =>
    Effect.flatMap(setState(entry, exitedPatch(status)), () =>
      Effect.asVoid(Effect.forkIn(
        handleInOrder(handlingOf(entry), {
          exit: {
            namespace: entry.namespace,
            containerId: entry.id,
            status,
            oomKilled: entry.state.oomKilled,
            recovered: false
          },
          task
        }),
        entry.scope
      )))

  // Deletions by others, OOM, pause and resume, and reconciling after missed events.
  const stream = yield* deps.events.subscribe({
    tags: ["ContainerDelete", "TaskDelete", "TaskOOM", "TaskPaused", "TaskResumed", "NamespaceDelete"]
  })
  const onTaskDelete = (entry: MonitorEntry) =>
    Effect.gen(function*() {
      if (entry.deletingTask) {
        entry.deletingTask = false
        return
      }
      // Someone else deleted the task: is the container gone too?
      const exists = yield* deps.ops.exists(entry.namespace, entry.id)
      if (!exists) yield* close(entry)
    }).pipe(Effect.catch((error) => Effect.logWarning(`could not check container ${entry.id}`, error)))
  const reconcile = Effect.suspend(() =>
    Effect.forEach(new Set([...entries.values()].map((e) => e.namespace)), (namespace) =>
      deps.ops.ids(namespace).pipe(
        Effect.flatMap((ids) =>
          Effect.forEach([...entries.values()].filter((e) => e.namespace === namespace && !ids.has(e.id)), close, {
            discard: true
          })
        ),
        Effect.catch((error) => Effect.logWarning(`could not reconcile namespace ${namespace}`, error))
      ), { discard: true })
  )
  yield* stream.pipe(
    Stream.runForEach((message) => {
      if (message._tag === "Resynced") return Effect.asVoid(Effect.forkIn(reconcile, layerScope))
      if (message._tag === "NamespaceDelete") {
        return Effect.forEach([...entries.values()].filter((e) => e.namespace === message.name), close, { discard: true })
      }
      const entry = entries.get(keyOf(message.namespace, message._tag === "ContainerDelete" ? message.id : message.containerId))
      if (entry === undefined) return Effect.void
      switch (message._tag) {
        case "ContainerDelete":
          return close(entry)
        case "TaskDelete":
          return Effect.asVoid(Effect.forkIn(onTaskDelete(entry), layerScope))
        case "TaskOOM":
          return setState(entry, { oomKilled: true })
        case "TaskPaused":
          return entry.state.status === "running" ? setState(entry, { status: "paused" }) : Effect.void
        case "TaskResumed":
          return entry.state.status === "paused" ? setState(entry, { status: "running" }) : Effect.void
      }
    }),
    Effect.forkScoped
  )

  // At shutdown, before the entries close: label what is still running.
  yield* Effect.addFinalizer(() =>
    Effect.forEach(
      [...entries.values()].filter((e) => e.state.status === "running" || e.state.status === "paused"),
      (e) =>
        deps.ops.markRunning(e.namespace, e.id, e.state.startedAt ?? new Date()).pipe(
          Effect.timeout("5 seconds"),
          Effect.catch((error) => Effect.logWarning(`could not mark ${e.id} as running`, error))
        ),
      { concurrency: 16, discard: true }
    )
  )

  return {
    track,
    watch,
    dispatch,
    close,
    exitedPatch,
    setState,
    markDeletingTask: (entry: MonitorEntry) => Effect.sync(() => void (entry.deletingTask = true)),
    entry: (namespace: string, id: string) => Effect.sync(() => Option.fromUndefinedOr(entries.get(keyOf(namespace, id)))),
    publicOf,
    states: Effect.sync(() => [...entries.values()].map((e) => e.state)),
    changes: Effect.map(PubSub.subscribe(changes), Stream.fromSubscription),
    stats: Effect.gen(function*() {
      const queued = yield* backoff.size
      return {
        tracked: entries.size,
        monitors: yield* FiberMap.size(monitors),
        backoffKeys: queued.keys,
        backoffEvents: queued.events
      } satisfies MonitorStats
    })
  }
})

/** The engine's API. */
export type MonitorsCore = Effect.Success<ReturnType<typeof makeMonitorsCore>>

const unreachable = undefined as never

/** The monitors service. */
export interface MonitorsShape {
  /** Creates a container (marked as ours, for recovery) and tracks it. */
  readonly create: (options: CreateContainerOptions) => Effect.Effect<Container, ContainerdError>
  /** Tracks a container created elsewhere. */
  readonly track: (container: Container) => Effect.Effect<void>
  /** Creates the container's task, starts it and watches its exit. */
  readonly start: (id: string, options?: { readonly stdio?: Stdio | undefined }) => Effect.Effect<Task, ContainerdError>
  /** A tracked container, in the current namespace. */
  readonly get: (id: string) => Effect.Effect<Option.Option<Tracked>>
  /** Deletes a tracked container (its task must have exited) and closes its scope. */
  readonly remove: (id: string, options?: { readonly snapshotCleanup?: boolean }) => Effect.Effect<void, ContainerdError>
  /** Every tracked container's state. */
  readonly states: Effect.Effect<ReadonlyArray<ContainerState>>
  /** Every state change from now on (a sliding buffer of 4096: read it, or read `states`). */
  readonly changes: Effect.Effect<Stream.Stream<ContainerState>, never, Scope.Scope>
  readonly stats: Effect.Effect<MonitorStats>
}

/** The JSON of the exit label. */
const ExitRecord = Schema.Struct({
  code: Schema.Int,
  exitedAt: Schema.optional(Schema.String),
  oomKilled: Schema.Boolean,
  unknown: Schema.Boolean
})
const decodeExitRecord = Schema.decodeUnknownOption(Schema.fromJsonString(ExitRecord))

/** Builds the live monitors: the engine over the runtime, with recovery of `namespaces`. */
export const makeMonitors = Effect.fnUntraced(function*(options: {
  /** Namespaces to recover at start; default the client's. */
  readonly namespaces?: ReadonlyArray<string> | undefined
  readonly handlerTimeout?: Duration.Input | undefined
  readonly backoff?: BackoffOptions | undefined
} = {}) {
  const client = yield* Containerd
  const runtime = yield* Runtime
  const events = yield* Events
  const handler = yield* ExitHandler
  let self: MonitorsShape | undefined

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

  const ignoreNotFound = <A, R>(effect: Effect.Effect<A, ContainerdError, R>) =>
    effect.pipe(Effect.asVoid, Effect.catchReason("ContainerdError", "NotFound", () => Effect.void))

  const core: MonitorsCore = yield* makeMonitorsCore({
    events,
    handler,
    handlerTimeout: options.handlerTimeout,
    backoff: options.backoff,
    self: () => self!,
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

  /** Starts watching a task of a tracked container (created and started already). */
  const watchTask = (entry: Parameters<MonitorsCore["watch"]>[0], task: Task) =>
    core.watch(entry, { wait: task.wait, pid: task.pid, task })

  const service: MonitorsShape = {
    create: (createOptions) =>
      Effect.gen(function*() {
        const container = yield* runtime.containers.create({
          ...createOptions,
          labels: { ...createOptions.labels, [MonitorLabels.managed]: "true" }
        })
        yield* core.track({ namespace: container.info.namespace, id: container.id, container })
        return container
      }),
    track: (container) => Effect.asVoid(core.track({ namespace: container.info.namespace, id: container.id, container })),
    start: (id, startOptions) =>
      Effect.gen(function*() {
        const entry = yield* entryOrFail("Monitors.start", id)
        const container = entry.container
        if (container === undefined) return yield* Effect.fail(notFound("Monitors.start", `container ${id} is gone`))
        const task = yield* container.newTask({ stdio: startOptions?.stdio }).pipe(Scope.provide(entry.scope))
        yield* task.start.pipe(Effect.onError(() => task.delete.pipe(Effect.ignore)))
        yield* watchTask(entry, task)
        return task
      }),
    get: (id) =>
      Effect.flatMap(client.currentNamespace, (namespace) =>
        Effect.map(core.entry(namespace, id), Option.map(core.publicOf))),
    remove: (id, removeOptions) =>
      Effect.gen(function*() {
        const entry = yield* entryOrFail("Monitors.remove", id)
        // After any handling in flight; an exited task whose handling is still
        // pending (in backoff) goes with the container.
        yield* lockOf(entry).withPermit(Effect.gen(function*() {
          if (entry.task !== undefined && !entry.task.deleted && entry.state.status === "exited") {
            yield* core.markDeletingTask(entry)
            yield* ignoreNotFound(entry.task.delete)
            entry.task = undefined
          }
          if (entry.container !== undefined) yield* entry.container.delete(removeOptions)
        }))
        yield* core.close(entry)
      }),
    states: core.states,
    changes: core.changes,
    stats: core.stats
  }
  self = service

  // Recovery: our subscriptions are in place; now look at what is there.
  const recover = (namespace: string) =>
    Effect.gen(function*() {
      const containers = yield* runtime.containers.list([`labels."${MonitorLabels.managed}"==true`]).pipe(
        withNamespace(namespace)
      )
      const { tasks } = yield* client.tasks.list({}).pipe(withNamespace(namespace))
      // containerd 1.6 leaves container_id empty in the processes Tasks.List returns;
      // `id` is the container's id for a task's init.
      const byId = new Map(tasks.map((t) => [t.containerId || t.id, t]))
      yield* Effect.forEach(containers, (container) =>
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
          const info = byId.get(container.id)
          const exitOf = (status: ExitStatus): ContainerExit => ({
            namespace,
            containerId: container.id,
            status,
            oomKilled: false,
            recovered: true
          })
          if (info === undefined) {
            const runningSince = container.labels[MonitorLabels.running]
            if (runningSince === undefined) return
            const unknown = new ExitUnknown({ code: 255, pid: 0, reason: "the task was deleted while we were not watching" })
            yield* core.setState(entry, core.exitedPatch(unknown))
            return yield* core.dispatch(entry, exitOf(unknown), undefined)
          }
          const task = yield* container.task.pipe(Scope.provide(entry.scope))
          entry.task = task
          switch (info.status) {
            case Status.RUNNING:
            case Status.PAUSED:
            case Status.PAUSING: {
              const startedAt = container.labels[MonitorLabels.running]
              yield* core.watch(entry, {
                wait: task.wait,
                pid: info.pid,
                task,
                startedAt: startedAt === undefined ? undefined : new Date(startedAt)
              })
              if (info.status !== Status.RUNNING) yield* core.setState(entry, { status: "paused" })
              return
            }
            case Status.STOPPED: {
              const status = new Exited({ code: info.exitStatus, exitedAt: info.exitedAt ?? new Date(0), pid: info.pid })
              yield* core.setState(entry, core.exitedPatch(status))
              if (recorded?.exitedAt !== undefined && recorded.exitedAt === status.exitedAt.toISOString()) {
                // Handled before we stopped; only the task is left to delete.
                yield* core.markDeletingTask(entry)
                yield* task.delete.pipe(Effect.ignore)
                entry.task = undefined
                return
              }
              return yield* core.dispatch(entry, exitOf(status), task)
            }
            default:
              // Created but never started: nothing ran, so nothing to report.
              yield* core.markDeletingTask(entry)
              yield* task.delete.pipe(Effect.ignore)
              entry.task = undefined
          }
        }), { concurrency: 16, discard: true })
    })
  const namespaces = options.namespaces ?? [yield* client.currentNamespace]
  yield* Effect.forEach(namespaces, (namespace) =>
    recover(namespace).pipe(Effect.catch((error) => Effect.logError(`recovery of namespace ${namespace} failed`, error))), {
    discard: true
  })
  return service
})

/** The monitors service. */
export class Monitors extends Context.Service<Monitors, MonitorsShape>()("effect-containerd/Monitors") {
  /** Monitors over the runtime, recovering the client's namespace (or `namespaces`) at start. */
  static readonly layer = (
    options?: Parameters<typeof makeMonitors>[0]
  ): Layer.Layer<Monitors, never, Containerd | Runtime | Events | ExitHandler> =>
    Layer.effect(Monitors, makeMonitors(options))
}
