/**
 * Docker's event log (`GET /events`): what the daemon did to containers and
 * images, as dockerd's `daemon/events` keeps it — published live to every
 * subscriber and kept in a bounded history, so `since` can replay the recent
 * past. As dockerd, the history holds the last 256 events; older ones are gone.
 *
 * Filters are Docker's: `type`, `event` (the action), `container` (id, id prefix
 * or name), `image`, `label` (`key` or `key=value`).
 */
import { Clock, Context, Effect, Layer, PubSub, Stream } from "effect"
import { matchLabels } from "./Filters.ts"

/** The most events kept for `since` (dockerd's eventsLimit). */
export const HISTORY = 256

/** An event as `GET /events` sends it (both the current and the legacy fields, as dockerd). */
export interface DockerEvent {
  readonly Type: "container" | "image" | "network" | "volume" | "daemon"
  readonly Action: string
  readonly Actor: { readonly ID: string; readonly Attributes: Readonly<Record<string, string>> }
  readonly scope: "local"
  readonly time: number
  readonly timeNano: number
  readonly status?: string
  readonly id?: string
  readonly from?: string
}

/** Docker's event filters: each key matches if any of its values does; all keys must match. */
export type EventFilters = Readonly<Record<string, ReadonlyArray<string>>>

/** Which events to send: replayed from `since`, live until `until` (both in ms since the epoch). */
export interface EventQuery {
  readonly since?: number | undefined
  readonly until?: number | undefined
  readonly filters?: EventFilters | undefined
}

const matches = (event: DockerEvent, filters: EventFilters | undefined): boolean => {
  if (filters === undefined) return true
  const attributes = event.Actor.Attributes
  const any = (key: string, test: (value: string) => boolean) => {
    const values = filters[key]
    return values === undefined || values.length === 0 || values.some(test)
  }
  return any("type", (v) => v === event.Type) &&
    any("event", (v) => v === event.Action || event.Action.startsWith(`${v}:`)) &&
    any("container", (v) =>
      event.Type === "container" && (event.Actor.ID.startsWith(v) || attributes.name === v || attributes.name === v.replace(/^\//, ""))) &&
    any("image", (v) => attributes.image === v || (event.Type === "image" && (event.Actor.ID === v || attributes.name === v))) &&
    any("network", (v) => event.Type === "network" && (event.Actor.ID.startsWith(v) || attributes.name === v)) &&
    matchLabels(filters["label"], attributes)
}

/** The event log. */
export class EventLog extends Context.Service<EventLog, {
  /** Records an event now and sends it to every subscriber. */
  readonly publish: (event: {
    readonly type: DockerEvent["Type"]
    readonly action: string
    readonly id: string
    readonly attributes?: Readonly<Record<string, string>> | undefined
  }) => Effect.Effect<void>
  /** The events matching `query`: the recent past from `since`, then live ones until `until`. */
  readonly subscribe: (query: EventQuery) => Stream.Stream<DockerEvent>
}>()("effect-containerd/daemon/EventLog") {
  static readonly layer: Layer.Layer<EventLog> = Layer.effect(
    EventLog,
    Effect.gen(function*() {
      const history: Array<DockerEvent> = []
      const live = yield* Effect.acquireRelease(PubSub.unbounded<DockerEvent>(), PubSub.shutdown)

      const publish = Effect.fnUntraced(function*(input: {
        readonly type: DockerEvent["Type"]
        readonly action: string
        readonly id: string
        readonly attributes?: Readonly<Record<string, string>> | undefined
      }) {
        const nanos = yield* Clock.currentTimeNanos
        const attributes = input.attributes ?? {}
        const event: DockerEvent = {
          Type: input.type,
          Action: input.action,
          Actor: { ID: input.id, Attributes: attributes },
          scope: "local",
          time: Number(nanos / 1_000_000_000n),
          timeNano: Number(nanos),
          // The fields of API < 1.22 that the CLI still reads for containers.
          ...(input.type === "container"
            ? { status: input.action, id: input.id, ...(attributes.image === undefined ? {} : { from: attributes.image }) }
            : {})
        }
        history.push(event)
        if (history.length > HISTORY) history.shift()
        yield* PubSub.publish(live, event)
      })

      const subscribe = (query: EventQuery): Stream.Stream<DockerEvent> =>
        Stream.unwrap(Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          const until = query.until
          const inWindow = (event: DockerEvent) =>
            (query.since === undefined || event.timeNano / 1e6 >= query.since) &&
            (until === undefined || event.timeNano / 1e6 <= until) &&
            matches(event, query.filters)
          // Subscribe before reading the history, so nothing falls between them.
          const subscription = yield* PubSub.subscribe(live)
          const past = query.since === undefined ? [] : history.filter(inWindow)
          if (until !== undefined && until <= now) return Stream.fromIterable(past)
          const lastNano = past.at(-1)?.timeNano ?? -1
          let future = Stream.fromSubscription(subscription).pipe(
            Stream.filter((event) => event.timeNano > lastNano && inWindow(event))
          )
          if (until !== undefined) future = future.pipe(Stream.interruptWhen(Effect.sleep(until - now)))
          return Stream.concat(Stream.fromIterable(past), future)
        }))

      return EventLog.of({ publish, subscribe })
    })
  )
}
