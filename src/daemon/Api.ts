/**
 * The Docker Engine API over HTTP: the routes the docker CLI and dockerode use,
 * assembled from the route modules under `api/` (containers, execs, images,
 * networks, volumes, system and events) behind dockerd's router.
 *
 * As dockerd's router:
 * - every path is served with and without a version prefix (`/v1.47/...`);
 *   versions outside `MIN_API_VERSION`..`API_VERSION` are refused with 400;
 * - every response names the API version, the OS and the server in its headers;
 * - every error is `{"message": "..."}` with the status of its `DockerError`
 *   (a route nobody serves: 404 "page not found"; a defect: 500);
 * - a route of the Docker API that is not served here says so: 501 "... not
 *   supported by effect-containerd", or for swarm dockerd's 503 of a node
 *   outside a swarm (the table in `api/Unsupported.ts`);
 * - every error answer waits for the rest of the request body (bounded) first,
 *   so a client still sending reads the answer instead of a reset;
 * - a path with an empty, `.` or `..` segment or a trailing slash is a 404, not
 *   the route of its cleaned form; a JSON body over `maxJsonBody` is a 413.
 */
import { Cause, Effect, Layer, Option, Result, type Types } from "effect"
import { HttpRouter, HttpServerError, HttpServerRequest, HttpServerResponse } from "effect/http"
import { DockerError } from "./DockerError.ts"
import { containerRoutes } from "./api/ContainerRoutes.ts"
import { execRoutes } from "./api/ExecRoutes.ts"
import { imageRoutes } from "./api/ImageRoutes.ts"
import { networkRoutes } from "./api/NetworkRoutes.ts"
import { stripApiVersion } from "./api/Query.ts"
import { DEFAULT_JSON_BODY_LIMIT, drainBody, errorResponse, JsonBodyLimit, RouterHeaders } from "./api/Request.ts"
import { systemRoutes } from "./api/SystemRoutes.ts"
import { refusalOf } from "./api/Unsupported.ts"
import { volumeRoutes } from "./api/VolumeRoutes.ts"
import { API_VERSION, System } from "./System.ts"

// Where these lived before the routes were split by resource.
export { CONTAINER_FILTERS } from "./api/ContainerRoutes.ts"
export { compareVersions, parseBoolean, parseFilters, parsePlatform, parseTimestamp, stripApiVersion } from "./api/Query.ts"
export { frame } from "./api/Streams.ts"

/** The response for a failed request: its `DockerError`, 404 for no route, else 500. Server errors are logged, as by dockerd. */
const failureResponse = (
  request: HttpServerRequest.HttpServerRequest,
  cause: Cause.Cause<unknown>
): Effect.Effect<HttpServerResponse.HttpServerResponse> => {
  const failure = Option.getOrUndefined(Cause.findErrorOption(cause))
  if (failure instanceof DockerError) {
    const response = errorResponse(failure.status, failure.message)
    return failure.status >= 500
      ? Effect.as(Effect.logError(`${request.method} ${request.url}: ${failure.message}`), response)
      : Effect.succeed(response)
  }
  if (HttpServerError.isHttpServerError(failure)) {
    if (failure.reason._tag === "RouteNotFound") return Effect.succeed(errorResponse(404, "page not found"))
    if (failure.reason._tag === "RequestParseError") return Effect.succeed(errorResponse(400, failure.message))
  }
  const squashed = Cause.squash(cause)
  const message = squashed instanceof Error ? squashed.message : String(squashed)
  return Effect.as(Effect.logError(`${request.method} ${request.url} failed`, cause), errorResponse(500, message))
}

/**
 * Whether a path is not what Go's `path.Clean` makes of it: an empty segment
 * (`/containers//json`, an empty ID), a `.` or `..` segment, a trailing slash.
 * Such a path would otherwise reach a route it does not name (the list instead
 * of an inspect). dockerd's router answers `//`, `.` and `..` with a 301 to the
 * cleaned path and a trailing slash with a 404; here all are 404s.
 */
const isUnclean = (path: string): boolean =>
  path !== "/" && (path.endsWith("/") || path.split("/").slice(1).some((s) => s === "" || s === "." || s === ".."))

/** A request past the version check: refused if its path is unclean or its route one not served here, else routed. */
const routed = (
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, Types.unhandled>,
  request: HttpServerRequest.HttpServerRequest,
  headers: Readonly<Record<string, string>>
): Effect.Effect<HttpServerResponse.HttpServerResponse, Types.unhandled> => {
  const path = request.url.split("?")[0]!
  if (isUnclean(path)) return Effect.succeed(errorResponse(404, "page not found"))
  const refusal = refusalOf(request.method, path)
  if (refusal !== undefined) return Effect.succeed(errorResponse(refusal.status, refusal.message))
  return app.pipe(
    Effect.provideService(HttpServerRequest.HttpServerRequest, request),
    Effect.provideService(RouterHeaders, headers),
    // An interrupted request (the client went away) has no one to answer.
    Effect.catchCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : failureResponse(request, cause))
  )
}

/** What the API is served with. */
export interface ApiOptions {
  /** The largest JSON body read, in bytes (`DEFAULT_JSON_BODY_LIMIT`, 4 MiB, when absent); larger ones are 413s. */
  readonly maxJsonBody?: number | undefined
}

/**
 * dockerd's router around every route, the missing ones included: strips and
 * checks the version prefix, answers the routes not served here, turns
 * failures into JSON errors, sets the headers.
 */
const dockerRouter = (options: ApiOptions) => HttpRouter.middleware(
  Effect.gen(function*() {
    const { serverVersion } = yield* System
    const headers = {
      "Api-Version": API_VERSION,
      "Docker-Experimental": "false",
      "Ostype": "linux",
      "Server": `effect-containerd/${serverVersion}`
    }
    // Typed as passing failures on (router middleware may not claim to handle them), though it answers every one.
    return (
      app: Effect.Effect<HttpServerResponse.HttpServerResponse, Types.unhandled>
    ): Effect.Effect<HttpServerResponse.HttpServerResponse, Types.unhandled, HttpServerRequest.HttpServerRequest> =>
      Effect.gen(function*() {
        const request = yield* HttpServerRequest.HttpServerRequest
        const response = yield* Result.match(stripApiVersion(request.url), {
          onFailure: (message) => Effect.succeed(errorResponse(400, message)),
          onSuccess: (url) =>
            routed(app, request.modify({ url }), headers).pipe(
              Effect.provideService(JsonBodyLimit, options.maxJsonBody ?? DEFAULT_JSON_BODY_LIMIT)
            )
        })
        // A refusal often comes before the body is read (a 404, a bad query, a route not served): what is
        // left of it is read first, so a client still sending gets the answer, not a reset (a no-op if read).
        if (response.status >= 400) yield* drainBody
        yield* Effect.logDebug(`${request.method} ${request.url} ${response.status}`)
        return HttpServerResponse.setHeaders(response, headers)
      })
  }),
  { global: true }
)

/** Every route served, from the route modules. */
const routes = Effect.map(
  Effect.all([systemRoutes, containerRoutes, execRoutes, imageRoutes, networkRoutes, volumeRoutes]),
  (groups) => groups.flat()
)

/** The Docker Engine API: every route, with dockerd's version prefixes, headers and error bodies. */
export const layerWith = (options: ApiOptions) => Layer.mergeAll(HttpRouter.addAll(routes), dockerRouter(options))

/** The API with the default options. */
export const layer = layerWith({})
