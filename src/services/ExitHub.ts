/**
 * The exit hub: the one place that answers "how did process P of container C end?".
 *
 * It follows containerd's runc shim, which had to learn this the hard way:
 * subscribe to exits before starting a process, publish an exit only once its
 * start is recorded, discard exits of PIDs you did not start.
 *
 * - `awaitExit(container, exec)` registers interest and returns the effect that
 *   waits. Register before asking containerd to start the process: an exit that
 *   arrives before the start RPC returns (a process that ends at once) is held in
 *   the registration and delivered once the start is recorded — by `start` (or
 *   `started(pid)`) from the caller or by the TaskStart / TaskExecStarted event,
 *   whichever comes first. So nobody ever sees an exit before its start.
 * - A task's init exists before it is started (`created(pid)`, after
 *   Tasks.Create). If it dies then — killed, or OOM in `runc init` — while no
 *   start is in flight, its exit is delivered as it is (containerd's
 *   TestIssue9103: the task is stopped). A start that fails delivers the exit it
 *   held, or asks containerd (`Tasks.Get`, retried) how the process is: stopped
 *   → its status, gone → `ExitUnknown`, started after all → watched as started,
 *   still created → it keeps waiting.
 * - An exit whose PID is not the registered process's (a previous incarnation, a
 *   reparented child) is dropped. Exits for processes nobody registered are
 *   dropped on the spot: the hub keeps no state for them. A process is delivered
 *   once; duplicates find no registration.
 * - There is no lock: registrations are entries of one map, each with its own
 *   `Deferred`, and the one fiber reading events handles each in O(1).
 * - On `Resynced` (events may have been missed), every pending registration is
 *   reconciled with `Tasks.Get`: a stopped process completes with its real status;
 *   a started process whose task is gone completes with `ExitUnknown` (code 255,
 *   flagged); a running one keeps waiting. A failed `Tasks.Get` is retried until
 *   it answers or the registration goes; a later `Resynced` starts the reconcile
 *   over. Waiting costs no RPC otherwise — `Tasks.Wait` is never used.
 * - Registration is scoped: closing the scope removes it.
 */
import { Context, Deferred, Effect, FiberHandle, Layer, Metric, Scope, Stream } from "effect"
import type { ContainerdError } from "../domain/ContainerdError.ts"
import type { ContainerdEvent, EventMessage } from "../domain/Event.ts"
import { Exited, exitedOf, exitUnknown, type ExitStatus } from "../domain/ExitStatus.ts"
import { compositeKey } from "../internal/Key.ts"
import { validateIdentifier } from "../domain/Identifier.ts"
import { Status } from "../gen/containerd/types/task/task.ts"
import { retryWhile } from "../internal/Retry.ts"
import { Containerd, withNamespace } from "./Containerd.ts"
import { Events, type EventsShape } from "./Events.ts"

/** Registrations waiting for an exit. */
export const ExitWaitsPending = Metric.gauge("effect_containerd_exit_waits_pending", {
  description: "processes whose exit someone is waiting for"
})

/** What containerd says about a process when the hub reconciles. */
export type ProcessState =
  | { readonly _tag: "Created"; readonly pid: number }
  | { readonly _tag: "Running"; readonly pid: number }
  | { readonly _tag: "Stopped"; readonly exit: Exited }
  | { readonly _tag: "Missing" }

/** Asks containerd for the state of one process (in the given namespace). */
export type ProcessLookup = (
  namespace: string,
  containerId: string,
  execId: string
) => Effect.Effect<ProcessState, ContainerdError>

/** Options of `awaitExit`. */
export interface AwaitExitOptions {
  /** The PID of a process already started (e.g. found running at recovery); its exits are delivered at once. */
  readonly pid?: number | undefined
}

