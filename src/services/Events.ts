/**
 * The event stream: one upstream `Events.Subscribe` shared by every consumer.
 *
 * containerd's events are at-most-once: nothing published before a subscription,
 * or while it is down, is ever replayed. The Go client's `Subscribe` ends on the
 * first error; moby resubscribes but never looks at state again, so exits in the
 * gap are lost. Here one fiber owns the subscription for the life of the Layer:
 *
 * - A subscription counts as live only once a probe event we publish comes back
 *   on it, so "live" means containerd has registered us and nothing published
 *   from then on can be missed. The Layer is built only once the first
 *   subscription is live.
 * - When the stream fails or ends, the fiber resubscribes on a `Schedule`
 *   (exponential from 100 ms, capped at 5 s, forever; reset once a subscription
 *   is live again) and, once live, emits `Resynced` so consumers reconcile with
 *   containerd's state (the exit hub asks `Tasks.Get` for every pending wait).
 * - Payloads are decoded into the `ContainerdEvent` union; unknown types become
 *   `Unknown`; malformed ones are counted and skipped. Decoding never ends the stream.
 *
 * Slow consumers: events fan out through a sliding `PubSub` of bounded capacity
 * (4096 by default). A consumer that falls that far behind loses its oldest
 * unread events — nobody else waits for it and memory stays bounded — and, since
 * every event carries a sequence number, it is told so: its stream emits
 * `Resynced { reason: "Lagged", missed }` before the next event it does get, the
 * same signal as after a reconnect, so one reconcile path covers both.
 */
import {
  Context,
  Deferred,
  Duration,
  Effect,
  Fiber,
  Layer,
  Metric,
  PubSub,
  Pull,
  Result,
  Schedule,
  type Scope,
  Stream
} from "effect"
import * as crypto from "node:crypto"
import { packMessage } from "../domain/Any.ts"
import { type ContainerdError, deadlineExceeded } from "../domain/ContainerdError.ts"
import {
  type ContainerdEvent,
  type ContainerdEventTag,
  decodeEnvelope,
  type EventDecodeError,
  type EventMessage,
  Resynced
} from "../domain/Event.ts"
import type { Envelope } from "../gen/containerd/services/events/v1/events.ts"
import type { Any } from "../gen/google/protobuf/any.ts"
import { Empty } from "../gen/google/protobuf/empty.ts"
import { persistentSchedule, retryForever } from "../internal/Retry.ts"
import { Containerd } from "./Containerd.ts"

/** Events received from containerd, by topic. */
export const EventsReceived = Metric.frequency("effect_containerd_events_received", {
  description: "containerd events received, by topic"
})
/** Envelopes whose payload could not be decoded (skipped). */
export const EventDecodeFailures = Metric.counter("effect_containerd_event_decode_failures", {
  description: "containerd events skipped because their payload did not decode",
  incremental: true
})
/** Subscriptions re-established after a failure. */
export const EventReconnects = Metric.counter("effect_containerd_event_reconnects", {
  description: "times the event subscription was re-established",
  incremental: true
})

/** What the event stream needs from containerd: a subscription and a way to publish the probe. */
export interface EventsUpstream {
  /** Opens a subscription with containerd filters; the stream fails or ends with the connection. */
  readonly subscribe: (filters: ReadonlyArray<string>) => Stream.Stream<Envelope, ContainerdError>
  /** Publishes an event under `topic`. */
  readonly publish: (topic: string, event: Any) => Effect.Effect<void, ContainerdError>
}

/** How the event stream behaves. */
export interface EventsOptions {
  /** containerd filters for the upstream subscription (alternatives, ORed); default: everything. */
  readonly filters?: ReadonlyArray<string> | undefined
  /**
   * Delays between resubscription attempts; default exponential from 100 ms, capped
   * at 5 s. It starts over once a subscription is live. Keep it infinite: when it
   * ends, events stop (an error is logged).
   */
  readonly reconnect?: Schedule.Schedule<unknown> | undefined
  /** Events a consumer may fall behind by before it loses the oldest; default 4096. */
  readonly capacity?: number | undefined
  /** How long to wait for a probe to come back before publishing another; default 250 ms. */
  readonly probeInterval?: Duration.Input | undefined
  /** How long building the Layer may wait for the first live subscription; default 30 s. */
  readonly connectTimeout?: Duration.Input | undefined
}

