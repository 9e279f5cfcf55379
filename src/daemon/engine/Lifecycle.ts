/**
 * The lifecycle verbs, as moby's `daemon/start.go`, `stop.go`, `kill.go`,
 * `pause.go`, `wait.go`, `delete.go` and `monitor.go`: start, stop, restart,
 * kill, pause, unpause, wait and remove, and what the engine does with each exit
 * (the end of its output, its events, then AutoRemove or the restart policy).
 * State changes go through `State.transition`; restarts through the container's
 * `RestartManager`; pending restarts and removals are fibers keyed by container;
 * each run's health monitor (`Health.ts`) begins with its start and ends with its exit.
 */
import { Deferred, Duration, Effect, Fiber, FiberMap, Option, PubSub, Stream } from "effect"
import { applyOptions, type SpecOption } from "../../domain/OciSpec.ts"
import { signalNumber } from "../../domain/Signal.ts"
import { withNamespace } from "../../services/Containerd.ts"
import type { ContainerExit, MonitorsShape } from "../../services/Monitors.ts"
import { Stdio, type Task } from "../../services/Runtime.ts"
import { badRequest, conflict, type DockerError, internal } from "../DockerError.ts"
import { containerDir } from "../LogFiles.ts"
import { removeContainerTree, shmPathIn } from "../Shm.ts"
import { stopSignalOf } from "./Config.ts"
import {
  type Environment,
  inNamespace,
  lib,
  type Notice,
  publish,
  setLabels,
  shimLogged,
  targetOf,
  taskOf,
  taskStatusOf,
  trackedOf
} from "./Environment.ts"
import type { Execs } from "./Exec.ts"
import { makeHealth } from "./Health.ts"
import { networkAtStart, startNetworkError } from "./Networking.ts"
import { type Join, joinOptions, joinRefusal } from "./Resources.ts"
import type { WaitCondition } from "./Shape.ts"
import { isPaused, isRunning, status, type Transition, transition } from "./State.ts"
import { DaemonLabels, type Entry } from "./Store.ts"
import { abandonRun, endRun, inputOf, pump } from "./Streams.ts"
import { stateOf } from "./Views.ts"

/** The donors' namespaces a container joins (`container:<id>` pid and IPC modes), found at each start as dockerd does. */
const joinsAtStart = (env: Environment, logRoot: string, entry: Entry): Effect.Effect<SpecOption | undefined, DockerError> =>
  Effect.gen(function*() {
    const host = entry.stored.HostConfig
    const joins: Array<Join> = (["pid", "ipc", "network"] as const).flatMap((type) => {
      const mode = (type === "pid" ? host.PidMode : type === "ipc" ? host.IpcMode : host.NetworkMode) ?? ""
      return mode.startsWith("container:") ? [{ type, container: mode.slice("container:".length) }] : []
    })
    if (joins.length === 0) return undefined
    const found = yield* Effect.forEach(joins, (join) =>
      Effect.gen(function*() {
        const donor = env.store.get(join.container)
        const tracked = donor === undefined ? undefined : yield* trackedOf(env, donor)
        const running = isRunning(tracked?.state.status) && tracked?.state.pid !== undefined
        const ipcMode = donor?.stored.HostConfig.IpcMode ?? ""
        const refusal = joinRefusal(join, join.container, { running, ipcMode })
        if (refusal !== undefined) return yield* Effect.fail(conflict(refusal))
        const shm = ipcMode === "host" ? "/dev/shm" : shmPathIn(containerDir(logRoot, join.container))
        return { type: join.type, pid: tracked!.state.pid, shm }
      }))
    const options = joinOptions(found)
    return (spec) => applyOptions(spec, options)
  })