/** The exit hub service. */
export interface ExitHubShape {
  /**
   * Registers for the exit of process `execId` (empty for the init) of
   * `containerId` in the current namespace, and returns the effect that waits for
   * it. The registration lives until the scope closes.
   */
  readonly awaitExit: (
    containerId: string,
    execId?: string,
    options?: AwaitExitOptions
  ) => Effect.Effect<Effect.Effect<ExitStatus>, ContainerdError, Scope.Scope>
  /**
   * Starts a registered process with `start` (the Tasks.Start call, answering
   * its pid): exits wait until it has answered; then the start is recorded, or,
   * if it failed, the process's fate is found out (see the module header).
   */
  readonly start: <E, R>(
    containerId: string,
    execId: string,
    start: Effect.Effect<{ readonly pid: number }, E, R>
  ) => Effect.Effect<number, E, R>
  /** Records that a process runs as `pid` (started elsewhere, or found running); an exit held for it is delivered now. */
  readonly started: (containerId: string, execId: string, pid: number) => Effect.Effect<void>
  /** Records that a process exists as `pid` but is not started (a task's init after Tasks.Create). */
  readonly created: (containerId: string, execId: string, pid: number) => Effect.Effect<void>
}

interface Entry {
  readonly key: string
  readonly namespace: string
  readonly containerId: string
  readonly execId: string
  readonly deferred: Deferred.Deferred<ExitStatus>
  refs: number
  /** Set once the start is recorded. */
  pid: number | undefined
  /** The PID of the process while it exists unstarted (a created task's init). */
  createdPid: number | undefined
  /** Starts in flight: while any is, exits are held. */
  starting: number
  /** Exits that arrived before the start was recorded, by PID. */
  early: Map<number, ExitStatus> | undefined
  /** The container hit its memory limit (init registrations only). */
  oom: boolean
}

const keyOf = (namespace: string, containerId: string, execId: string) => compositeKey(namespace, containerId, execId)

/** The exec id of an exit or delete event: the init process is reported under the container's id, or empty. */
const execIdOf = (event: { readonly containerId: string; readonly id: string }) =>
  event.id === event.containerId ? "" : event.id