/** Which events a consumer wants. `Resynced` is always delivered. */
export interface SubscribeOptions {
  /** Only these cases; default all. */
  readonly tags?: ReadonlyArray<ContainerdEventTag> | undefined
  /** Only events of this namespace; default all. */
  readonly namespace?: string | undefined
}

/** The event stream service. */
export interface EventsShape {
  /**
   * Subscribes. The subscription is in place when the effect returns, so every
   * event published after that is on the returned stream (or announced by a
   * `Resynced`). It ends when the scope closes.
   */
  readonly subscribe: {
    <const Tag extends ContainerdEventTag>(
      options: SubscribeOptions & { readonly tags: ReadonlyArray<Tag> }
    ): Effect.Effect<Stream.Stream<Extract<ContainerdEvent, { readonly _tag: Tag }> | Resynced>, never, Scope.Scope>
    (options?: SubscribeOptions): Effect.Effect<Stream.Stream<EventMessage>, never, Scope.Scope>
  }
}

/** The default resubscription delays: 100 ms doubling, capped at 5 s, forever. */
export const defaultReconnectSchedule: Schedule.Schedule<unknown> = persistentSchedule

/** Topics the probe is published on; one fresh topic per subscription attempt. */
const PROBE_TOPIC_PREFIX = "/effect-containerd/probe/"

interface Item {
  readonly seq: number
  readonly message: EventMessage
}

const matches = (options: SubscribeOptions | undefined) => {
  const tags = options?.tags === undefined ? undefined : new Set<string>(options.tags)
  const namespace = options?.namespace
  return (message: EventMessage): boolean =>
    message._tag === "Resynced" ||
    ((tags === undefined || tags.has(message._tag)) && (namespace === undefined || message.namespace === namespace))
}

