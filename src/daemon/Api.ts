/**
 * The Docker Engine API over HTTP: the routes the docker CLI and dockerode use,
 * translated to the `Engine`, `DockerImages`, `EventLog` and `System` services.
 * This module only translates: it parses paths, query parameters and bodies as
 * dockerd does, and writes what the services answer in dockerd's shapes.
 *
 * As dockerd's router:
 * - every path is served with and without a version prefix (`/v1.47/...`);
 *   versions outside `MIN_API_VERSION`..`API_VERSION` are refused with 400;
 * - every response names the API version, the OS and the server in its headers;
 * - every error is `{"message": "..."}` with the status of its `DockerError`
 *   (a route nobody serves: 404 "page not found"; a defect: 500);
 * - boolean query parameters are Go's `strconv.ParseBool` (`1`, `true`, `0`,
 *   `false`, ...; empty is false), `filters` is JSON (`{"status":["running"]}`,
 *   or the legacy `{"status":{"running":true}}`);
 * - streamed answers (`wait`, `events`, pull progress) send their headers at
 *   once: `docker run` waits for the headers of its `wait` before it starts the
 *   container.
 */
import { Cause, Clock, Effect, Layer, Option, Result, Schema, type Scope, Stream, type Types } from "effect"
import { HttpRouter, HttpServerError, HttpServerRequest, HttpServerResponse } from "effect/http"
import type { Platform } from "../domain/Image.ts"
import { badRequest, DockerError, notFound } from "./DockerError.ts"
import { type AttachSession, Engine, type WaitCondition } from "./Engine.ts"
import { formatDockerTimestamp } from "./JsonLogFile.ts"
import { EventLog } from "./EventLog.ts"
import { DockerImages, IMAGE_FILTERS } from "./Images.ts"
import { CreateBody, ExecConfig, ExecStartConfig } from "./Model.ts"
import { API_VERSION, MIN_API_VERSION, System } from "./System.ts"

/** Docker's filters: each key matches if any of its values does. */
export type Filters = Readonly<Record<string, ReadonlyArray<string>>>

/** The filters `GET /containers/json` passes to the engine. */
export const CONTAINER_FILTERS: ReadonlyArray<string> = ["id", "name", "label", "status"]
/** The filters `GET /events` understands (the `EventLog`'s). */
const EVENT_FILTERS: ReadonlyArray<string> = ["type", "event", "container", "image", "label"]

// ---------------------------------------------------------------------------
// Parsing, as dockerd does (pure)

const TRUE = new Set(["1", "t", "T", "TRUE", "true", "True"])
const FALSE = new Set(["", "0", "f", "F", "FALSE", "false", "False"])

/** A boolean query parameter: Go's `strconv.ParseBool`, and absent or empty is false. */
export const parseBoolean = (name: string, value: string | undefined): Result.Result<boolean, string> =>
  value === undefined || FALSE.has(value)
    ? Result.succeed(false)
    : TRUE.has(value)
    ? Result.succeed(true)
    : Result.fail(`invalid value for ${name}: ${JSON.stringify(value)} is not a boolean (use 1, true, 0 or false)`)

/** An integer query parameter (Go's `strconv.Atoi`); absent or empty is `undefined`. */
export const parseInteger = (name: string, value: string | undefined): Result.Result<number | undefined, string> =>
  value === undefined || value === ""
    ? Result.succeed(undefined)
    : /^[+-]?\d+$/.test(value) && Number.isSafeInteger(Number(value))
    ? Result.succeed(Number(value))
    : Result.fail(`invalid value for ${name}: ${JSON.stringify(value)} is not an integer`)

const FiltersJson = Schema.fromJsonString(
  Schema.Record(Schema.String, Schema.Union([Schema.Array(Schema.String), Schema.Record(Schema.String, Schema.Boolean)]))
)
const decodeFilters = Schema.decodeUnknownResult(FiltersJson)

