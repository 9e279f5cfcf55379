/**
 * The system routes of the Docker Engine API: `/_ping` (what clients probe
 * first, with dockerd's no-cache headers and `Swarm: inactive`), `/version`,
 * `/info` from `System`, `/events` from the `EventLog`, streamed as JSON
 * lines between `since` and `until`, and `/auth` (`docker login`: the
 * credentials checked against the registry, then forgotten).
 */
import { Clock, Effect, Schema } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { Registry, requestCredentials } from "../../services/Registry.ts"
import { badRequest, fromLibrary, orBadRequest } from "../DockerError.ts"
import { EventLog } from "../EventLog.ts"
import { System } from "../System.ts"
import { authConfigOf, credentialsOf, loginHost } from "./AuthConfig.ts"
import { decodeBody, filtersQuery, type Handler, json, timeQuery } from "./Request.ts"
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
  const registry = yield* Registry
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
    ),
    HttpRouter.route(
      "POST",
      "/auth",
      Effect.gen(function*() {
        const config = yield* orBadRequest(authConfigOf(yield* decodeBody(Schema.Unknown)))
        // A login with no user still asks the registry (one that needs none accepts it), as dockerd's.
        const credentials = (yield* orBadRequest(credentialsOf(config))) ?? requestCredentials("", "")
        yield* registry.login(loginHost(config.serveraddress), credentials).pipe(Effect.mapError((error) => fromLibrary(error)))
        // dockerd's AuthenticateOKBody; no identity token is ever issued here.
        return json({ IdentityToken: "", Status: "Login Succeeded" })
      })
    )
  ] as const
})