/** Builds the hub over an event stream and a process lookup; its event fiber lives in the current scope. */
export const makeExitHub = Effect.fnUntraced(function*(deps: {
  readonly events: EventsShape
  readonly lookup: ProcessLookup
  readonly currentNamespace: Effect.Effect<string>
  /** How many `Tasks.Get` calls a reconcile makes at once; default 16. */
  readonly resyncConcurrency?: number | undefined
}) {
  const entries = new Map<string, Entry>()
  const updateGauge = Effect.suspend(() => Metric.update(ExitWaitsPending, entries.size))
  // A new hub starts the gauge from its own count (one hub per process; tests make several in turn).
  yield* updateGauge

  // The hub's own operations are synchronous: they run for every event, and one
  // chunk of events is handled in one step. Callers update the gauge afterwards.

  const deliver = (entry: Entry, status: ExitStatus): void => {
    if (entries.get(entry.key) === entry) entries.delete(entry.key)
    const reported = entry.oom && status._tag === "Exited" ? new Exited({ ...status, oomKilled: true }) : status
    Deferred.doneUnsafe(entry.deferred, Effect.succeed(reported))
  }

  const recordStart = (key: string, pid: number): void => {
    const entry = entries.get(key)
    if (entry === undefined || entry.pid !== undefined) return
    entry.pid = pid
    const held = entry.early?.get(pid)
    entry.early = undefined
    if (held !== undefined) deliver(entry, held)
  }

  const recordExit = (key: string, status: ExitStatus): void => {
    const entry = entries.get(key)
    if (entry === undefined) return
    if (entry.pid !== undefined) {
      if (entry.pid === status.pid) deliver(entry, status)
      return
    }
    // Died before it was started, and no start can still be answered.
    if (entry.createdPid === status.pid && entry.starting === 0) return deliver(entry, status)
    ;(entry.early ??= new Map()).set(status.pid, status)
  }

  const recordCreated = (key: string, pid: number): void => {
    const entry = entries.get(key)
    if (entry === undefined || entry.pid !== undefined) return
    entry.createdPid = pid
    const held = entry.starting === 0 ? entry.early?.get(pid) : undefined
    if (held !== undefined) deliver(entry, held)
  }

  const gone = (entry: Entry, reason: string): void =>
    deliver(entry, exitUnknown(entry.pid ?? entry.createdPid ?? 0, reason))

  /** Whether the process exists for us: started, or created with no start in flight. */
  const exists = (entry: Entry) => entry.pid !== undefined || (entry.createdPid !== undefined && entry.starting === 0)

  /** Applies what containerd says of a pending process (after missed events, or a failed start). */
  const apply = (entry: Entry, state: ProcessState, when: string): void => {
    if (entries.get(entry.key) !== entry) return
    switch (state._tag) {
      case "Stopped":
        return entry.pid !== undefined && entry.pid !== state.exit.pid
          ? gone(entry, `process ${entry.pid} was replaced by ${state.exit.pid} ${when}`)
          : recordExit(entry.key, state.exit)
      case "Missing":
        // Not created yet (or a start still to answer): the create or the start will tell.
        return exists(entry) ? gone(entry, `the process's task was deleted ${when}`) : undefined
      case "Running":
        if (entry.pid === undefined) return state.pid === 0 ? undefined : recordStart(entry.key, state.pid)
        return state.pid !== 0 && state.pid !== entry.pid
          ? gone(entry, `process ${entry.pid} was replaced by ${state.pid} ${when}`)
          : undefined
      case "Created":
        return
    }
  }

  /** Asks containerd about a pending process until it answers or nobody waits any more. */
  const lookUp = (entry: Entry, when: string) =>
    retryWhile(
      "looking up a process whose exit is awaited",
      deps.lookup(entry.namespace, entry.containerId, entry.execId),
      () => entries.get(entry.key) === entry
    ).pipe(
      Effect.flatMap((state) => Effect.andThen(Effect.sync(() => apply(entry, state, when)), updateGauge)),
      // Only when the registration went while failing: nobody waits for the answer.
      Effect.catch(() => Effect.void)
    )

  const reconcile = Effect.suspend(() =>
    Effect.forEach([...entries.values()], (entry) => lookUp(entry, "while events were missed"), {
      concurrency: deps.resyncConcurrency ?? 16,
      discard: true
    })
  )

  const onEvent = (event: ContainerdEvent): void => {
    switch (event._tag) {
      case "TaskStart":
        return recordStart(keyOf(event.namespace, event.containerId, ""), event.pid)
      case "TaskExecStarted":
        return recordStart(keyOf(event.namespace, event.containerId, event.execId), event.pid)
      case "TaskOOM": {
        // Ordered with the exit on this one stream: containerd publishes OOM before the exit.
        const entry = entries.get(keyOf(event.namespace, event.containerId, ""))
        if (entry !== undefined) entry.oom = true
        return
      }
      case "TaskExit":
      case "TaskDelete":
        return recordExit(
          keyOf(event.namespace, event.containerId, execIdOf(event)),
          exitedOf(event)
        )
    }
  }

  const stream = yield* deps.events.subscribe({ tags: ["TaskStart", "TaskExecStarted", "TaskExit", "TaskDelete", "TaskOOM"] })
  const scope = yield* Effect.scope
  // One reconcile at a time: a later Resynced starts it over, for every registration.
  const reconciling = yield* FiberHandle.make<void, never>()
  yield* stream.pipe(
    Stream.runForEachArray((messages: ReadonlyArray<EventMessage>) =>
      Effect.suspend(() => {
        let resynced = false
        for (const message of messages) {
          if (message._tag === "Resynced") resynced = true
          else onEvent(message)
        }
        return Effect.andThen(updateGauge, resynced ? Effect.asVoid(FiberHandle.run(reconciling, reconcile)) : Effect.void)
      })
    ),
    Effect.forkScoped
  )

  const awaitExit = (containerId: string, execId = "", options?: AwaitExitOptions) =>
    Effect.withSpan("ExitHub.awaitExit")(Effect.gen(function*() {
      yield* validateIdentifier("ExitHub.awaitExit", "container id", containerId)
      if (execId !== "") yield* validateIdentifier("ExitHub.awaitExit", "exec id", execId)
      const namespace = yield* deps.currentNamespace
      const key = keyOf(namespace, containerId, execId)
      let entry = entries.get(key)
      if (entry === undefined) {
        entry = {
          key,
          namespace,
          containerId,
          execId,
          deferred: Deferred.makeUnsafe<ExitStatus>(),
          refs: 0,
          pid: undefined,
          createdPid: undefined,
          starting: 0,
          early: undefined,
          oom: false
        }
        entries.set(key, entry)
      }
      entry.refs++
      // One finalizer per registration: hosts register thousands. Added to the scope bare, not with
      // `Effect.addFinalizer`, which would keep this span's context (~1 KB) for as long as it waits.
      const registered = entry
      yield* Scope.addFinalizer(yield* Effect.scope, release(registered))
      yield* updateGauge
      if (options?.pid !== undefined) recordStart(key, options.pid)
      return Deferred.await(entry.deferred)
    }))

  const release = (entry: Entry) =>
    Effect.suspend(() => {
      entry.refs--
      if (entry.refs === 0 && entries.get(entry.key) === entry) entries.delete(entry.key)
      return updateGauge
    })

  const record = (span: string, f: (key: string, pid: number) => void) => (containerId: string, execId: string, pid: number) =>
    Effect.flatMap(deps.currentNamespace, (namespace) =>
      Effect.andThen(Effect.sync(() => f(keyOf(namespace, containerId, execId), pid)), updateGauge)).pipe(Effect.withSpan(span))

  /** After a failed start: the exit it held, or what containerd says (looked up in the hub's scope). */
  const startFailed = (entry: Entry): Effect.Effect<void> => {
    if (entries.get(entry.key) !== entry || entry.pid !== undefined || entry.starting > 0) return Effect.void
    const held = entry.createdPid !== undefined
      ? entry.early?.get(entry.createdPid)
      : entry.early?.size === 1
      ? [...entry.early.values()][0]
      : undefined
    if (held !== undefined) return Effect.andThen(Effect.sync(() => deliver(entry, held)), updateGauge)
    return Effect.asVoid(Effect.forkIn(lookUp(entry, "when its start failed"), scope))
  }

  // No span of its own: it passes the caller's start (Tasks.Start, inside Process.start's span) through unchanged.
  const start = <E, R>(containerId: string, execId: string, run: Effect.Effect<{ readonly pid: number }, E, R>) =>
    Effect.flatMap(deps.currentNamespace, (namespace) => {
      const entry = entries.get(keyOf(namespace, containerId, execId))
      if (entry === undefined) return Effect.map(run, ({ pid }) => pid)
      return Effect.uninterruptibleMask((restore) => {
        entry.starting++
        return restore(run).pipe(
          Effect.onExit((exit) =>
            Effect.suspend(() => {
              entry.starting--
              if (exit._tag === "Success") {
                recordStart(entry.key, exit.value.pid)
                return updateGauge
              }
              return startFailed(entry)
            })
          ),
          Effect.map(({ pid }) => pid)
        )
      })
    })

  return ExitHub.of({
    awaitExit,
    start,
    started: record("ExitHub.started", recordStart),
    created: record("ExitHub.created", recordCreated)
  })
})