/**
 * The `filters` query parameter: JSON mapping each key to its values, or (the
 * legacy form, API < 1.22) to an object whose true keys are the values. Keys
 * outside `allowed` are refused as dockerd refuses them ("invalid filter 'x'").
 */
export const parseFilters = (
  value: string | undefined,
  allowed: ReadonlyArray<string>
): Result.Result<Filters | undefined, string> => {
  if (value === undefined || value === "") return Result.succeed(undefined)
  return Result.match(decodeFilters(value), {
    onFailure: () =>
      Result.fail(`invalid filters ${JSON.stringify(value)}: expected JSON such as {"status":["running"]}`),
    onSuccess: (decoded) => {
      const unknown = Object.keys(decoded).find((key) => !allowed.includes(key))
      if (unknown !== undefined) return Result.fail(`invalid filter '${unknown}'`)
      return Result.succeed(Object.fromEntries(
        Object.entries(decoded).map(([key, values]) => [
          key,
          Array.isArray(values) ? values : Object.keys(values).filter((v) => (values as Record<string, boolean>)[v] === true)
        ])
      ))
    }
  })
}

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000
}
const DURATION = /^[+-]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$/
const DURATION_PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g
const UNIX = /^(\d+)(?:\.(\d{1,9}))?$/
const DATE = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(Z|[+-]\d{2}:\d{2})?$/

/**
 * A time of `GET /events?since=&until=` in ms since the epoch, as dockerd's
 * `timetypes.GetTimestamp`: unix seconds with an optional fraction
 * (`1700000000.5`), an RFC 3339 date or time (without a zone: local time), or a
 * Go duration before `now` (`10m`, `1h30m`).
 */
export const parseTimestamp = (value: string, now: number): Result.Result<number, string> => {
  const unix = UNIX.exec(value)
  if (unix !== null) return Result.succeed(Number(unix[1]) * 1000 + Number(`0.${unix[2] ?? "0"}`) * 1000)
  if (DURATION.test(value)) {
    let millis = 0
    for (const [, amount, unit] of value.matchAll(DURATION_PART)) millis += Number(amount) * DURATION_UNITS[unit!]!
    return Result.succeed(now - (value.startsWith("-") ? -millis : millis))
  }
  const date = DATE.exec(value)
  if (date !== null) {
    const [, y, mo, d, h = "0", mi = "0", s = "0", fraction = "0", zone] = date
    const fields = [Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), Number(`0.${fraction}`) * 1000] as const
    if (zone === undefined) return Result.succeed(new Date(...fields).getTime())
    const offset = zone === "Z" ? 0 : (zone.startsWith("-") ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6)))
    return Result.succeed(Date.UTC(...fields) - offset * 60_000)
  }
  return Result.fail(`failed to parse value as time or duration: ${JSON.stringify(value)}`)
}

/** Compares dotted versions numerically (`1.9` < `1.24`), missing parts counting as 0. */
export const compareVersions = (a: string, b: string): number => {
  const left = a.split(".").map(Number)
  const right = b.split(".").map(Number)
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const difference = (left[i] ?? 0) - (right[i] ?? 0)
    if (difference !== 0) return Math.sign(difference)
  }
  return 0
}

const VERSION_PREFIX = /^\/v([0-9.]+)(?=\/|\?|$)/

/** The URL without its API version prefix, or why that version is refused (dockerd's version middleware). */
export const stripApiVersion = (url: string): Result.Result<string, string> => {
  const match = VERSION_PREFIX.exec(url)
  if (match === null) return Result.succeed(url)
  const version = match[1]!
  if (compareVersions(version, API_VERSION) > 0) {
    return Result.fail(`client version ${version} is too new. Maximum supported API version is ${API_VERSION}`)
  }
  if (compareVersions(version, MIN_API_VERSION) < 0) {
    return Result.fail(
      `client version ${version} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`
    )
  }
  const rest = url.slice(match[0].length)
  return Result.succeed(rest.startsWith("/") ? rest : `/${rest}`)
}

