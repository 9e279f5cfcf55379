/**
 * What every route of the Docker Engine API reads and writes: query and path
 * parameters parsed (a bad one is a 400 that says why, as dockerd's), JSON
 * bodies decoded against the daemon's models, and JSON answers. Route modules
 * build on these so each parameter is read one way everywhere.
 */
import { ByteSize, Context, Duration, Effect, Result, Schema, type Scope, Stream } from "effect"
import { HttpIncomingMessage, HttpRouter, HttpServerError, HttpServerRequest, HttpServerResponse } from "effect/http"
import { badRequest, type DockerError, orBadRequest, tooLarge } from "../DockerError.ts"
import { parseBoolean, parseFilters, parseInteger, parseTimestamp } from "./Query.ts"

/** The headers dockerd's router puts on every answer (API version, OS, server), for answers written past the router: a hijacked exec's 101. */
export const RouterHeaders = Context.Reference<Readonly<Record<string, string>>>("effect-containerd/daemon/RouterHeaders", {
  defaultValue: () => ({})
})

/** What a route handler runs with. */
export type RequestServices =
  | HttpServerRequest.HttpServerRequest
  | HttpServerRequest.ParsedSearchParams
  | HttpRouter.RouteContext
  | Scope.Scope

/** A route handler: every failure is a `DockerError`. */
export type Handler = Effect.Effect<HttpServerResponse.HttpServerResponse, DockerError, RequestServices>

/** A query parameter (the first, if repeated). */
export const queryParam = (name: string): Effect.Effect<string | undefined, never, HttpServerRequest.ParsedSearchParams> =>
  Effect.map(HttpServerRequest.ParsedSearchParams, (params) => {
    const value = params[name]
    return typeof value === "string" ? value : value?.[0]
  })

/** A query parameter through `parse`; its failure is a 400. */
export const parsedQuery = <A>(name: string, parse: (value: string | undefined) => Result.Result<A, string>) =>
  Effect.flatMap(queryParam(name), (value) => orBadRequest(parse(value)))

/** A boolean query parameter (Go's `ParseBool`; absent is false). */
export const booleanQuery = (name: string) => parsedQuery(name, (value) => parseBoolean(name, value))
/** An integer query parameter (absent is `undefined`). */
export const integerQuery = (name: string) => parsedQuery(name, (value) => parseInteger(name, value))
/** The `filters` query parameter, with the keys `allowed`. */
export const filtersQuery = (allowed: ReadonlyArray<string>) => parsedQuery("filters", (value) => parseFilters(value, allowed))
/** A query parameter that is absent when empty. */
export const optionalQuery = (name: string) => Effect.map(queryParam(name), (value) => (value === "" ? undefined : value))

/**
 * A time query parameter (`since`, `until`) in ms since the epoch, relative
 * times counting back from `now`; the values in `unset` (at least the empty
 * string) mean none.
 */
export const timeQuery = (name: string, now: number, unset: ReadonlyArray<string> = []) =>
  parsedQuery(name, (value) =>
    value === undefined || value === "" || unset.includes(value) ? Result.succeed(undefined) : parseTimestamp(value, now))

/** A path parameter of the route (`:id`, or `*` for what a wildcard matched). */
export const pathParam = (name: string): Effect.Effect<string, never, HttpRouter.RouteContext> =>
  Effect.map(HttpRouter.params, (params) => params[name] ?? "")

/** Every value of a repeated query parameter (`changes=…&changes=…`), empty ones too, in order. */
export const repeatedQuery = (name: string): Effect.Effect<ReadonlyArray<string>, never, HttpServerRequest.ParsedSearchParams> =>
  Effect.map(HttpServerRequest.ParsedSearchParams, (params) => {
    const value = params[name]
    return typeof value === "string" ? [value] : value ?? []
  })

/**
 * The largest JSON body read (4 MiB unless the daemon's `--max-json-body` says
 * otherwise). dockerd has no limit; without one a 100 MB body grew the daemon
 * past 1 GB and held every other request for seconds while it was parsed. A
 * create body is stored whole on the containerd container (and its Env again in
 * the spec), so more than a few MiB would pass containerd's 16 MiB message limit
 * anyway.
 */
