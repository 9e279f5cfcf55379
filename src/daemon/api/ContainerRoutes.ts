/**
 * The container routes of the Docker Engine API (`/containers/...`, execs
 * aside): their parameters parsed as dockerd parses them, handed to the
 * `Engine`, and its answers written in dockerd's shapes and statuses (304 for a
 * start or stop with nothing to do, 201 for a create, ...).
 */
import { Clock, Effect, Result, Stream } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { badRequest, internal, orBadRequest } from "../DockerError.ts"
import { Engine } from "../Engine.ts"
import { formatDockerTimestamp } from "../JsonLogFile.ts"
import { checkPsArgs } from "../engine/Top.ts"
import { CreateBody, UpdateBody } from "../Model.ts"
import { parseDetachKeys } from "./DetachKeys.ts"
import { stringifyJson } from "./Json.ts"
import { compareVersions, parseBoolean, parseWaitCondition, PRUNE_FILTERS, pruneSelector } from "./Query.ts"
import {
  booleanQuery,
  decodeBody,
  empty,
  filtersQuery,
  type Handler,
  integerQuery,
  json,
  optionalQuery,
  parsedQuery,
  pathParam,
  terminalSize,
  timeQuery
} from "./Request.ts"
import { flushedStream, jsonLines, outputResponse, requestApiVersion, respondAttached } from "./Streams.ts"

/** The filters `GET /containers/json` passes to the engine. */
export const CONTAINER_FILTERS: ReadonlyArray<string> = ["id", "name", "label", "status", "health"]

const encoder = new TextEncoder()

/** A route on a container: `:id` is an id, an id prefix or a name. */
const onContainer = (f: (id: string) => Handler): Handler => Effect.flatMap(pathParam("id"), f)

/** `?path=` of the archive routes, required as dockerd's `ArchiveFormValues`. */
const archivePathQuery = Effect.flatMap(optionalQuery("path"), (path) =>
  path === undefined ? Effect.fail(badRequest("bad parameter: path cannot be empty")) : Effect.succeed(path))

/** The `X-Docker-Container-Path-Stat` header: the stat as base64 JSON, which the CLI decodes. */
const pathStatHeader = (stat: unknown) => ({ "X-Docker-Container-Path-Stat": Buffer.from(JSON.stringify(stat)).toString("base64") })

/** `?t=&signal=` of a stop or restart. */
const stopOptions = Effect.all({ timeout: integerQuery("t"), signal: optionalQuery("signal") })

/** The container routes, over the `Engine`. */
export const containerRoutes = Effect.gen(function*() {
  const engine = yield* Engine
  return [
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
      "POST",
      "/containers/prune",
      Effect.gen(function*() {
        const select = yield* orBadRequest(pruneSelector(yield* filtersQuery(PRUNE_FILTERS), yield* Clock.currentTimeMillis))
        return json(yield* engine.prune(select))
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
    HttpRouter.route(
      "GET",
      "/containers/:id/top",
      onContainer((id) =>
        Effect.gen(function*() {
          const psArgs = yield* optionalQuery("ps_args")
          // Checked before the container is looked up, and a 500 as dockerd answers it.
          yield* Result.match(checkPsArgs(psArgs ?? ""), { onSuccess: () => Effect.void, onFailure: (message) => Effect.fail(internal(message)) })
          return json(yield* engine.top(id, psArgs))
        }))
    ),
    HttpRouter.route(
      "GET",
      "/containers/:id/stats",
      onContainer((id) =>
        Effect.gen(function*() {
          // dockerd's default is a stream; one-shot exists from API 1.41 and is ignored before.
          const stream = yield* parsedQuery("stream", (value) =>
            value === undefined ? Result.succeed(true) : parseBoolean("stream", value))
          const oneShot = compareVersions(yield* requestApiVersion, "1.41") >= 0 && (yield* booleanQuery("one-shot"))
          const frames = yield* engine.stats(id, { stream, oneShot })
          // Bigint counters: written by `stringifyJson`, one frame a line as Go's encoder.
          const lines = Stream.map(frames, (frame) => encoder.encode(`${stringifyJson(frame)}\n`))
          // A sample failing mid-stream ends it: the status is sent already.
          return flushedStream(Stream.catch(lines, () => Stream.empty), "application/json")
        }))
    ),
    HttpRouter.route(
      "HEAD",
      "/containers/:id/archive",
      onContainer((id) =>
        Effect.flatMap(archivePathQuery, (path) =>
          Effect.map(engine.statPath(id, path), (stat) => HttpServerResponse.empty({ status: 200, headers: pathStatHeader(stat) }))))
    ),
    HttpRouter.route(
      "GET",
      "/containers/:id/archive",
      onContainer((id) =>
        Effect.flatMap(archivePathQuery, (path) =>
          Effect.map(engine.archivePath(id, path), ({ stat, tar }) =>
            // A failure after the first byte cuts the connection, as dockerd's.
            HttpServerResponse.stream(tar, { contentType: "application/x-tar", headers: pathStatHeader(stat) }))))
    ),
    HttpRouter.route(
      "PUT",
      "/containers/:id/archive",
      onContainer((id) =>
        Effect.gen(function*() {
          const path = yield* archivePathQuery
          const noOverwriteDirNonDir = yield* booleanQuery("noOverwriteDirNonDir")
          const copyUIDGID = yield* booleanQuery("copyUIDGID")
          const request = yield* HttpServerRequest.HttpServerRequest
          yield* engine.extractToPath(id, path, request.stream, { noOverwriteDirNonDir, copyUIDGID })
          return empty(200)
        }))
    ),
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
    HttpRouter.route(
      "POST",
      "/containers/:id/rename",
      onContainer((id) => Effect.flatMap(optionalQuery("name"), (name) => Effect.as(engine.rename(id, name), empty(204))))
    ),
    HttpRouter.route(
      "POST",
      "/containers/:id/update",
      onContainer((id) => Effect.flatMap(decodeBody(UpdateBody), (body) => Effect.map(engine.update(id, body), (answer) => json(answer))))
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
            // dockerd's field order (`ContainerWaitOKBody`: Error, then StatusCode).
            Effect.map(({ StatusCode }) => ({ Error: null, StatusCode })),
            Effect.catch((error) => Effect.succeed({ Error: { Message: error.message }, StatusCode: -1 }))
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
          // Checked before attaching, as dockerd refuses bad keys before it touches the container.
          const detachKeys = yield* parsedQuery("detachKeys", parseDetachKeys)
          // Subscribed before the 101, so nothing of a run that starts once the client has it is missed.
          const session = yield* engine.attach(id, options)
          return yield* respondAttached(Effect.succeed(session), { multiplexed: !session.tty, detachKeys })
        }))
    ),
    HttpRouter.route(
      "GET",
      "/containers/:id/logs",
      onContainer((id) =>
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          const stdout = yield* booleanQuery("stdout")
          const stderr = yield* booleanQuery("stderr")
          if (!stdout && !stderr) return yield* badRequest("you must choose at least one stream")
          const follow = yield* booleanQuery("follow")
          const timestamps = yield* booleanQuery("timestamps")
          // `0` is the CLI's "not given".
          const since = yield* timeQuery("since", now, ["0"])
          const until = yield* timeQuery("until", now, ["0"])
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
    )
  ] as const
})