const ARCHITECTURE_ALIASES: Readonly<Record<string, string>> = { x86_64: "amd64", "x86-64": "amd64", aarch64: "arm64" }

/** `?platform=os/arch[/variant]` of a pull; absent or empty is the host's. */
export const parsePlatform = (value: string | undefined): Result.Result<Platform | undefined, string> => {
  if (value === undefined || value === "") return Result.succeed(undefined)
  const [os, architecture, variant, ...rest] = value.toLowerCase().split("/")
  if (os === undefined || os === "" || architecture === undefined || architecture === "" || rest.length > 0) {
    return Result.fail(`invalid platform ${JSON.stringify(value)}: expected os/arch[/variant]`)
  }
  const arch = ARCHITECTURE_ALIASES[architecture] ?? architecture
  return Result.succeed(variant === undefined || variant === "" ? { os, architecture: arch } : { os, architecture: arch, variant })
}

const WAIT_CONDITIONS: ReadonlyArray<WaitCondition> = ["not-running", "next-exit", "removed"]

/** `?condition=` of a wait; absent or empty is `not-running`. */
export const parseWaitCondition = (value: string | undefined): Result.Result<WaitCondition, string> => {
  if (value === undefined || value === "") return Result.succeed("not-running")
  const condition = WAIT_CONDITIONS.find((c) => c === value)
  return condition === undefined
    ? Result.fail(`invalid condition: ${JSON.stringify(value)} (use ${WAIT_CONDITIONS.join(", ")})`)
    : Result.succeed(condition)
}

// ---------------------------------------------------------------------------
// Requests and responses

/** What a route handler runs with. */
type RequestServices =
  | HttpServerRequest.HttpServerRequest
  | HttpServerRequest.ParsedSearchParams
  | HttpRouter.RouteContext
  | Scope.Scope

/** A route handler: every failure is a `DockerError`. */
type Handler = Effect.Effect<HttpServerResponse.HttpServerResponse, DockerError, RequestServices>

const orBadRequest = <A>(result: Result.Result<A, string>): Effect.Effect<A, DockerError> =>
  Result.match(result, { onSuccess: Effect.succeed, onFailure: (message) => Effect.fail(badRequest(message)) })

/** A query parameter (the first, if repeated). */
const queryParam = (name: string): Effect.Effect<string | undefined, never, HttpServerRequest.ParsedSearchParams> =>
  Effect.map(HttpServerRequest.ParsedSearchParams, (params) => {
    const value = params[name]
    return typeof value === "string" ? value : value?.[0]
  })

const parsedQuery = <A>(name: string, parse: (value: string | undefined) => Result.Result<A, string>) =>
  Effect.flatMap(queryParam(name), (value) => orBadRequest(parse(value)))

const booleanQuery = (name: string) => parsedQuery(name, (value) => parseBoolean(name, value))
const integerQuery = (name: string) => parsedQuery(name, (value) => parseInteger(name, value))
const filtersQuery = (allowed: ReadonlyArray<string>) => parsedQuery("filters", (value) => parseFilters(value, allowed))
/** A query parameter that is absent when empty. */
const optionalQuery = (name: string) => Effect.map(queryParam(name), (value) => (value === "" ? undefined : value))

const pathParam = (name: string): Effect.Effect<string, never, HttpRouter.RouteContext> =>
  Effect.map(HttpRouter.params, (params) => params[name] ?? "")

/** The JSON body decoded with `schema`; malformed JSON and values of the wrong type are 400s that say where. */
const decodeBody = <S extends Schema.Top & { readonly DecodingServices: never }>(schema: S) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const text = yield* request.text.pipe(Effect.mapError(() => badRequest("could not read the request body")))
    if (text.trim() === "") return yield* badRequest("invalid JSON: the request body is empty")
    const json = yield* orBadRequest(Result.try({
      try: (): unknown => JSON.parse(text),
      catch: (error) => `invalid JSON: ${error instanceof Error ? error.message : String(error)}`
    }))
    return yield* Schema.decodeUnknownEffect(schema)(json).pipe(
      Effect.mapError((error) => badRequest(`invalid JSON: ${error.message.replace(/\s*\n\s*/g, " ")}`))
    )
  })

