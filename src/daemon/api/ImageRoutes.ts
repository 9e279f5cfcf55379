/**
 * The image routes of the Docker Engine API: pull (`/images/create`), list,
 * inspect, history, save (`/images/get`, `/images/{name}/get`), load, remove
 * and tag, over `DockerImages`. Image names contain `/` and
 * `:`, so the routes under `/images/` take the name from a wildcard and tell
 * the operation by the path's end, as dockerd's `{name:.*}` routes do.
 */
import { Effect, Stream } from "effect"
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import { badRequest, DockerError, notFound } from "../DockerError.ts"
import { DockerImages, IMAGE_FILTERS } from "../Images.ts"
import { parsePlatform } from "./Query.ts"
import { booleanQuery, empty, filtersQuery, type Handler, json, optionalQuery, parsedQuery, pathParam } from "./Request.ts"
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
const namesQuery = Effect.map(HttpServerRequest.ParsedSearchParams, (params) => {
  const value = params["names"]
  return (typeof value === "string" ? [value] : value ?? []).filter((name) => name !== "")
})

/** The image routes, over `DockerImages`. */
export const imageRoutes = Effect.gen(function*() {
  const images = yield* DockerImages
  return [
    HttpRouter.route(
      "POST",
      "/images/create",
      Effect.gen(function*() {
        if ((yield* optionalQuery("fromSrc")) !== undefined) {
          return yield* new DockerError({ status: 501, message: "importing images (fromSrc) is not supported by effect-containerd" })
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
    )
  ] as const
})
