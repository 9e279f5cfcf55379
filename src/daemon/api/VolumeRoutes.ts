/**
 * The volume routes of the Docker Engine API, as dockerd's
 * `api/server/router/volume`: create, list (filters name, label, dangling,
 * driver), inspect, remove and prune, over `DockerVolumes`. A volume any
 * container references (running or not, from its create request) is in use:
 * not dangling, never pruned, and its removal is a 409 even with `force`, as dockerd.
 */
import { Effect, Option, Result, Schema } from "effect"
import { HttpRouter } from "effect/http"
import { badRequest, conflict, DockerError } from "../DockerError.ts"
import { Engine } from "../Engine.ts"
import { matchLabels, regexpFilter } from "../Filters.ts"
import { DockerVolumes, volumeJson } from "../Volumes.ts"
import { booleanQuery, decodeOptionalBody, empty, filtersQuery, json, pathParam } from "./Request.ts"

const StringMap = Schema.optional(Schema.NullOr(Schema.Record(Schema.String, Schema.String)))

/** The body of `POST /volumes/create`. */
const CreateBody = Schema.Struct({
  Name: Schema.optional(Schema.NullOr(Schema.String)),
  Driver: Schema.optional(Schema.NullOr(Schema.String)),
  DriverOpts: StringMap,
  Labels: StringMap
})

const LIST_FILTERS = ["name", "label", "dangling", "driver"]
const PRUNE_FILTERS = ["label", "label!"]

const notImplemented = new DockerError({ status: 501, message: "volumes are not supported by this API: it was built without them" })

/** Without `DockerVolumes` (an API over fakes): every volume route says so (the wildcard takes `/volumes` too). */
const withoutVolumes = (["GET", "POST", "DELETE"] as const).map((method) => HttpRouter.route(method, "/volumes/*", Effect.fail(notImplemented)))

/** The volume routes. */
export const volumeRoutes = Effect.gen(function*() {
  const found = yield* Effect.serviceOption(DockerVolumes)
  if (Option.isNone(found)) return withoutVolumes
  const volumes = found.value
  const engine = yield* Engine
  return [
    HttpRouter.route(
      "GET",
      "/volumes",
      Effect.gen(function*() {
        const filters = (yield* filtersQuery(LIST_FILTERS)) ?? {}
        const names = yield* Effect.forEach(filters["name"] ?? [], (pattern) =>
          Result.match(regexpFilter("name", pattern), { onSuccess: Effect.succeed, onFailure: (m) => Effect.fail(badRequest(m)) }))
        const dangling = yield* Effect.forEach(filters["dangling"] ?? [], (value) =>
          ["true", "1"].includes(value) ? Effect.succeed(true) : ["false", "0"].includes(value) ? Effect.succeed(false)
          : Effect.fail(badRequest(`invalid filter 'dangling=${value}'`)))
        const drivers = filters["driver"] ?? []
        const users = yield* engine.volumeUsers
        const list = (yield* volumes.list).filter((record) =>
          (names.length === 0 || names.some((p) => p.test(record.Name))) &&
          matchLabels(filters["label"], record.Labels) &&
          dangling.every((wanted) => wanted === !users.has(record.Name)) &&
          (drivers.length === 0 || drivers.includes(record.Driver)))
        return json({ Volumes: list.map((record) => volumeJson(volumes.root, record)), Warnings: null })
      })
    ),
    HttpRouter.route(
      "POST",
      "/volumes/create",
      Effect.gen(function*() {
        const body = (yield* decodeOptionalBody(CreateBody)) ?? {}
        const record = yield* volumes.create({
          name: body.Name ?? undefined,
          driver: body.Driver ?? undefined,
          labels: body.Labels ?? undefined,
          options: body.DriverOpts ?? undefined
        })
        return json(volumeJson(volumes.root, record), 201)
      })
    ),
    HttpRouter.route(
      "POST",
      "/volumes/prune",
      Effect.gen(function*() {
        const filters = (yield* filtersQuery(PRUNE_FILTERS)) ?? {}
        const users = yield* engine.volumeUsers
        // dockerd 20.10: every unused local volume, anonymous or named.
        return json(yield* volumes.prune((record) =>
          !users.has(record.Name) &&
          matchLabels(filters["label"], record.Labels) &&
          (filters["label!"] ?? []).every((label) => !matchLabels([label], record.Labels))))
      })
    ),
    HttpRouter.route(
      "GET",
      "/volumes/:name",
      Effect.gen(function*() {
        return json(volumeJson(volumes.root, yield* volumes.get(yield* pathParam("name"))))
      })
    ),
    HttpRouter.route(
      "DELETE",
      "/volumes/:name",
      Effect.gen(function*() {
        const force = yield* booleanQuery("force")
        const name = yield* pathParam("name")
        const users = (yield* engine.volumeUsers).get(name)
        if (users !== undefined) return yield* Effect.fail(conflict(`remove ${name}: volume is in use - [${users.join(", ")}]`))
        yield* volumes.remove(name, force)
        return empty(204)
      })
    )
  ]
})
