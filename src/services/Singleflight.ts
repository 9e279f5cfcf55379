/**
 * Keyed singleflight: duplicate suppression for concurrent work, as containerd's
 * CRI does for pulls (by blob digest for fetches, by chain ID for unpacks).
 *
 * Concurrent `run`s with an equal key share one execution and all receive its
 * result, success or failure. A call made after it finished starts a new one. A
 * caller that is interrupted leaves without cancelling the work while others
 * still wait for it; when the last caller leaves, the work is interrupted. No
 * entry remains once a key is idle.
 */
import { Effect, Fiber, type Scope } from "effect"

/** A singleflight over keys of type `K`. */
export interface Singleflight<K> {
  /** Runs `effect` for `key`, or joins the run of an equal key already in flight. */
  readonly run: <A, E, R>(key: K, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /** How many keys have work in flight. */
  readonly size: Effect.Effect<number>
}

interface Flight {
  readonly fiber: Fiber.Fiber<unknown, unknown>
  callers: number
}

/** Makes a singleflight; work in flight is interrupted when the scope closes. */
export const makeSingleflight = <K>(): Effect.Effect<Singleflight<K>, never, Scope.Scope> =>
  Effect.map(Effect.scope, (scope) => {
    const flights = new Map<K, Flight>()

    const leave = (key: K, flight: Flight) =>
      Effect.suspend(() => {
        flight.callers--
        if (flight.callers > 0 || flight.fiber.pollUnsafe() !== undefined) return Effect.void
        // Everyone left before it finished: nobody wants the result any more.
        if (flights.get(key) === flight) flights.delete(key)
        return Fiber.interrupt(flight.fiber)
      })

    const run = <A, E, R>(key: K, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          let flight = flights.get(key)
          if (flight === undefined) {
            const fiber = yield* Effect.forkIn(
              // Leaves the map before its result can be seen: a later call starts afresh.
              Effect.ensuring(effect, Effect.sync(() => {
                if (flights.get(key)?.fiber === fiber) flights.delete(key)
              })),
              scope,
              { startImmediately: false }
            )
            flight = { fiber, callers: 0 }
            flights.set(key, flight)
          }
          flight.callers++
          const joined = flight
          return yield* restore(Fiber.join(joined.fiber as Fiber.Fiber<A, E>)).pipe(
            Effect.ensuring(leave(key, joined))
          )
        })
      )

    return { run, size: Effect.sync(() => flights.size) }
  })