/** Builds the event stream over any upstream; the fiber that owns it lives in the current scope. */
export const makeEvents = Effect.fnUntraced(function*(upstream: EventsUpstream, options: EventsOptions = {}) {
  const pubsub = yield* PubSub.sliding<Item>(options.capacity ?? 4096)
  yield* Effect.addFinalizer(() => PubSub.shutdown(pubsub))
  let seq = 0
  // Numbered when it runs, not when the effect is built.
  const emit = (message: EventMessage) => Effect.suspend(() => PubSub.publish(pubsub, { seq: ++seq, message }))
  const filters = options.filters ?? []
  const probeInterval = Duration.fromInputUnsafe(options.probeInterval ?? "250 millis")
  const ready = yield* Deferred.make<void, ContainerdError>()
  /** Why the last probe could not be published, for the error if the first subscription never goes live. */
  let lastProbeFailure: ContainerdError | undefined

  /**
   * Decodes and publishes what arrived in one read, in one step: every event
   * passes here, so it costs a loop, not a chain of effects per event.
   */
  const handleAll = (envelopes: ReadonlyArray<Envelope>, probeTopic: string, live: Deferred.Deferred<void>) =>
    Effect.suspend(() => {
      const items: Array<Item> = []
      const failures: Array<EventDecodeError> = []
      const topics: Array<string> = []
      let probed = false
      for (const envelope of envelopes) {
        if (envelope.topic === probeTopic) {
          // Our own, with a fresh topic each time: not counted by topic.
          probed = true
          continue
        }
        topics.push(envelope.topic)
        const decoded = decodeEnvelope(envelope)
        if (Result.isSuccess(decoded)) items.push({ seq: ++seq, message: decoded.success })
        else failures.push(decoded.failure)
      }
      return Effect.all([
        Effect.forEach(topics, (topic) => Metric.update(EventsReceived, topic), { discard: true }),
        failures.length === 0 ? Effect.void : Effect.andThen(
          Metric.update(EventDecodeFailures, failures.length),
          Effect.logDebug("skipping events that do not decode", failures)
        ),
        items.length === 0 ? Effect.void : PubSub.publishAll(pubsub, items),
        probed ? Deferred.succeed(live, undefined) : Effect.void
      ], { discard: true })
    })

  /**
   * One subscription, from opening to failure. Returns whether it became live,
   * and with what error it ended.
   */
  const session = (first: boolean) =>
    Effect.gen(function*() {
      const probeTopic = `${PROBE_TOPIC_PREFIX}${crypto.randomBytes(8).toString("hex")}`
      const live = yield* Deferred.make<void>()
      const consume = upstream.subscribe(filters.length === 0 ? [] : [...filters, `topic=="${probeTopic}"`]).pipe(
        Stream.runForEachArray((envelopes) => handleAll(envelopes, probeTopic, live))
      )
      // A failed publish is retried, not the end of the prober: without the echo
      // nothing is live, and after a reconnect no `Resynced` would ever be emitted.
      const publish = retryForever(
        "publishing the event probe",
        upstream.publish(probeTopic, packMessage(Empty, {})).pipe(
          Effect.tapError((error) => Effect.sync(() => void (lastProbeFailure = error)))
        )
      )
      const probe = publish.pipe(
        Effect.andThen(Deferred.await(live).pipe(Effect.timeoutOption(probeInterval))),
        Effect.repeat({ until: (seen) => seen._tag === "Some" })
      )
      const onLive = first
        ? Deferred.succeed(ready, undefined)
        : Effect.andThen(Metric.update(EventReconnects, 1), emit(new Resynced({ reason: "Reconnected", missed: 0 })))
      // It cannot fail (every failure is retried) and it ends with the subscription.
      const prober = yield* Effect.forkChild(Effect.andThen(probe, onLive))
      const ended = yield* Effect.exit(consume)
      yield* Fiber.interrupt(prober)
      return { live: yield* Deferred.isDone(live), ended }
    })

  const supervise = Effect.gen(function*() {
    const schedule = options.reconnect ?? defaultReconnectSchedule
    let step = yield* Schedule.toStepWithSleep(schedule)
    let first = true
    while (true) {
      const { ended, live } = yield* session(first)
      if (first && !live && ended._tag === "Failure") yield* Deferred.failCause(ready, ended.cause)
      if (live) {
        first = false
        step = yield* Schedule.toStepWithSleep(schedule)
        yield* Effect.logWarning("containerd event subscription lost; resubscribing", ended)
      } else {
        yield* Effect.logDebug("containerd event subscription attempt failed", ended)
      }
      const exhausted = yield* step(undefined).pipe(
        Effect.as(false),
        Pull.catchDone(() => Effect.succeed(true))
      )
      if (exhausted) {
        return yield* Effect.logError("the reconnect schedule ended: containerd events will no longer be received")
      }
    }
  })
  yield* Effect.forkScoped(supervise)
  const connectTimeout = Duration.fromInputUnsafe(options.connectTimeout ?? "30 seconds")
  yield* Deferred.await(ready).pipe(
    Effect.timeoutOrElse({
      duration: connectTimeout,
      orElse: () =>
        Effect.fail(deadlineExceeded(
          "Events.subscribe",
          `the event subscription did not become live within ${Duration.format(connectTimeout)}: ` +
            (lastProbeFailure === undefined
              ? "containerd never echoed the probe event"
              : `the probe event could not be published (${lastProbeFailure.message})`)
        ))
    })
  )

  const subscribe = (subscribeOptions?: SubscribeOptions): Effect.Effect<Stream.Stream<EventMessage>, never, Scope.Scope> =>
    Effect.withSpan("Events.subscribe")(Effect.map(PubSub.subscribe(pubsub), (subscription) => {
      const wanted = matches(subscribeOptions)
      const subscribedAt = seq
      return Stream.fromSubscription(subscription).pipe(
        Stream.mapAccum(() => subscribedAt, (last, item): readonly [number, ReadonlyArray<EventMessage>] => {
          const missed = item.seq - last - 1
          const lagged = missed > 0 ? [new Resynced({ reason: "Lagged", missed })] : []
          return [item.seq, wanted(item.message) ? [...lagged, item.message] : lagged]
        })
      )
    }))

  // The overload only narrows the element type to the cases asked for.
  return Events.of({ subscribe: subscribe as EventsShape["subscribe"] })
})

/** containerd's event service as an upstream. */
export const containerdUpstream = (client: Containerd["Service"]): EventsUpstream => ({
  subscribe: (filters) => client.events.subscribe({ filters: [...filters] }),
  publish: (topic, event) => Effect.asVoid(client.events.publish({ topic, event }))
})

/** The event stream service. */
export class Events extends Context.Service<Events, EventsShape>()("effect-containerd/Events") {
  /** The event stream of the `Containerd` client's daemon. */
  static readonly layer = (options?: EventsOptions): Layer.Layer<Events, ContainerdError, Containerd> =>
    Layer.effect(Events, Containerd.use((client) => makeEvents(containerdUpstream(client), options)))
}
