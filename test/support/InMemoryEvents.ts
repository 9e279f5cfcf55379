/**
 * An in-memory stand-in for containerd's event service, for deterministic tests
 * of the event stream and the exit hub: tests push envelopes, cut the current
 * subscription, and make subscribing fail, while the code under test sees the
 * same `EventsUpstream` it gets from containerd. Like containerd, it echoes a
 * published event to the subscription that is open at that moment.
 */
import { Clock, Effect, Queue, Stream } from "effect"
import { packMessage } from "../../src/domain/Any.ts"
import { type ContainerdError, fromGrpcStatus, GrpcCode } from "../../src/domain/ContainerdError.ts"
import * as TaskEvents from "../../src/gen/containerd/events/task.ts"
import type { Envelope } from "../../src/gen/containerd/services/events/v1/events.ts"
import type { EventsUpstream } from "../../src/services/Events.ts"

/** An upstream whose behaviour the test drives. */
export interface InMemoryUpstream extends EventsUpstream {
  /** Delivers an envelope to the open subscription (dropped if none, as containerd would). */
  readonly emit: (envelope: Envelope) => Effect.Effect<void>
  /** Fails the open subscription, as a dropped connection does. */
  readonly cut: Effect.Effect<void>
  /** While false, subscribing fails at once with Unavailable. */
  readonly setAvailable: (available: boolean) => Effect.Effect<void>
  /** Makes the next `count` publishes fail with Unavailable (the event is not delivered). */
  readonly failPublish: (count: number) => Effect.Effect<void>
  /** Clock time (ms) of every publish attempt, failed or not. */
  readonly publishes: ReadonlyArray<number>
  /** Clock time (ms) of every subscription attempt. */
  readonly attempts: ReadonlyArray<number>
  /** Whether a subscription is open. */
  readonly connected: Effect.Effect<boolean>
}

const unavailable = (method = "Subscribe"): ContainerdError =>
  fromGrpcStatus({ code: GrpcCode.UNAVAILABLE, details: "in-memory upstream is down" }, {
    method: `/containerd.services.events.v1.Events/${method}`,
    address: "unix:///in-memory"
  })

/** Makes an in-memory upstream. */
export const makeInMemoryUpstream: Effect.Effect<InMemoryUpstream> = Effect.sync(() => {
  let current: Queue.Queue<Envelope, ContainerdError> | undefined
  let available = true
  const attempts: Array<number> = []
  const publishes: Array<number> = []
  let publishFailures = 0

  const emit = (envelope: Envelope) =>
    Effect.suspend(() => current === undefined ? Effect.void : Effect.asVoid(Queue.offer(current, envelope)))

  return {
    attempts,
    subscribe: () =>
      Stream.unwrap(Effect.gen(function*() {
        attempts.push(yield* Clock.currentTimeMillis)
        if (!available) return Stream.fail(unavailable())
        const queue = yield* Queue.unbounded<Envelope, ContainerdError>()
        current = queue
        return Stream.fromQueue(queue).pipe(
          Stream.ensuring(Effect.sync(() => {
            if (current === queue) current = undefined
          }))
        )
      })),
    publishes,
    publish: (topic, event) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        publishes.push(now)
        if (publishFailures > 0) {
          publishFailures--
          return Effect.fail(unavailable("Publish"))
        }
        return emit({ timestamp: new Date(), namespace: "default", topic, event })
      }),
    failPublish: (count) => Effect.sync(() => void (publishFailures = count)),
    emit,
    cut: Effect.suspend(() => {
      const queue = current
      current = undefined
      return queue === undefined ? Effect.void : Effect.asVoid(Queue.fail(queue, unavailable()))
    }),
    setAvailable: (value) => Effect.sync(() => void (available = value)),
    connected: Effect.sync(() => current !== undefined)
  }
})

/** Envelopes as containerd's shims publish them. */
export const envelopes = {
  taskStart: (containerId: string, pid: number, namespace = "default"): Envelope => ({
    timestamp: new Date(),
    namespace,
    topic: "/tasks/start",
    event: packMessage(TaskEvents.TaskStart, TaskEvents.TaskStart.fromPartial({ containerId, pid }))
  }),
  taskOOM: (containerId: string, namespace = "default"): Envelope => ({
    timestamp: new Date(),
    namespace,
    topic: "/tasks/oom",
    event: packMessage(TaskEvents.TaskOOM, { containerId })
  }),
  execStarted: (containerId: string, execId: string, pid: number, namespace = "default"): Envelope => ({
    timestamp: new Date(),
    namespace,
    topic: "/tasks/exec-started",
    event: packMessage(TaskEvents.TaskExecStarted, TaskEvents.TaskExecStarted.fromPartial({ containerId, execId, pid }))
  }),
  /** A TaskExit; for the init process, containerd sets `id` to the container id. */
  taskExit: (
    containerId: string,
    execId: string,
    pid: number,
    exitStatus: number,
    namespace = "default"
  ): Envelope => ({
    timestamp: new Date(),
    namespace,
    topic: "/tasks/exit",
    event: packMessage(
      TaskEvents.TaskExit,
      TaskEvents.TaskExit.fromPartial({
        containerId,
        id: execId === "" ? containerId : execId,
        pid,
        exitStatus,
        exitedAt: new Date(1_700_000_000_000)
      })
    )
  })
}
