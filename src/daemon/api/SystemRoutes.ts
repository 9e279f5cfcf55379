/**
 * The system routes of the Docker Engine API: `/_ping` (what clients probe
 * first, with dockerd's no-cache headers and `Swarm: inactive`), `/version`,
 * `/info` from `System`, `/events` from the `EventLog`, streamed as JSON
 * lines between `since` and `until`, `/auth` (`docker login`: the
 * credentials checked against the registry, then forgotten) and `/system/df`
 * (what images and containers take, from `DockerImages` and the `Engine`).
 */
import { Clock, Effect, Result, Schema } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import { Registry, requestCredentials } from "../../services/Registry.ts"
import { badRequest, fromLibrary, orBadRequest } from "../DockerError.ts"
import { Engine } from "../Engine.ts"
import { EventLog } from "../EventLog.ts"
import { DockerImages } from "../Images.ts"
import { System } from "../System.ts"
import { authConfigOf, credentialsOf, loginHost } from "./AuthConfig.ts"
import { decodeBody, filtersQuery, type Handler, json, repeatedQuery, timeQuery } from "./Request.ts"
import { jsonLines } from "./Streams.ts"

/** The filters `GET /events` understands (the `EventLog`'s). */
const EVENT_FILTERS: ReadonlyArray<string> = ["type", "event", "container", "image", "label"]

const ping: Handler = Effect.succeed(HttpServerResponse.text("OK", {
  contentType: "text/plain; charset=utf-8",
  headers: { "Cache-Control": "no-cache, no-store, must-revalidate", Pragma: "no-cache", Swarm: "inactive" }
}))

const DISK_USAGE_TYPES = ["container", "image", "volume", "build-cache"] as const

/** `type=` of `GET /system/df` (API 1.42): the kinds asked for, all when none is; an unknown one is refused as dockerd does. */
const diskUsageTypes = (types: ReadonlyArray<string>): Result.Result<ReadonlySet<string>, string> => {
  const unknown = types.find((type) => !(DISK_USAGE_TYPES as ReadonlyArray<string>).includes(type))
  if (unknown !== undefined) return Result.fail(`unknown object type: ${unknown}`)
  return Result.succeed(new Set(types.length === 0 ? DISK_USAGE_TYPES : types))
}

/** The system and event routes, over `System` and the `EventLog`. */
export const systemRoutes = Effect.gen(function*() {
  const eventLog = yield* EventLog
  const system = yield* System
  const registry = yield* Registry
  const engine = yield* Engine
  const images = yield* DockerImages
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
      "GET",
      "/system/df",
      Effect.gen(function*() {
        const wanted = yield* orBadRequest(diskUsageTypes(yield* repeatedQuery("type")))
        const usage = yield* images.diskUsage
        const sizes = wanted.has("container") ? yield* engine.sizesRw : new Map<string, number>()
        const containers = wanted.has("container") ? yield* engine.list({ all: true }) : []
        const imageSize = new Map(usage.Images.map((image) => [image.Id, image.Size]))
        return json({
          ...(wanted.has("image") ? { LayersSize: usage.LayersSize, Images: usage.Images } : {}),
          ...(wanted.has("container")
            ? {
              Containers: containers.map((container) => {
                const rw = sizes.get(container.Id) ?? 0
                // The rootfs is the image's layers and what the container wrote (the image at its listed size).
                return { ...container, SizeRw: rw, SizeRootFs: rw + (imageSize.get(container.ImageID) ?? 0) }
              })
            }
            : {}),
          // No volumes nor build cache exist here (yet): empty, so `docker system df` prints its rows.
          ...(wanted.has("volume") ? { Volumes: [] } : {}),
          ...(wanted.has("build-cache") ? { BuildCache: [] } : {})
        })
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
