/**
 * The monitors' engine over in-memory events, for deterministic tests and for
 * benchmarks that need thousands of containers: the exit hub and the event
 * stream are the real ones, fed by the in-memory upstream; containerd's side
 * (deleting tasks, recording exits) is a no-op that can be made to fail.
 */
import { type Duration, Effect, Scope } from "effect"
import { packMessage } from "../../src/domain/Any.ts"
import * as ContainerEvents from "../../src/gen/containerd/events/container.ts"
import * as TaskEvents from "../../src/gen/containerd/events/task.ts"
import type { Envelope } from "../../src/gen/containerd/services/events/v1/events.ts"
import type { BackoffOptions } from "../../src/services/BackoffQueue.ts"
import { makeEvents } from "../../src/services/Events.ts"
import { makeExitHub } from "../../src/services/ExitHub.ts"
import { type ContainerExit, makeMonitorsCore } from "../../src/services/Monitors.ts"
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
  taskOOM: (containerId: string) => envelope("/tasks/oom", packMessage(TaskEvents.TaskOOM, { containerId }))
}

/**
 * The engine over in-memory events; `handle` is the consumer's handler, and the
 * containerd side records what was asked of it.
 */
export const inMemoryMonitors = <E>(handle: (exit: ContainerExit) => Effect.Effect<void, E>, options?: {
  readonly handlerTimeout?: Duration.Input
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
    const finished: Array<string> = []
    const core = yield* makeMonitorsCore({
      events,
      handler: { handle: (exit) => handle(exit) },
      handlerTimeout: options?.handlerTimeout,
      backoff: options?.backoff,
      ops: {
        finishExit: (tracked) => Effect.sync(() => void finished.push(tracked.id)),
        exists: () => Effect.succeed(false),
        ids: () => Effect.succeed(new Set()),
        markRunning: () => Effect.void
      }
    })
    /** Tracks `id` and watches a process `pid` of it whose exit the hub reports. */
    const run = (id: string, pid: number) =>
      Effect.gen(function*() {
        const entry = yield* core.track({ namespace: NAMESPACE, id })
        const wait = yield* hub.awaitExit(id, "", { pid }).pipe(Effect.provideService(Scope.Scope, entry.scope))
        yield* core.watch(entry, { wait, pid })
        return entry
      })
    return { upstream, hub, core, run, finished }
  })