/** `Tasks.Get` as a process lookup. */
export const containerdLookup = (client: Containerd["Service"]): ProcessLookup => (namespace, containerId, execId) =>
  client.tasks.get({ containerId, execId }).pipe(
    withNamespace(namespace),
    Effect.map(({ process }): ProcessState =>
      process?.status === Status.STOPPED
        ? { _tag: "Stopped", exit: exitedOf(process) }
        : process?.status === Status.CREATED
        ? { _tag: "Created", pid: process.pid }
        : { _tag: "Running", pid: process?.pid ?? 0 }
    ),
    Effect.catchReason("ContainerdError", "NotFound", () => Effect.succeed<ProcessState>({ _tag: "Missing" }))
  )

/** The exit hub service. */
export class ExitHub extends Context.Service<ExitHub, ExitHubShape>()("effect-containerd/ExitHub") {
  /** The hub over the `Events` stream, reconciling with the `Containerd` client. */
  static readonly layer: Layer.Layer<ExitHub, never, Events | Containerd> = Layer.effect(
    ExitHub,
    Effect.gen(function*() {
      const client = yield* Containerd
      return yield* makeExitHub({
        events: yield* Events,
        lookup: containerdLookup(client),
        currentNamespace: client.currentNamespace
      })
    })
  )
}
