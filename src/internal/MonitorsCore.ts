/**
 * The engine of the monitors (`src/services/Monitors.ts`), over an event
 * stream, a backoff queue, the consumer's handler and a few containerd calls
 * (`MonitorsOps`), so it can be driven deterministically by tests.
 *
 * It keeps one entry per tracked container, each with its own `Scope` (its
 * monitor fiber, task handle, exit registration, backoff entry: all released
 * when it closes), its state, and its lock. The container's monitor fiber
 * (src/fibers/ExitMonitor.ts) owns its exit handling; this module gives it the
 * tasks to watch, says how an exit is handled, and closes entries whose
 * container is gone — deleted by us, by anyone else, with its namespace, or found
 * missing after missed events.
 *
 * A handler may remove its own container (`exclusive` from inside its
 * handling): the removal runs at once without taking the lock the handling
 * holds, and the container's scope closes when the handling ends.
 */
import {
  Clock,
  Context,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberHandle,
  Metric,
  Option,
  PubSub,
  Scope,
  Semaphore,
  Stream
} from "effect"
import type { ContainerdError } from "../domain/ContainerdError.ts"
import { type ContainerExit, type ContainerState, exitedPatch } from "../domain/ContainerState.ts"
import type { ExitStatus } from "../domain/ExitStatus.ts"
import { type ContainerHandling, exitMonitor, type Watched } from "../fibers/ExitMonitor.ts"
import type { BackoffQueueShape } from "../services/BackoffQueue.ts"
import type { EventsShape } from "../services/Events.ts"
import type { Container, Task } from "../services/Runtime.ts"
import { retryForever, retryWhile } from "./Retry.ts"

/** A tracked container. */
export interface Tracked {
  readonly namespace: string
  readonly id: string
  readonly container: Container | undefined
  readonly task: Task | undefined
  readonly state: ContainerState
}

/** What the engine needs from containerd; the live layer passes the real thing. */
export interface MonitorsOps {
  /** After an exit: delete the task that ended (if any) and record the exit on the container. Idempotent. */
  readonly finishExit: (tracked: Tracked, task: Task | undefined, exit: ContainerExit) => Effect.Effect<void, ContainerdError>
  /** Whether the container still exists. */
  readonly exists: (namespace: string, id: string) => Effect.Effect<boolean, ContainerdError>
  /** The ids of the containers in a namespace. */
  readonly ids: (namespace: string) => Effect.Effect<ReadonlySet<string>, ContainerdError>
  /** Labels a container whose task is running as such, when we stop watching it. */
  readonly markRunning: (namespace: string, id: string, startedAt: Date) => Effect.Effect<void, ContainerdError>
}

/** Containers the monitors track. */
export const MonitoredContainers = Metric.gauge("effect_containerd_monitored_containers", {
  description: "containers tracked by the exit monitors"
})

/** Exit monitor fibers running: one per container while it has a task to watch. */
export const ExitMonitorFibers = Metric.gauge("effect_containerd_exit_monitor_fibers", {
  description: "exit monitor fibers running (one per container with a task to watch)"
})

/** An exit as handled: with the task it ended, so a retry never touches a later task. */
interface ExitEvent {
  readonly exit: ContainerExit
  readonly task: Task | undefined
}

/** The engine's record of a tracked container. */
export interface MonitorEntry {
  readonly key: string
  readonly namespace: string
  readonly id: string
  readonly scope: Scope.Closeable
  /** Serialises handling and removal; made when first needed: most containers of a big fleet never need it. */
  lock: Semaphore.Semaphore | undefined
  container: Container | undefined
  task: Task | undefined
  state: ContainerState
  /** Our own Tasks.Delete is in flight or its event has not arrived yet. */
  deletingTask: boolean
  /** What the monitor fiber is to watch next, in order. */
  readonly watches: Array<Watched<ExitEvent>>
  /** The monitor fiber, while there is one. */
  monitor: Fiber.Fiber<void> | undefined
  /** Marks the handling in progress (see `CurrentHandling`). */
  handling: object | undefined
  /** We are deleting the container: its ContainerDelete is ours. */
  removing: boolean
  /** A ContainerDelete arrived while we were removing it. */
  deletedMeanwhile: boolean
  /** Removed by its own handler: its scope closes when that handling ends. */
  closeWhenHandled: boolean
}

