/**
 * The system routes of the Docker Engine API: `/_ping` (what clients probe
 * first, with dockerd's no-cache headers and `Swarm: inactive`), `/version`,
 * `/info` from `System`, and `/events` from the `EventLog`, streamed as JSON
 * lines between `since` and `until`.
 */
import { Clock, Effect } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { badRequest } from "../DockerError.ts"
import { EventLog } from "../EventLog.ts"
import { System } from "../System.ts"
import { filtersQuery, type Handler, json, timeQuery } from "./Request.ts"
import { jsonLines } from "./Streams.ts"

/** The filters `GET /events` understands (the `EventLog`'s). */
const EVENT_FILTERS: ReadonlyArray<string> = ["type", "event", "container", "image", "label"]

const ping: Handler = Effect.succeed(HttpServerResponse.text("OK", {
  contentType: "text/plain; charset=utf-8",
  headers: { "Cache-Control": "no-cache, no-store, must-revalidate", Pragma: "no-cache", Swarm: "inactive" }
}))

/** The system and event routes, over `System` and the `EventLog`. */
export const systemRoutes = Effect.gen(function*() {
  const eventLog = yield* EventLog
  const system = yield* System
  return [
    HttpRouter.route("GET", "/_ping", ping),
    HttpRouter.route("GET", "/version", Effect.map(system.version, (version) => json(version))),
    HttpRouter.route("GET", "/info", Effect.map(system.info, (info) => json(info))),
    HttpRouter.route(
      "GET",
      "/events",
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const since = yield* timeQuery("since", now)
        const until = yield* timeQuery("until", now)
        if (since !== undefined && until !== undefined && until < since) {
          return yield* badRequest("`since` time cannot be after `until` time")
        }
        const filters = yield* filtersQuery(EVENT_FILTERS)
        return jsonLines(eventLog.subscribe({ since, until, filters }))
      })
    )
  ] as const
})