const json = (body: unknown, status = 200) => HttpServerResponse.jsonUnsafe(body, { status })
const empty = (status: number) => HttpServerResponse.empty({ status })
const errorResponse = (status: number, message: string) => json({ message }, status)

const encoder = new TextEncoder()

/**
 * A streamed response. The empty first chunk makes Node send the headers at
 * once, as dockerd flushes them before it has anything to say.
 */
const flushedStream = (chunks: Stream.Stream<Uint8Array>, contentType: string) =>
  HttpServerResponse.stream(Stream.concat(Stream.make(new Uint8Array(0)), chunks), { contentType })

/** Values as JSON lines, streamed. */
const jsonLines = (values: Stream.Stream<unknown>, separator = "\n") =>
  flushedStream(Stream.map(values, (value) => encoder.encode(JSON.stringify(value) + separator)), "application/json")

/** A frame of Docker's multiplexed stream (attach, logs without a TTY): `[stream,0,0,0,size(u32 BE)]` then the payload; 0 stdin, 1 stdout, 2 stderr. */
export const frame = (stream: 0 | 1 | 2, payload: Uint8Array): Uint8Array => {
  const out = new Uint8Array(8 + payload.byteLength)
  out[0] = stream
  new DataView(out.buffer).setUint32(4, payload.byteLength, false)
  out.set(payload, 8)
  return out
}

/** How attach and logs frame output: raw bytes for a terminal, else Docker's multiplexed frames. */
const framed = (tty: boolean) => (stream: "stdout" | "stderr", data: Uint8Array): Uint8Array =>
  tty ? data : frame(stream === "stdout" ? 1 : 2, data)

const streamContentType = (tty: boolean) =>
  tty ? "application/vnd.docker.raw-stream" : "application/vnd.docker.multiplexed-stream"

/** A container's or exec's output as a response body (attach without a hijack, logs). */
const outputResponse = (tty: boolean, output: AttachSession["output"]) => {
  const frameOf = framed(tty)
  return flushedStream(Stream.map(output, ({ data, stream }) => frameOf(stream, data)), streamContentType(tty))
}

/**
 * An attach over the connection the client hijacks (`Upgrade: tcp`, as the
 * docker CLI does): output framed onto it until the run ends, its input fed to
 * the container's stdin; the client half-closing its side ends the input.
 */
const hijack = (request: HttpServerRequest.HttpServerRequest, session: AttachSession) =>
  Effect.gen(function*() {
    const socket = yield* request.upgradeWith({ headers: { "content-type": streamContentType(session.tty) } }).pipe(
      Effect.mapError((error) => badRequest(`could not upgrade the connection: ${error.message}`))
    )
    const reader = yield* socket.reader.pipe(Effect.orElseSucceed(() => undefined))
    const writer = yield* socket.writer
    if (reader !== undefined && session.write !== undefined) {
      const write = session.write
      const pump: Effect.Effect<void> = reader.pull.pipe(
        Effect.flatMap((chunks) => Effect.forEach(chunks, (chunk) => write(typeof chunk === "string" ? encoder.encode(chunk) : chunk), { discard: true })),
        Effect.forever,
        Effect.catch(() => session.endInput)
      )
      yield* Effect.forkScoped(pump)
    }
    const frameOf = framed(session.tty)
    yield* Stream.runForEach(session.output, ({ data, stream }) => writer.write(frameOf(stream, data))).pipe(Effect.ignore)
    return HttpServerResponse.empty({ status: 101 })
  })

/**
 * Answers an attach or an attached exec: over the hijacked connection when the
 * client asks for one (`Upgrade`), else (dockerode without stdin) with the
 * framed output as the response body.
 */
