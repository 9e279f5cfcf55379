/**
 * The network routes of the Docker Engine API, as dockerd's
 * `api/server/router/network`: list (with its filters), inspect, create,
 * remove, connect, disconnect and prune, over `DockerNetworks` (the networks)
 * and the engine (the containers on them). A network's `Containers` are the
 * containers attached to it now: running ones, as dockerd's endpoints.
 */
import { Effect, Option, Result, Schema } from "effect"
import { HttpRouter } from "effect/http"
import { badRequest, DockerError, orBadRequest } from "../DockerError.ts"
import { Engine } from "../Engine.ts"
import { endpointId } from "../engine/Networking.ts"
import { NETWORK_FILTERS, networkFilter } from "../Filters.ts"
import { NetworkCreateBody } from "../network/Create.ts"
import { type NetworkMember, networkJson, type NetworkRecord } from "../network/Store.ts"
import { DockerNetworks, type LiveEndpoint } from "../Networks.ts"
import { PRUNE_FILTERS, pruneSelector } from "./Query.ts"
import { booleanQuery, decodeBody, decodeOptionalBody, empty, filtersQuery, json, pathParam } from "./Request.ts"

const EndpointConfig = Schema.optional(Schema.NullOr(Schema.Struct({
  Aliases: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
  Links: Schema.optional(Schema.NullOr(Schema.Array(Schema.String))),
  IPAMConfig: Schema.optional(Schema.NullOr(Schema.Struct({
    IPv4Address: Schema.optional(Schema.NullOr(Schema.String)),
    IPv6Address: Schema.optional(Schema.NullOr(Schema.String))
  })))
})))

/** The body of `POST /networks/{id}/connect`. */
const ConnectBody = Schema.Struct({ Container: Schema.String, EndpointConfig })

/** The body of `POST /networks/{id}/disconnect`. */
const DisconnectBody = Schema.Struct({ Container: Schema.String, Force: Schema.optional(Schema.NullOr(Schema.Boolean)) })

const notImplemented = new DockerError({ status: 501, message: "networks are not supported by this engine: it was built without them" })

/** Without `DockerNetworks` (an API over an engine built alone): every network route says so (the wildcard takes `/networks` too). */
const withoutNetworks = [
  ...(["GET", "POST", "DELETE"] as const).map((method) => HttpRouter.route(method, "/networks/*", Effect.fail(notImplemented)))
]

/** The network routes, over `DockerNetworks` and the engine. */
export const networkRoutes = Effect.gen(function*() {
  const found = yield* Effect.serviceOption(DockerNetworks)
  if (Option.isNone(found)) return withoutNetworks
  const networks = found.value
  const engine = yield* Engine

  /** Each network's attached containers, as its `Containers` shows them. */
  const members = Effect.gen(function*() {
    const endpoints = yield* networks.endpoints
    const names = yield* engine.names
    return (record: NetworkRecord): ReadonlyArray<NetworkMember> =>
      (endpoints.get(record.Id) ?? []).map(({ containerId, endpoint }: LiveEndpoint) => ({
        containerId,
        name: names.get(containerId) ?? containerId.slice(0, 12),
        endpointId: endpointId(containerId, record.Id),
        mac: endpoint.mac,
        ipv4: `${endpoint.address}/${endpoint.prefixLength}`
      }))
  })

  return [
    HttpRouter.route(
      "GET",
      "/networks",
      Effect.gen(function*() {
        const filters = yield* filtersQuery(NETWORK_FILTERS)
        const keep = yield* Result.match(networkFilter(filters), { onSuccess: Effect.succeed, onFailure: (m) => Effect.fail(badRequest(m)) })
        const membersOf = yield* members
        const list = (yield* networks.list).filter((record) =>
          keep({
            name: record.Name,
            id: record.Id,
            driver: record.Driver,
            labels: record.Labels,
            predefined: record.Predefined,
            inUse: membersOf(record).length > 0
          }))
        // As dockerd's list: no containers (only inspect shows them).
        return json(list.map((record) => networkJson(record, [])))
      })
    ),
    HttpRouter.route(
      "GET",
      "/networks/:id",
      Effect.gen(function*() {
        yield* booleanQuery("verbose")
        const record = yield* networks.find(yield* pathParam("id"))
        return json(networkJson(record, (yield* members)(record)))
      })
    ),
    HttpRouter.route(
      "POST",
      "/networks/create",
      Effect.gen(function*() {
        const body = yield* decodeBody(NetworkCreateBody)
        return json(yield* networks.create(body), 201)
      })
    ),
    HttpRouter.route(
      "DELETE",
      "/networks/:id",
      Effect.gen(function*() {
        yield* networks.remove(yield* pathParam("id"))
        return empty(204)
      })
    ),
    HttpRouter.route(
      "POST",
      "/networks/:id/connect",
      Effect.gen(function*() {
        const body = yield* decodeBody(ConnectBody)
        yield* engine.networkConnect(yield* pathParam("id"), body.Container, body.EndpointConfig ?? undefined)
        return empty(200)
      })
    ),
    HttpRouter.route(
      "POST",
      "/networks/:id/disconnect",
      Effect.gen(function*() {
        const body = yield* decodeBody(DisconnectBody)
        yield* engine.networkDisconnect(yield* pathParam("id"), body.Container)
        return empty(200)
      })
    ),
    HttpRouter.route(
      "POST",
      "/networks/prune",
      Effect.gen(function*() {
        yield* decodeOptionalBody(Schema.Unknown)
        const select = yield* orBadRequest(pruneSelector(yield* filtersQuery(PRUNE_FILTERS), Date.now()))
        const deleted = yield* networks.prune((record) => select(Date.parse(record.Created), record.Labels))
        return json({ NetworksDeleted: deleted })
      })
    )
  ]
})