/** The handling the current fiber runs, if any. */
const CurrentHandling = Context.Reference<object | undefined>("effect-containerd/Monitors/CurrentHandling", {
  defaultValue: () => undefined
})

const lockOf = (entry: MonitorEntry): Semaphore.Semaphore => entry.lock ??= Semaphore.makeUnsafe(1)

/** The engine of the monitors; its fibers live in the current scope. */
export const makeMonitorsCore = Effect.fnUntraced(function*(deps: {
  readonly events: EventsShape
  readonly backoff: BackoffQueueShape
  /** The consumer's handler. */
  readonly handle: (exit: ContainerExit) => Effect.Effect<void, unknown>
  readonly ops: MonitorsOps
  /** How long the handling of one exit (delete, record, handler) may take; default 10 seconds, as CRI. */
  readonly handlingTimeout?: Duration.Input | undefined
}) {
  const layerScope = yield* Effect.scope
  // Entries live in a scope of their own, closed after the layer's other finalizers.
  const entriesScope = yield* Scope.fork(layerScope)
  const entries = new Map<string, MonitorEntry>()
  let monitorFibers = 0
  const setMonitor = (entry: MonitorEntry, fiber: Fiber.Fiber<void> | undefined): void => {
    monitorFibers += (fiber === undefined ? 0 : 1) - (entry.monitor === undefined ? 0 : 1)
    entry.monitor = fiber
  }
  const publish = Effect.suspend(() =>
    Effect.andThen(Metric.update(MonitoredContainers, entries.size), Metric.update(ExitMonitorFibers, monitorFibers))
  )
  // A new engine starts the gauges from its own counts (one per process; tests make several in turn).
  yield* publish
  const changes = yield* PubSub.sliding<ContainerState>(4096)
  yield* Effect.addFinalizer(() => PubSub.shutdown(changes))
  const handlingBound = Duration.fromInputUnsafe(deps.handlingTimeout ?? "10 seconds")
  const keyOf = (namespace: string, id: string) => JSON.stringify([namespace, id])

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

  /** Closes an entry's scope from a fiber of the layer's, so a fiber inside that scope may ask for it. */
  const close = (entry: MonitorEntry) =>
    Effect.flatMap(Effect.forkIn(Scope.close(entry.scope, Exit.void), layerScope), Fiber.await).pipe(Effect.asVoid)

  /** Delete the task, record the exit, the consumer's handler: one exit's handling. */
  const handleOne = (entry: MonitorEntry) => (event: ExitEvent): Effect.Effect<void, unknown> =>
    Effect.suspend(() => {
      if (entries.get(entry.key) !== entry) return Effect.void
      const token = {}
      entry.handling = token
      return deps.ops.finishExit(publicOf(entry), event.task, event.exit).pipe(
        Effect.andThen(Effect.sync(() => {
          if (entry.task === event.task) entry.task = undefined
        })),
        Effect.andThen(deps.handle(event.exit)),
        Effect.provideService(CurrentHandling, token),
        Effect.ensuring(Effect.suspend(() => {
          if (entry.handling === token) entry.handling = undefined
          // Removed by its handler: this was its last handling. Closing interrupts
          // the fiber that runs it, so the close runs beside it.
          return entry.closeWhenHandled
            ? Effect.asVoid(Effect.forkIn(Scope.close(entry.scope, Exit.void), layerScope))
            : Effect.void
        }))
      )
    })

  const handlingOf = (entry: MonitorEntry): ContainerHandling<ExitEvent> => ({
    key: entry.key,
    lock: lockOf(entry),
    scope: entry.scope,
    backoff: deps.backoff,
    bound: handlingBound,
    handle: handleOne(entry)
  })

  /** Gives the container's monitor fiber something to watch, starting the fiber if there is none. */
  const enqueueWatch = (entry: MonitorEntry, watched: Watched<ExitEvent>) =>
    Effect.suspend(() => {
      entry.watches.push(watched)
      if (entry.monitor !== undefined) return Effect.void
      // Decided in one step with the fiber's own "nothing left": never two, never none.
      const next = Effect.suspend(() => {
        const first = entry.watches.shift()
        if (first !== undefined) return Effect.succeed(first)
        setMonitor(entry, undefined)
        return Effect.as(publish, undefined)
      })
      return Effect.flatMap(Effect.forkIn(exitMonitor(next, handlingOf(entry)), entry.scope), (fiber) => {
        if (fiber.pollUnsafe() !== undefined) return Effect.void
        setMonitor(entry, fiber)
        return publish
      })
    })

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
          deletingTask: false,
          watches: [],
          monitor: undefined,
          handling: undefined,
          removing: false,
          deletedMeanwhile: false,
          closeWhenHandled: false
        }
        entries.set(key, entry)
        yield* publish
        yield* Scope.addFinalizer(scope, Effect.gen(function*() {
          if (entries.get(key) === entry) entries.delete(key)
          yield* deps.backoff.remove(key)
          entry.watches.length = 0
          setMonitor(entry, undefined)
          yield* publish
          entry.task = undefined
          entry.container = undefined
          yield* setState(entry, { status: "deleted" })
        }))
        yield* PubSub.publish(changes, entry.state)
        return entry
      })
    })

  const exitOf = (entry: MonitorEntry, status: ExitStatus, recovered: boolean): ContainerExit => ({
    namespace: entry.namespace,
    containerId: entry.id,
    status,
    oomKilled: entry.state.oomKilled,
    recovered
  })

  /** Watches a started task: its exit is recorded at once and handled in order. */
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
      yield* enqueueWatch(entry, {
        wait: options.wait,
        exited: (status) => Effect.as(setState(entry, exitedPatch(status)), { exit: exitOf(entry, status, false), task })
      })
    })

  /** Has an exit found without a monitor (at recovery) handled, in order, by the container's monitor. */
  const dispatch = (entry: MonitorEntry, status: ExitStatus, task: Task | undefined) =>
    Effect.andThen(
      setState(entry, exitedPatch(status)),
      enqueueWatch(entry, { wait: Effect.succeed(status), exited: () => Effect.succeed({ exit: exitOf(entry, status, true), task }) })
    )

  /**
   * Runs `body` (which deletes the container) after any handling in flight, and
   * closes the entry once it succeeded. From inside the container's own handling
   * it runs at once, and the entry closes when that handling ends.
   */
  const exclusive = <E>(entry: MonitorEntry, body: Effect.Effect<void, E>) =>
    Effect.gen(function*() {
      const own = entry.handling !== undefined && (yield* CurrentHandling) === entry.handling
      const removal = Effect.gen(function*() {
        entry.removing = true
        const result = yield* Effect.exit(body)
        if (Exit.isFailure(result)) {
          entry.removing = false
          if (entry.deletedMeanwhile) yield* close(entry)
          return yield* result
        }
        if (own) entry.closeWhenHandled = true
        // Still holding the lock: a retry waiting for it must find the container gone.
        else yield* close(entry)
      })
      yield* own ? removal : lockOf(entry).withPermit(removal)
    })

  // Deletions by others, OOM, pause and resume, and reconciling after missed events.
  const stream = yield* deps.events.subscribe({
    tags: ["ContainerDelete", "TaskDelete", "TaskOOM", "TaskPaused", "TaskResumed", "NamespaceDelete"]
  })
  const tracked = (entry: MonitorEntry) => () => entries.get(entry.key) === entry
  const onContainerDelete = (entry: MonitorEntry) =>
    Effect.suspend(() => {
      if (!entry.removing) return close(entry)
      // Our own removal's: it closes the entry itself.
      entry.deletedMeanwhile = true
      return Effect.void
    })
  const onTaskDelete = (entry: MonitorEntry) =>
    Effect.gen(function*() {
      if (entry.deletingTask) {
        entry.deletingTask = false
        return
      }
      // Someone else deleted the task: is the container gone too?
      const exists = yield* retryWhile(
        `checking whether container ${entry.id} still exists`,
        deps.ops.exists(entry.namespace, entry.id),
        tracked(entry)
      )
      if (!exists) yield* onContainerDelete(entry)
    }).pipe(
      // Only when the entry closed while we asked: nothing is left to check.
      Effect.catch(() => Effect.void)
    )
  const reconcileNamespace = (namespace: string) =>
    retryForever(`listing the containers of namespace ${namespace} after missed events`, deps.ops.ids(namespace)).pipe(
      Effect.flatMap((ids) =>
        Effect.forEach(
          [...entries.values()].filter((e) => e.namespace === namespace && !ids.has(e.id)),
          onContainerDelete,
          { discard: true }
        )
      )
    )
  const reconcile = Effect.suspend(() =>
    Effect.forEach(new Set([...entries.values()].map((e) => e.namespace)), reconcileNamespace, { discard: true })
  )
  // One reconcile at a time: a later Resynced starts it over.
  const reconciling = yield* FiberHandle.make<void, ContainerdError>()
  yield* stream.pipe(
    Stream.runForEach((message) => {
      if (message._tag === "Resynced") return Effect.asVoid(FiberHandle.run(reconciling, reconcile))
      if (message._tag === "NamespaceDelete") {
        return Effect.forEach([...entries.values()].filter((e) => e.namespace === message.name), close, { discard: true })
      }
      const entry = entries.get(keyOf(message.namespace, message._tag === "ContainerDelete" ? message.id : message.containerId))
      if (entry === undefined) return Effect.void
      switch (message._tag) {
        case "ContainerDelete":
          return onContainerDelete(entry)
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

  // At shutdown, before the entries close: a task outlives us, and so does its
  // network attachment, for the next start's recovery to adopt (or release, if
  // the task is gone by then); only a task's deletion or its container's ends it.
  yield* Effect.addFinalizer(() =>
    Effect.forEach(
      [...entries.values()].filter((e) => e.task !== undefined && !e.task.deleted),
      (e) => e.task?.keepAttachment ?? Effect.void,
      { discard: true }
    )
  )

  // At shutdown, before the entries close: label what is still running. Bounded:
  // shutting down cannot wait for containerd forever, and a mark that is missing
  // only costs the report of an exit that happens while we are down *and* whose
  // task is deleted behind our back.
  yield* Effect.addFinalizer(() =>
    Effect.forEach(
      [...entries.values()].filter((e) => e.state.status === "running" || e.state.status === "paused"),
      (e) =>
        retryForever(`marking ${e.id} as running`, deps.ops.markRunning(e.namespace, e.id, e.state.startedAt ?? new Date())).pipe(
          Effect.timeoutOption("5 seconds"),
          Effect.flatMap((marked) =>
            marked._tag === "Some" ? Effect.void : Effect.logError(`could not mark ${e.id} as running before stopping`)
          )
        ),
      { concurrency: 16, discard: true }
    )
  )

  return {
    track,
    watch,
    dispatch,
    exclusive,
    setState,
    markDeletingTask: (entry: MonitorEntry) => Effect.sync(() => void (entry.deletingTask = true)),
    entry: (namespace: string, id: string) => Effect.sync(() => Option.fromUndefinedOr(entries.get(keyOf(namespace, id)))),
    isTracked: (entry: MonitorEntry) => entries.get(entry.key) === entry,
    publicOf,
    states: Effect.sync(() => [...entries.values()].map((e) => e.state)),
    changes: Effect.map(PubSub.subscribe(changes), Stream.fromSubscription)
  }
})

/** The engine's API. */
export type MonitorsCore = Effect.Success<ReturnType<typeof makeMonitorsCore>>