const respondAttached = (session: AttachSession) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (request.headers["upgrade"] !== undefined) return yield* hijack(request, session)
    return outputResponse(session.tty, session.output)
  })

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
 * dockerd's router around every route, the missing ones included: strips and
 * checks the version prefix, turns failures into JSON errors, sets the headers.
 */
const dockerRouter = HttpRouter.middleware(
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
            app.pipe(
              Effect.provideService(HttpServerRequest.HttpServerRequest, request.modify({ url })),
              // An interrupted request (the client went away) has no one to answer.
              Effect.catchCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : failureResponse(request, cause))
            )
        })
        yield* Effect.logDebug(`${request.method} ${request.url} ${response.status}`)
        return HttpServerResponse.setHeaders(response, headers)
      })
  }),
  { global: true }
)

// ---------------------------------------------------------------------------
// Routes

const routes = Effect.gen(function*() {
  const engine = yield* Engine
  const images = yield* DockerImages
  const eventLog = yield* EventLog
  const system = yield* System

  /** A route on a container: `:id` is an id, an id prefix or a name. */
  const onContainer = (f: (id: string) => Handler): Handler => Effect.flatMap(pathParam("id"), f)

  /** A route under `/images/`: image names contain `/`, so the name is what the wildcard matched, less `suffix`. */
  const onImage = (suffix: string, f: (name: string) => Handler): Handler =>
    Effect.flatMap(pathParam("*"), (rest) =>
      rest.endsWith(suffix) && rest.length > suffix.length
        ? f(rest.slice(0, rest.length - suffix.length))
        : Effect.fail(notFound("page not found")))

  const stopOptions = Effect.all({ timeout: integerQuery("t"), signal: optionalQuery("signal") })

  /** `?h=&w=` of a resize: both required, 1 to 65535. */
  const terminalSize = Effect.gen(function*() {
    const height = yield* integerQuery("h")
    const width = yield* integerQuery("w")
    if (height === undefined || width === undefined || height <= 0 || width <= 0 || height > 65535 || width > 65535) {
      return yield* badRequest("invalid terminal size: h and w must be between 1 and 65535")
    }
    return { height, width }
  })

  const ping: Handler = Effect.succeed(HttpServerResponse.text("OK", {
    contentType: "text/plain; charset=utf-8",
    headers: { "Cache-Control": "no-cache, no-store, must-revalidate", Pragma: "no-cache", Swarm: "inactive" }
  }))

  return [
    HttpRouter.route("GET", "/_ping", ping),
    HttpRouter.route("GET", "/version", Effect.map(system.version, (version) => json(version))),
    HttpRouter.route("GET", "/info", Effect.map(system.info, (info) => json(info))),

    HttpRouter.route(
      "GET",
      "/events",
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const time = (name: string) =>
          parsedQuery(name, (value) => value === undefined || value === "" ? Result.succeed(undefined) : parseTimestamp(value, now))
        const since = yield* time("since")
        const until = yield* time("until")
        if (since !== undefined && until !== undefined && until < since) {
          return yield* badRequest("`since` time cannot be after `until` time")
        }
        const filters = yield* filtersQuery(EVENT_FILTERS)
        return jsonLines(eventLog.subscribe({ since, until, filters }))
      })
    ),

    // Containers
    HttpRouter.route(
      "POST",
      "/containers/create",
      Effect.gen(function*() {
        const name = yield* optionalQuery("name")
        const body = yield* decodeBody(CreateBody)
        return json(yield* engine.create(name, body), 201)
      })
    ),
    HttpRouter.route(
      "GET",
      "/containers/json",
      Effect.gen(function*() {
        const all = yield* booleanQuery("all")
        const limit = yield* integerQuery("limit")
        const filters = yield* filtersQuery(CONTAINER_FILTERS)
        return json(yield* engine.list({ all, limit, filters }))
      })
    ),
    HttpRouter.route("GET", "/containers/:id/json", onContainer((id) => Effect.map(engine.inspect(id), (body) => json(body)))),
    // `ps_args` is accepted and ignored: the engine reads /proc itself rather than running ps.
    HttpRouter.route("GET", "/containers/:id/top", onContainer((id) => Effect.map(engine.top(id), (body) => json(body)))),
    HttpRouter.route(
      "POST",
      "/containers/:id/start",
      onContainer((id) => Effect.map(engine.start(id), ({ alreadyRunning }) => empty(alreadyRunning ? 304 : 204)))
    ),
    HttpRouter.route(
      "POST",
      "/containers/:id/stop",
      onContainer((id) =>
        Effect.flatMap(stopOptions, (options) =>
          Effect.map(engine.stop(id, options), ({ alreadyStopped }) => empty(alreadyStopped ? 304 : 204))))
    ),
    HttpRouter.route(
      "POST",
      "/containers/:id/restart",
      onContainer((id) => Effect.flatMap(stopOptions, (options) => Effect.as(engine.restart(id, options), empty(204))))
    ),
    HttpRouter.route(
      "POST",
      "/containers/:id/kill",
      onContainer((id) => Effect.flatMap(optionalQuery("signal"), (signal) => Effect.as(engine.kill(id, signal), empty(204))))
    ),
    HttpRouter.route("POST", "/containers/:id/pause", onContainer((id) => Effect.as(engine.pause(id), empty(204)))),
    HttpRouter.route("POST", "/containers/:id/unpause", onContainer((id) => Effect.as(engine.unpause(id), empty(204)))),
    HttpRouter.route(
      "POST",
      "/containers/:id/wait",
      onContainer((id) =>
        Effect.gen(function*() {
          const condition = yield* parsedQuery("condition", parseWaitCondition)
          // Not found is a 404 before anything is sent; the status comes later, on the open response.
          const waiting = yield* engine.wait(id, condition)
          return jsonLines(Stream.fromEffect(waiting.pipe(
            Effect.map(({ StatusCode }) => ({ StatusCode, Error: null })),
            Effect.catch((error) => Effect.succeed({ StatusCode: -1, Error: { Message: error.message } }))
          )))
        }))
    ),
    HttpRouter.route(
      "POST",
      "/containers/:id/attach",
      onContainer((id) =>
        Effect.gen(function*() {
          const options = yield* Effect.all({
            stdin: booleanQuery("stdin"),
            stdout: booleanQuery("stdout"),
            stderr: booleanQuery("stderr"),
            logs: booleanQuery("logs"),
            stream: booleanQuery("stream")
          })
          return yield* respondAttached(yield* engine.attach(id, options))
        }))
    ),
    HttpRouter.route(
      "GET",
      "/containers/:id/logs",
      onContainer((id) =>
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          const time = (name: string) =>
            parsedQuery(name, (value) => value === undefined || value === "" || value === "0" ? Result.succeed(undefined) : parseTimestamp(value, now))
          const stdout = yield* booleanQuery("stdout")
          const stderr = yield* booleanQuery("stderr")
          if (!stdout && !stderr) return yield* badRequest("you must choose at least one stream")
          const follow = yield* booleanQuery("follow")
          const timestamps = yield* booleanQuery("timestamps")
          const since = yield* time("since")
          const until = yield* time("until")
          const tailText = yield* optionalQuery("tail")
          const tail = tailText === undefined || tailText === "all" ? undefined : yield* integerQuery("tail")
          const { entries, tty } = yield* engine.logs(id, { stdout, stderr, follow, since, until, tail })
          const output = Stream.map(entries, (entry) => ({
            stream: entry.stream,
            data: timestamps ? Buffer.concat([encoder.encode(`${formatDockerTimestamp(entry.timeNanos)} `), entry.log]) : entry.log
          })).pipe(Stream.catch(() => Stream.empty))
          return outputResponse(tty, output)
        }))
    ),
    HttpRouter.route(
      "POST",
      "/containers/:id/resize",
      onContainer((id) =>
        Effect.gen(function*() {
          const { height, width } = yield* terminalSize
          yield* engine.resize(id, height, width)
          return empty(200)
        }))
    ),
    HttpRouter.route(
      "DELETE",
      "/containers/:id",
      onContainer((id) =>
        Effect.gen(function*() {
          const force = yield* booleanQuery("force")
          // Volumes and links do not exist here; the flags are checked, as dockerd does, and have nothing to act on.
          yield* booleanQuery("v")
          yield* booleanQuery("link")
          yield* engine.remove(id, { force })
          return empty(204)
        }))
    ),

    // Execs
    HttpRouter.route(
      "POST",
      "/containers/:id/exec",
      onContainer((id) => Effect.flatMap(decodeBody(ExecConfig), (config) => Effect.map(engine.execCreate(id, config), (body) => json(body, 201))))
    ),
    HttpRouter.route(
      "POST",
      "/exec/:id/start",
      Effect.gen(function*() {
        const id = yield* pathParam("id")
        const config = yield* decodeBody(ExecStartConfig)
        const { exited, session } = yield* engine.execStart(id, { detach: config.Detach === true })
        if (config.Detach === true) return empty(200)
        // The CLI asks for the exit code when the stream ends: end it only after the exit is known.
        return yield* respondAttached({ ...session, output: Stream.concat(session.output, Stream.fromEffectDrain(exited)) })
      })
    ),
    HttpRouter.route(
      "POST",
      "/exec/:id/resize",
      Effect.gen(function*() {
        const id = yield* pathParam("id")
        const { height, width } = yield* terminalSize
        yield* engine.execResize(id, height, width)
        return empty(200)
      })
    ),
    HttpRouter.route("GET", "/exec/:id/json", Effect.flatMap(pathParam("id"), (id) => Effect.map(engine.execInspect(id), (body) => json(body)))),

    // Images
    HttpRouter.route(
      "POST",
      "/images/create",
      Effect.gen(function*() {
        if ((yield* optionalQuery("fromSrc")) !== undefined) {
          return yield* new DockerError({ status: 501, message: "importing images (fromSrc) is not supported" })
        }
        const fromImage = yield* optionalQuery("fromImage")
        if (fromImage === undefined) return yield* badRequest("fromImage is required")
        const tag = yield* optionalQuery("tag")
        const platform = yield* parsedQuery("platform", parsePlatform)
        return jsonLines(yield* images.pull(fromImage, tag, { platform }), "\r\n")
      })
    ),
    HttpRouter.route(
      "GET",
      "/images/json",
      Effect.gen(function*() {
        // `all` (intermediate images) and `digests` change nothing: there are no intermediate images, digests are always shown.
        yield* booleanQuery("all")
        yield* booleanQuery("digests")
        const filters = yield* filtersQuery(IMAGE_FILTERS)
        return json(yield* images.list(filters))
      })
    ),
    HttpRouter.route("GET", "/images/*", onImage("/json", (name) => Effect.map(images.inspect(name), (body) => json(body)))),
    HttpRouter.route(
      "DELETE",
      "/images/*",
      onImage("", (name) =>
        Effect.gen(function*() {
          const force = yield* booleanQuery("force")
          yield* booleanQuery("noprune")
          return json(yield* images.remove(name, { force }))
        }))
    ),
    HttpRouter.route(
      "POST",
      "/images/*",
      onImage("/tag", (name) =>
        Effect.gen(function*() {
          const repo = yield* optionalQuery("repo")
          if (repo === undefined) return yield* badRequest("repo is required")
          yield* images.tag(name, repo, yield* optionalQuery("tag"))
          return empty(201)
        }))
    )
  ] as const
})

/** The Docker Engine API: every route, with dockerd's version prefixes, headers and error bodies. */
export const layer = Layer.mergeAll(HttpRouter.addAll(routes), dockerRouter)
