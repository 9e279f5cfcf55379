/**
 * The image routes of the Docker Engine API: pull and import (`/images/create`,
 * `fromImage` or `fromSrc`), list, inspect, history, save (`/images/get`,
 * `/images/{name}/get`), load, remove, tag and commit (`/commit`, which makes
 * an image of a container), over `DockerImages`. Image names contain `/` and
 * `:`, so the routes under `/images/` take the name from a wildcard and tell
 * the operation by the path's end, as dockerd's `{name:.*}` routes do.
 */
import { Clock, Effect, Result, Stream } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { badRequest, notFound, orBadRequest } from "../DockerError.ts"
import { DockerImages, IMAGE_FILTERS, type ImportSource } from "../Images.ts"
import { ContainerConfig } from "../Model.ts"
import { commitBodyConfig } from "../images/NewImages.ts"
import { authHeaderOf, credentialsOf } from "./AuthConfig.ts"
import { danglingOnly, IMAGE_PRUNE_FILTERS } from "../images/Prune.ts"
import { parsePlatform, pruneSelector } from "./Query.ts"
import {
  booleanQuery,
  decodeOptionalBody,
  empty,
  filtersQuery,
  type Handler,
  json,
  optionalQuery,
  parsedQuery,
  pathParam,
  queryParam,
  repeatedQuery
} from "./Request.ts"
import { jsonLines } from "./Streams.ts"

/** A route under `/images/`: the name is what the wildcard matched, less `suffix`. */
const onImage = (suffix: string, f: (name: string) => Handler): Handler =>
  Effect.flatMap(pathParam("*"), (rest) =>
    rest.endsWith(suffix) && rest.length > suffix.length
      ? f(rest.slice(0, rest.length - suffix.length))
      : Effect.fail(notFound("page not found")))

/** A save's answer: the archive, streamed (a failure after the first byte cuts the connection, as dockerd's). */
const tarAnswer = (archive: Stream.Stream<Uint8Array, unknown>) =>
  HttpServerResponse.stream(archive, { contentType: "application/x-tar" })

/** Every `names` query parameter of `GET /images/get`. */
const namesQuery = Effect.map(repeatedQuery("names"), (names) => names.filter((name) => name !== ""))

/** `pause` of a commit as dockerd's `BoolValue` reads it, absent meaning true (API 1.13 and later). */
const pauseQuery = Effect.map(queryParam("pause"), (value) => {
  const text = value?.trim().toLowerCase() ?? ""
  return value === undefined || value === "" ? true : !["0", "no", "false", "none"].includes(text)
})

/** `POST /images/create?fromSrc=` (`docker import`): the body (`-`) or a URL, answered once it is stored. */
const importRoute = (fromSrc: string) =>
  Effect.gen(function*() {
    const images = yield* DockerImages
    const request = yield* HttpServerRequest.HttpServerRequest
    const source: ImportSource = fromSrc === "-" ? { _tag: "Body", body: request.stream } : { _tag: "Url", url: fromSrc }
    const lines = yield* images.importImage(source, {
      repo: yield* optionalQuery("repo"),
      tag: yield* optionalQuery("tag"),
      message: yield* optionalQuery("message"),
      changes: yield* repeatedQuery("changes"),
      platform: yield* parsedQuery("platform", parsePlatform)
    })
    return jsonLines(Stream.fromIterable(lines), "\r\n")
  })

/** The image routes, over `DockerImages`. */
export const imageRoutes = Effect.gen(function*() {
  const images = yield* DockerImages
  return [
    HttpRouter.route(
      "POST",
      "/images/create",
      Effect.gen(function*() {
        const fromSrc = yield* optionalQuery("fromSrc")
        if (fromSrc !== undefined) return yield* importRoute(fromSrc).pipe(Effect.provideService(DockerImages, images))
        const fromImage = yield* optionalQuery("fromImage")
        if (fromImage === undefined) return yield* badRequest("fromImage is required")
        const tag = yield* optionalQuery("tag")
        const platform = yield* parsedQuery("platform", parsePlatform)
        const request = yield* HttpServerRequest.HttpServerRequest
        const auth = yield* orBadRequest(Result.flatMap(authHeaderOf(request.headers["x-registry-auth"]), credentialsOf))
        return jsonLines(yield* images.pull(fromImage, tag, { platform, auth }), "\r\n")
      })
    ),
    HttpRouter.route(
      "POST",
      "/images/prune",
      Effect.gen(function*() {
        const filters = yield* filtersQuery(IMAGE_PRUNE_FILTERS)
        const onlyDangling = yield* orBadRequest(danglingOnly(filters))
        const select = yield* orBadRequest(pruneSelector(filters, yield* Clock.currentTimeMillis))
        return json(yield* images.prune(onlyDangling, select))
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
    HttpRouter.route(
      "GET",
      "/images/get",
      Effect.flatMap(Effect.flatMap(namesQuery, images.save), (archive) => Effect.succeed(tarAnswer(archive)))
    ),
    HttpRouter.route(
      "POST",
      "/images/load",
      Effect.gen(function*() {
        const quiet = yield* booleanQuery("quiet")
        const request = yield* HttpServerRequest.HttpServerRequest
        return jsonLines(yield* images.load(request.stream, { quiet }))
      })
    ),
    HttpRouter.route(
      "GET",
      "/images/*",
      Effect.flatMap(pathParam("*"), (rest) =>
        rest.endsWith("/get")
          ? onImage("/get", (name) => Effect.map(images.save([name]), tarAnswer))
          : rest.endsWith("/history")
          ? onImage("/history", (name) => Effect.map(images.history(name), (body) => json(body)))
          : onImage("/json", (name) => Effect.map(images.inspect(name), (body) => json(body))))
    ),
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
    ),
    HttpRouter.route(
      "POST",
      "/commit",
      Effect.gen(function*() {
        const body = yield* decodeOptionalBody(ContainerConfig)
        const answer = yield* images.commit((yield* queryParam("container")) ?? "", {
          repo: yield* optionalQuery("repo"),
          tag: yield* optionalQuery("tag"),
          comment: yield* optionalQuery("comment"),
          author: yield* optionalQuery("author"),
          pause: yield* pauseQuery,
          changes: yield* repeatedQuery("changes"),
          config: body === undefined ? undefined : commitBodyConfig(body)
        })
        return json(answer, 201)
      })
    )
  ] as const
})