/** dockerd's default stop timeout, in seconds. */
const DEFAULT_STOP_TIMEOUT = 10
/** A killed process that does not go in this long is reported, not waited on forever. */
const KILL_GRACE = Duration.seconds(30)
/** How long a removal waits for the readers of the container's log to finish. */
const FOLLOWERS_TIMEOUT = Duration.seconds(5)
/** How long a start waits for the previous run's exit to be handled (the task deleted, the log closed). */
const SETTLE_TIMEOUT = Duration.seconds(30)

/** How a stop asks first: a signal, and how long (seconds; negative: forever) before SIGKILL. */
interface Grace {
  readonly signal: string
  readonly seconds: number
}

/** The lifecycle verbs over the engine's environment; its fibers live in the caller's scope. */
export const makeLifecycle = Effect.fnUntraced(function*(env: Environment, execs: Execs) {
  const { monitors, store, options } = env
  const ns = inNamespace(env)
  /** Pending policy restarts and automatic removals, per container. */
  const pending = yield* FiberMap.make<string>()
  /** Each running container's output pump. */
  const pumps = yield* FiberMap.make<string>()
  /** Each running container's health monitor. */
  const health = yield* makeHealth(env, execs)

  /** Moves the container's state by `step`; 409 with Docker's message when it may not. */
  const step = (entry: Entry, next: Transition) =>
    Effect.flatMap(taskStatusOf(env, entry), (task) => {
      const moved = transition(task, entry.phase, next)
      if (moved._tag === "Failure") return Effect.fail(conflict(moved.failure.replace("{id}", entry.id)))
      entry.phase = moved.success
      return Effect.void
    })

  /**
   * A pending restart or removal of the container, run in the engine's scope (never
   * inside the exit handler's lock). A policy restart replaces what is pending; a
   * removal or a restore at start is kept if something is pending already.
   */
  const schedule = (entry: Entry, effect: Effect.Effect<void, DockerError>, kind: "restart" | "remove" | "restore") =>
    FiberMap.run(
      pending,
      entry.id,
      effect.pipe(Effect.catch((error) => Effect.logWarning(`container ${entry.id}: ${error.message}`))),
      { onlyIfMissing: kind !== "restart" }
    ).pipe(Effect.asVoid)

  const cancelPending = (entry: Entry) => Effect.andThen(step(entry, { _tag: "CancelRestart" }), FiberMap.remove(pending, entry.id))

  const autoRemove = (entry: Entry) => entry.stored.HostConfig.AutoRemove === true

  /** Waits until the engine has handled the last run's exit (the task is deleted): a start may follow. */
  const settled = (entry: Entry) =>
    Effect.suspend(() =>
      entry.handled === undefined ? Effect.void : Effect.asVoid(Effect.timeoutOption(Deferred.await(entry.handled), SETTLE_TIMEOUT))
    )

  /** Starts a run: its stdio drained by a pump (or written by the shim's logger), then `start`. */
  const startRun = (entry: Entry) =>
    Effect.gen(function*() {
      const target = targetOf(env, entry)
      const spec = yield* joinsAtStart(env, options.logRoot, entry)
      const network = yield* networkAtStart(env, entry)
      // Its hosts file with its own address and the members it will see, written once it is attached
      // and before its process exists: the first read already finds them.
      const onAttached = network === undefined ? undefined : () => env.hosts.refresh([entry.id])
      const started = (stdio: Stdio) =>
        lib(ns(monitors.start(entry.id, { stdio, spec, network, onAttached })), `cannot start container ${entry.id}`).pipe(
          Effect.mapError((error) => startNetworkError(entry, error))
        )
      if (target.shimLogged) {
        yield* started(Stdio.binary(options.shimLogger!, options.logRoot))
        // Its output ends when the task is deleted (the shim waits for the logger then): see handleRunEnd.
        entry.output.streaming = true
        return yield* publish(env, entry, "start")
      }
      if (target.openStdin) yield* inputOf(entry.output)
      const task = yield* started(Stdio.pipe({ stdin: target.openStdin }))
      entry.output.streaming = true
      yield* FiberMap.run(pumps, entry.id, pump(target, task))
      yield* publish(env, entry, "start")
    })

  /** Starts the task; its exit, once handled, completes `handled`. The caller holds the container's lock. */
  const startTask = (entry: Entry) =>
    Effect.gen(function*() {
      yield* step(entry, { _tag: "Start" })
      const handled = yield* Deferred.make<void>()
      entry.handled = handled
      // A run that could not start ends at once for whoever attached to it (an attached `docker run`).
      yield* startRun(entry).pipe(Effect.onError(() => Effect.andThen(abandonRun(entry.output), Deferred.succeed(handled, undefined))))
      yield* health.begin(entry)
    })

  /** `startTask` under the container's lock: a removal cannot begin until the task runs, nor a start follow one. */
  const startLocked = (entry: Entry) => entry.lock.withPermit(startTask(entry))

  /** Forgets a stop by hand: the policy applies again. */
  const clearStopped = (entry: Entry) =>
    Effect.gen(function*() {
      if (!entry.restarts.manuallyStopped) return
      entry.restarts.setManuallyStopped(false)
      yield* setLabels(env, entry, { [DaemonLabels.stopped]: "" })
    })

  /** Records a stop by hand, so `always` and `unless-stopped` leave it stopped (across daemon restarts too). */
  const markStopped = (entry: Entry) =>
    Effect.gen(function*() {
      yield* cancelPending(entry)
      if (entry.restarts.manuallyStopped) return
      entry.restarts.setManuallyStopped(true)
      if (entry.restarts.policy.name !== "no") yield* setLabels(env, entry, { [DaemonLabels.stopped]: "true" })
    })

  const ignoreGone = <A, R>(effect: Effect.Effect<A, DockerError, R>) =>
    Effect.catchIf(effect, (e) => e.status === 404, () => Effect.void)

  /**
   * Ends a task: with a `grace`, its signal and up to that long for the exit; then
   * SIGKILL to all its processes and `KILL_GRACE` for them to go.
   */
  const terminate = (entry: Entry, task: Task, grace: Grace | undefined) =>
    Effect.gen(function*() {
      if (grace !== undefined) {
        if (grace.seconds !== 0) {
          yield* publish(env, entry, "kill", { signal: String(signalNumber(grace.signal)) })
          yield* ignoreGone(lib(task.kill(grace.signal)))
        }
        const inTime = grace.seconds < 0
          ? yield* Effect.asSome(task.wait)
          : yield* Effect.timeoutOption(task.wait, Duration.seconds(grace.seconds))
        if (Option.isSome(inTime)) return
      }
      yield* publish(env, entry, "kill", { signal: "9" })
      yield* ignoreGone(lib(task.kill("SIGKILL", { all: true })))
      if (Option.isNone(yield* Effect.timeoutOption(task.wait, KILL_GRACE))) {
        return yield* Effect.fail(internal(`container ${entry.id} did not exit after SIGKILL`))
      }
    })

  /** Stops the task if it runs (false if it did not): the stop signal, the timeout, then SIGKILL. */
  const stopTask = (entry: Entry, signal: string | undefined, timeout: number | undefined) =>
    Effect.gen(function*() {
      const tracked = yield* trackedOf(env, entry)
      if (tracked?.task === undefined || !isRunning(tracked.state.status)) return false
      const stopSignal = signal || stopSignalOf(entry.config)
      if (signalNumber(stopSignal) === undefined) return yield* Effect.fail(badRequest(`invalid signal: ${stopSignal}`))
      const seconds = timeout ?? entry.stored.Config.StopTimeout ?? DEFAULT_STOP_TIMEOUT
      yield* terminate(entry, tracked.task, { signal: stopSignal, seconds })
      return true
    })

  /** The exit of one run, in order: the end of its output, its events, then AutoRemove or the restart policy. */
  const handleRunEnd = (entry: Entry, exit: ContainerExit, self: MonitorsShape) =>
    Effect.gen(function*() {
      const code = exit.status.code
      const tracked = yield* self.get(entry.id).pipe(withNamespace(options.namespace))
      const startedAt = Option.getOrUndefined(tracked)?.state.startedAt?.getTime()
      const restart = entry.restarts.restarts(code, entry.phase._tag === "Removing" || autoRemove(entry))
      yield* health.end(entry)
      yield* step(entry, { _tag: "Exit", restart })
      // The task is deleted, so the shim has waited for its logger: the log is whole.
      if (shimLogged(env, entry) && entry.output.streaming) yield* endRun(entry.output)
      if (exit.oomKilled) yield* publish(env, entry, "oom")
      yield* publish(env, entry, "die", { exitCode: String(code) })
      yield* PubSub.publish(env.notices, { _tag: "Exit", id: entry.id, code } satisfies Notice)
      // An exit found at recovery whose container the restore already took care of.
      if (exit.recovered && (yield* FiberMap.has(pending, entry.id))) return
      if (autoRemove(entry) && entry.phase._tag !== "Removing") {
        return yield* schedule(entry, remove(entry.id, { force: false }), "remove")
      }
      if (!restart) return
      const delay = yield* entry.restarts.nextDelay(startedAt)
      yield* schedule(
        entry,
        Effect.gen(function*() {
          yield* Effect.sleep(delay)
          if (entry.phase._tag !== "Restarting" || store.get(entry.id) === undefined) return
          const count = yield* entry.restarts.restarted
          yield* setLabels(env, entry, { [DaemonLabels.restartCount]: String(count) })
          yield* startLocked(entry)
        }),
        "restart"
      )
    })

  /** What the engine does with an exit, after the monitors deleted the task and recorded it. */
  const handleExit = (exit: ContainerExit, self: MonitorsShape) =>
    Effect.suspend(() => {
      const entry = store.get(exit.containerId)
      if (entry === undefined) return Effect.void
      const handled = entry.handled
      return handleRunEnd(entry, exit, self).pipe(
        Effect.ensuring(handled === undefined ? Effect.void : Deferred.succeed(handled, undefined))
      )
    })

  const start = Effect.fn("Engine.start")(function*(ref: string) {
    const entry = yield* store.find(ref)
    // As moby's containerStart, under the container's lock from the checks until the task runs: a
    // removal racing it either marked itself first (409 here) or waits, then finds the task running.
    return yield* entry.lock.withPermit(Effect.gen(function*() {
      if (entry.phase._tag === "Removing") yield* step(entry, { _tag: "Start" })
      if (isRunning(yield* taskStatusOf(env, entry))) return { alreadyRunning: true }
      yield* cancelPending(entry)
      yield* settled(entry)
      yield* clearStopped(entry)
      // As dockerd: a --rm container that cannot start is removed.
      yield* startTask(entry).pipe(Effect.onError(() =>
        autoRemove(entry) ? schedule(entry, remove(entry.id, { force: true }), "remove") : Effect.void
      ))
      return { alreadyRunning: false }
    }))
  })

  const stop = Effect.fn("Engine.stop")(function*(
    ref: string,
    stopOptions?: { readonly signal?: string | undefined; readonly timeout?: number | undefined }
  ) {
    const entry = yield* store.find(ref)
    const wasRestarting = entry.phase._tag === "Restarting"
    yield* markStopped(entry)
    if (!(yield* stopTask(entry, stopOptions?.signal, stopOptions?.timeout))) return { alreadyStopped: !wasRestarting }
    // As dockerd, stopped means cleaned up: a start may follow at once.
    yield* settled(entry)
    yield* publish(env, entry, "stop")
    return { alreadyStopped: false }
  })

  const restart = Effect.fn("Engine.restart")(function*(
    ref: string,
    restartOptions?: { readonly signal?: string | undefined; readonly timeout?: number | undefined }
  ) {
    const entry = yield* store.find(ref)
    yield* cancelPending(entry)
    const wasStopped = entry.restarts.manuallyStopped
    // No policy restart in between, until the exit is handled.
    entry.restarts.setManuallyStopped(true)
    yield* Effect.andThen(stopTask(entry, restartOptions?.signal, restartOptions?.timeout), settled(entry)).pipe(
      Effect.ensuring(Effect.sync(() => entry.restarts.setManuallyStopped(wasStopped)))
    )
    yield* clearStopped(entry)
    yield* startLocked(entry)
    yield* publish(env, entry, "restart")
  })

  const kill = Effect.fn("Engine.kill")(function*(ref: string, signal?: string) {
    const entry = yield* store.find(ref)
    const name = signal || "SIGKILL"
    const number = signalNumber(name)
    if (number === undefined) return yield* Effect.fail(badRequest(`Invalid signal: ${name}`))
    const task = yield* taskOf(env, entry)
    // As dockerd: killing with the stop signal is a stop, so no policy restart follows.
    if (number === signalNumber(stopSignalOf(entry.config))) yield* markStopped(entry)
    yield* lib(task.kill(number))
    yield* publish(env, entry, "kill", { signal: String(number) })
  })

  /** Pause and unpause: the state machine decides, the task follows, then the event. */
  const freeze = (ref: string, next: "Pause" | "Unpause") =>
    Effect.gen(function*() {
      const entry = yield* store.find(ref)
      const task = yield* taskOf(env, entry)
      const moved = transition(yield* taskStatusOf(env, entry), entry.phase, { _tag: next })
      if (moved._tag === "Failure") return yield* Effect.fail(conflict(moved.failure.replace("{id}", entry.id)))
      yield* lib(next === "Pause" ? task.pause : task.resume)
      entry.phase = moved.success
      // As dockerd's updateHealthMonitor: no probes while it is frozen; the health stays as it was.
      yield* next === "Pause" ? health.end(entry) : health.resume(entry)
      yield* publish(env, entry, next === "Pause" ? "pause" : "unpause")
    })
  const pause = Effect.fn("Engine.pause")((ref: string) => freeze(ref, "Pause"))
  const unpause = Effect.fn("Engine.unpause")((ref: string) => freeze(ref, "Unpause"))

  const wait = Effect.fn("Engine.wait")(function*(ref: string, condition: WaitCondition) {
    const entry = yield* store.find(ref)
    // Subscribe before looking, so nothing falls in between.
    const subscription = yield* PubSub.subscribe(env.notices)
    const state = yield* stateOf(env, entry)
    const news = Stream.fromSubscription(subscription).pipe(Stream.filter((n) => n.id === entry.id))
    const first = (predicate: (n: Notice) => boolean) =>
      Effect.map(Stream.runHead(Stream.filter(news, predicate)), (n) => ({
        StatusCode: Option.match(n, { onNone: () => state.ExitCode, onSome: (x) => x.code })
      }))
    // As moby's `State.Wait`: a policy restart still ends the run (`SetRestarting` wakes the stop
    // waiters), so not-running and next-exit answer at the first exit, whatever the policy; a removal
    // answers every condition. A restarting container counts as running, as dockerd's `Running`.
    switch (condition) {
      case "not-running":
        if (!state.Running && !state.Restarting) return Effect.succeed({ StatusCode: state.ExitCode })
        return first(() => true)
      case "next-exit":
        return first(() => true)
      case "removed":
        return first((n) => n._tag === "Removed")
    }
  })

  const remove = Effect.fn("Engine.remove")(function*(ref: string, removeOptions?: { readonly force?: boolean | undefined }) {
    const entry = yield* store.find(ref)
    // As moby's SetRemovalInProgress, under the container's lock: after any start under way (whose
    // task is then running, and killed below), and before any later one (which finds this mark).
    const running = yield* entry.lock.withPermit(Effect.gen(function*() {
      const task = yield* taskStatusOf(env, entry)
      const begun = transition(task, entry.phase, { _tag: "BeginRemove" })
      // dockerd names the container here as the request did (daemon/delete.go), not by its id.
      if (begun._tag === "Failure") return yield* Effect.fail(conflict(begun.failure.replace("{id}", ref)))
      const now = status(task, entry.phase)
      if ((isRunning(task) || now === "restarting") && removeOptions?.force !== true) {
        const what = isPaused(task, entry.phase) ? "paused" : now === "restarting" ? "restarting" : "running"
        return yield* Effect.fail(conflict(
          `You cannot remove a ${what} container ${entry.id}. Stop the container before attempting removal or force remove`
        ))
      }
      entry.phase = begun.success
      return isRunning(task)
    }))
    const current = Fiber.getCurrent()
    yield* Effect.gen(function*() {
      // Not from within the pending fiber itself (an automatic removal runs there).
      const fiber = yield* FiberMap.get(pending, entry.id)
      if (Option.isSome(fiber) && fiber.value !== current) yield* FiberMap.remove(pending, entry.id)
      if (running) yield* terminate(entry, yield* taskOf(env, entry), undefined)
      // The last run's exit handled first (its task deleted, its network released): a slow one, or one
      // retried after its bound, would otherwise still hold the task the container's delete refuses to strand.
      yield* settled(entry)
      const code = (yield* stateOf(env, entry)).ExitCode
      yield* ignoreGone(lib(ns(monitors.remove(entry.id))))
      yield* FiberMap.remove(pumps, entry.id)
      yield* health.end(entry)
      // As dockerd removes containers/<id>: the log goes with the container, once
      // its followers (an attached `docker run --rm`) have read it to the end.
      yield* Effect.timeoutOption(entry.output.unfollowed.await, FOLLOWERS_TIMEOUT)
      yield* removeContainerTree(containerDir(options.logRoot, entry.id))
      yield* execs.forget(entry.id)
      store.delete(entry)
      yield* PubSub.shutdown(entry.output.events)
      yield* publish(env, entry, "destroy")
      yield* PubSub.publish(env.notices, { _tag: "Removed", id: entry.id, code } satisfies Notice)
    }).pipe(
      // Back from "removing" so the container can be removed again. It cannot fail: AbortRemove is
      // legal from every phase (State.ts) and the task's status is read from memory; the ignore only
      // drops the conflict that `step` can answer for other transitions.
      Effect.onError(() => step(entry, { _tag: "AbortRemove" }).pipe(Effect.ignore))
    )
  })

  /**
   * At start, as dockerd's restore: containers whose policy says so run again, and
   * leftovers of automatic removal go.
   */
  const restore = Effect.forEach(store.all(), (entry) =>
    Effect.gen(function*() {
      const state = yield* stateOf(env, entry)
      // An exit still to be handled here (running, or stopped with its task not yet
      // deleted by recovery): starts wait for it.
      if (state.Running || (yield* trackedOf(env, entry))?.task !== undefined) entry.handled = yield* Deferred.make<void>()
      // A shim-logged container's log is still being written: `logs -f` follows it to its end.
      if (state.Running && shimLogged(env, entry)) entry.output.streaming = true
      // Its health is not kept across daemon restarts: it starts again, as at a start.
      if (state.Running) yield* health.begin(entry)
      if (state.Running || entry.phase._tag !== "Idle") return
      // As dockerd's restore: every --rm container not running goes (its exit is not recorded).
      if (autoRemove(entry)) return yield* schedule(entry, remove(entry.id, { force: false }), "remove")
      const policy = entry.restarts.policy.name
      if ((policy === "always" || policy === "unless-stopped") && !entry.restarts.manuallyStopped && state.Status !== "created") {
        yield* schedule(entry, Effect.andThen(settled(entry), startLocked(entry)), "restore")
      }
    }), { discard: true })

  return { handleExit, restore, start, stop, restart, kill, pause, unpause, wait, remove, cancelPending }
})