export const JsonBodyLimit = Context.Reference<number>("effect-containerd/daemon/JsonBodyLimit", {
  defaultValue: () => DEFAULT_JSON_BODY_LIMIT
})
/** 4 MiB. */
export const DEFAULT_JSON_BODY_LIMIT = 4 * 1024 * 1024

const overLimit = (limit: number) =>
  tooLarge(`the request body is larger than ${limit} bytes, the daemon's limit for JSON bodies (--max-json-body)`)

/**
 * The JSON body decoded with `schema`; malformed JSON and values of the wrong
 * type are 400s that say where, a body over `JsonBodyLimit` a 413 (refused by
 * its Content-Length before a byte is read, else once the limit is passed: what
 * is past it is never held).
 */
export const decodeBody = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S) =>
  Effect.flatMap(decodeOptionalBody(schema), (value) =>
    value === undefined ? Effect.fail(badRequest("invalid JSON: the request body is empty")) : Effect.succeed(value))

/** The same for a body that may be absent: none when it is empty or `null` (dockerd's decoders take both as none). */
export const decodeOptionalBody = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const limit = yield* JsonBodyLimit
    const declared = Number(request.headers["content-length"] ?? Number.NaN)
    if (declared > limit) return yield* overLimit(limit)
    const text = yield* request.text.pipe(
      Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(limit)),
      Effect.mapError((error) =>
        HttpServerError.isHttpServerError(error) && error.reason._tag === "RequestParseError" &&
          error.reason.reason === "BodyTooLarge"
          ? overLimit(limit)
          : badRequest("could not read the request body")
      )
    )
    if (text.trim() === "" || text.trim() === "null") return undefined
    const json = yield* orBadRequest(Result.try({
      try: (): unknown => JSON.parse(text),
      catch: (error) => `invalid JSON: ${error instanceof Error ? error.message : String(error)}`
    }))
    return yield* Schema.decodeUnknownEffect(schema)(json).pipe(
      Effect.mapError((error) => badRequest(`invalid JSON: ${error.message.replace(/\s*\n\s*/g, " ")}`))
    )
  })

/** The most of a refused request's body that is read (and dropped) before answering. */
const DRAIN_LIMIT = 64 * 1024 * 1024
/** How long a refusal waits for the body before it answers anyway (a client that stopped sending). */
const DRAIN_TIMEOUT = Duration.seconds(30)

/**
 * Reads and drops what is left of the request body (up to 64 MiB, for up to
 * 30 s) so that a client still sending (`docker build`'s context, `docker
 * load`'s tarball) receives the answer instead of a reset connection. A body
 * already read is not read again.
 */
export const drainBody: Effect.Effect<void, never, HttpServerRequest.HttpServerRequest> = Effect.flatMap(
  HttpServerRequest.HttpServerRequest,
  (request) => {
    let read = 0
    return Stream.suspend(() => request.stream).pipe(
      Stream.takeWhile((chunk) => (read += chunk.byteLength) <= DRAIN_LIMIT),
      Stream.runDrain,
      Effect.timeoutOption(DRAIN_TIMEOUT),
      // A body that breaks off (the client hung up), or one a web request's reader already took, cannot
      // be drained further: the answer is still sent.
      Effect.catchCause(() => Effect.void)
    )
  }
)

/** A JSON answer, newline-terminated as Go's `json.Encoder` writes dockerd's. */
export const json = (body: unknown, status = 200) =>
  HttpServerResponse.text(`${JSON.stringify(body)}\n`, { status, contentType: "application/json" })
/** An answer without a body. */
export const empty = (status: number) => HttpServerResponse.empty({ status })
/** dockerd's error body, `{"message": "..."}`. */
export const errorResponse = (status: number, message: string) => json({ message }, status)

/** `?h=&w=` of a resize: both required, 1 to 65535. */
export const terminalSize = Effect.gen(function*() {
  const height = yield* integerQuery("h")
  const width = yield* integerQuery("w")
  if (height === undefined || width === undefined || height <= 0 || width <= 0 || height > 65535 || width > 65535) {
    return yield* badRequest("invalid terminal size: h and w must be between 1 and 65535")
  }
  return { height, width }
})
