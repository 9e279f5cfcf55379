/**
 * The monitors' engine over in-memory events, for deterministic tests and for
 * benchmarks that need thousands of containers: the exit hub, the event stream
 * and the backoff queue are the real ones, fed by the in-memory upstream;
 * containerd's side (deleting tasks, recording exits) is a no-op that a test can
 * make slow or failing.
 */
import { type Duration, Effect, Scope } from "effect"
import { packMessage } from "../../src/domain/Any.ts"
import * as ContainerEvents from "../../src/gen/containerd/events/container.ts"
import * as NamespaceEvents from "../../src/gen/containerd/events/namespace.ts"
import * as TaskEvents from "../../src/gen/containerd/events/task.ts"
import type { Envelope } from "../../src/gen/containerd/services/events/v1/events.ts"
import type { ContainerdError } from "../../src/domain/ContainerdError.ts"
import type { ContainerExit } from "../../src/domain/ContainerState.ts"
import { makeMonitorsCore, type Tracked } from "../../src/internal/MonitorsCore.ts"
import { type BackoffOptions, makeBackoffQueue } from "../../src/services/BackoffQueue.ts"
import { makeEvents } from "../../src/services/Events.ts"
import { makeExitHub } from "../../src/services/ExitHub.ts"
import type { Task } from "../../src/services/Runtime.ts"
import { makeInMemoryUpstream } from "./InMemoryEvents.ts"

export const NAMESPACE = "default"

const envelope = (topic: string, event: Envelope["event"]): Envelope => ({
  timestamp: new Date(),
  namespace: NAMESPACE,
  topic,
  event
})

/** More envelopes, for the monitors' events. */
export const monitorEnvelopes = {
  containerCreate: (id: string) =>
    envelope("/containers/create", packMessage(ContainerEvents.ContainerCreate, ContainerEvents.ContainerCreate.fromPartial({ id }))),
  containerDelete: (id: string) =>
    envelope("/containers/delete", packMessage(ContainerEvents.ContainerDelete, { id })),
  taskDelete: (containerId: string, pid: number) =>
    envelope("/tasks/delete", packMessage(TaskEvents.TaskDelete, TaskEvents.TaskDelete.fromPartial({ containerId, pid }))),
  namespaceDelete: (name: string) =>
    envelope("/namespaces/delete", packMessage(NamespaceEvents.NamespaceDelete, { name }))
}

/**
 * The engine over in-memory events and the real backoff queue (CRI's durations
 * unless `backoff` says otherwise); `handle` is the consumer's handler, and the
 * containerd side records what was asked of it. `finishExit` can be replaced
 * (to make it slow or fail).
 */
export const inMemoryMonitors = <E>(handle: (exit: ContainerExit) => Effect.Effect<void, E>, options?: {
  readonly handlingTimeout?: Duration.Input
  readonly backoff?: BackoffOptions
}) =>
  Effect.gen(function*() {
    const upstream = yield* makeInMemoryUpstream
    const events = yield* makeEvents(upstream, { capacity: 65_536 })
    const hub = yield* makeExitHub({
      events,
      lookup: () => Effect.succeed({ _tag: "Missing" as const }),
      currentNamespace: Effect.succeed(NAMESPACE)
    })
    const backoff = yield* makeBackoffQueue(options?.backoff)
    const finished: Array<string> = []
    /** Containers that still exist, as far as `exists` is concerned. */
    const existing = new Set<string>()
    const ops = {
      finishExit: (tracked: Tracked): Effect.Effect<void, ContainerdError> => Effect.sync(() => void finished.push(tracked.id))
    }
    const core = yield* makeMonitorsCore({
      events,
      backoff,
      handle: (exit) => handle(exit),
      handlingTimeout: options?.handlingTimeout,
      ops: {
        finishExit: (tracked, _task, _exit) => ops.finishExit(tracked),
        exists: (_namespace, id) => Effect.succeed(existing.has(id)),
        ids: () => Effect.succeed(new Set()),
        markRunning: () => Effect.void
      }
    })
    /**
     * Tracks `id` and watches a process `pid` of it whose exit the hub reports.
     * `task` stands in for the task handle where a test needs one to exist.
     */
    const run = (id: string, pid: number, task?: Task) =>
      Effect.gen(function*() {
        const entry = yield* core.track({ namespace: NAMESPACE, id })
        const wait = yield* hub.awaitExit(id, "", { pid }).pipe(Effect.provideService(Scope.Scope, entry.scope))
        yield* core.watch(entry, { wait, pid, task })
        return entry
      })
    return { upstream, hub, core, run, finished, existing, ops }
  })
