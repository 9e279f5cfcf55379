/**
 * Keyed singleflight: duplicate suppression for concurrent work, as containerd's
 * CRI does for pulls (by blob digest for fetches, by chain ID for unpacks).
 *
 * Concurrent `run`s with an equal key share one execution. The work may depend
 * on who asks (two pulls of one layer digest from different registries, or with
 * different credentials), so only a success is shared: a caller that joined a
 * run that failed then runs its own work, or joins the next run of the key that
 * started meanwhile — as CRI's keyed mutex lets each caller try in turn. A
 * caller's own run is final. N callers of work that keeps failing therefore make
 * at most N attempts, one at a time.
 *
 * Work that reports progress tells every caller in the flight: a joiner first
 * hears the latest report, then every report after it.
 *
 * A call made after a run finished starts a new one. A caller that is
 * interrupted leaves without cancelling the work while others still wait for
 * it; when the last caller leaves, the work is interrupted. No entry remains
 * once a key is idle. Work in flight is interrupted when the layer's scope closes.
 */
import { Context, Effect, Exit, Fiber, Layer, Metric, type Scope } from "effect"

/** Keys with work in flight. */
export const SingleflightKeys = Metric.gauge("effect_containerd_singleflight_keys", {
  description: "keys whose work is in flight (pulls sharing a blob fetch or an unpack)"
})

/** A listener of a flight's progress reports. */
type Listener = (progress: unknown) => Effect.Effect<void>

export interface SingleflightShape {
  /** Runs `work` for `key`, or joins the run of an equal key already in flight. */
  readonly run: <A, E, R>(key: string, work: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * As `run`, for work that reports progress with `report`: the caller's
   * `onProgress` hears the reports of whichever run it waits for. Listeners are
   * run by the working fiber, so they should be quick.
   */
  readonly runReporting: <A, E, R, P>(
    key: string,
    work: (report: (progress: P) => Effect.Effect<void>) => Effect.Effect<A, E, R>,
    onProgress: (progress: P) => Effect.Effect<void>
  ) => Effect.Effect<A, E, R>
}

interface Flight {
  readonly fiber: Fiber.Fiber<unknown, unknown>
  readonly listeners: Set<Listener>
  latest: { readonly progress: unknown } | undefined
  callers: number
}

/** Makes a singleflight whose work in flight is interrupted when the scope closes. */
export const makeSingleflight: Effect.Effect<SingleflightShape, never, Scope.Scope> = Effect.gen(
  function*() {
    const scope = yield* Effect.scope
    const flights = new Map<string, Flight>()
    const publish = Effect.suspend(() => Metric.update(SingleflightKeys, flights.size))
    // A new singleflight starts the gauge from its own count (one per process; tests make several in turn).
    yield* publish

    const leave = (key: string, flight: Flight, listener: Listener) =>
      Effect.suspend(() => {
        flight.callers--
        flight.listeners.delete(listener)
        if (flight.callers > 0 || flight.fiber.pollUnsafe() !== undefined) return Effect.void
        // Everyone left before it finished: nobody wants the result any more.
        if (flights.get(key) === flight) flights.delete(key)
        return Effect.andThen(publish, Fiber.interrupt(flight.fiber))
      })

    /** Starts the caller's own run of `key`; the entry leaves the map before its result can be seen. */
    const start = <A, E, R>(key: string, work: (report: (progress: unknown) => Effect.Effect<void>) => Effect.Effect<A, E, R>) =>
      Effect.gen(function*() {
        const listeners = new Set<Listener>()
        const report = (progress: unknown) =>
          Effect.suspend(() => {
            flight.latest = { progress }
            return Effect.forEach([...listeners], (listener) => listener(progress), { discard: true })
          })
        const fiber: Fiber.Fiber<A, E> = yield* Effect.forkIn(
          Effect.ensuring(work(report), Effect.suspend(() => {
            if (flights.get(key)?.fiber === fiber) flights.delete(key)
            return publish
          })),
          scope,
          { startImmediately: false }
        )
        const flight: Flight = { fiber, listeners, latest: undefined, callers: 0 }
        flights.set(key, flight)
        yield* publish
        return flight
      })

    const runReporting = <A, E, R, P>(
      key: string,
      work: (report: (progress: P) => Effect.Effect<void>) => Effect.Effect<A, E, R>,
      onProgress: (progress: P) => Effect.Effect<void>
    ): Effect.Effect<A, E, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const listener = onProgress as Listener
          while (true) {
            const joined = flights.get(key)
            const flight = joined ?? (yield* start(key, work as (report: Listener) => Effect.Effect<A, E, R>))
            flight.callers++
            flight.listeners.add(listener)
            if (flight.latest !== undefined) yield* listener(flight.latest.progress)
            const exit = (yield* restore(Fiber.await(flight.fiber)).pipe(
              Effect.ensuring(leave(key, flight, listener))
            )) as Exit.Exit<A, E>
            // Someone else's run failed: that says nothing about ours (another source, other credentials).
            if (joined === undefined || Exit.isSuccess(exit)) return yield* exit
          }
        })
      )

    return {
      // No spans: the shared work carries its own, and callers compare the exits they are handed.
      run: (key, work) => runReporting(key, () => work, () => Effect.void),
      runReporting
    }
  }
)

/** The singleflight service: one for the process, keys prefixed by what they name. */
export class Singleflight extends Context.Service<Singleflight, SingleflightShape>()("effect-containerd/Singleflight") {
  static readonly layer: Layer.Layer<Singleflight> = Layer.effect(Singleflight, makeSingleflight)
}
