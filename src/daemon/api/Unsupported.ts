/**
 * The routes of the Docker Engine API that effect-containerd does not serve,
 * in one table, so a client hears what is missing instead of dockerd's 404
 * "page not found" (which the docker CLI reports as if the daemon were too old).
 *
 * Most answer 501 "<what> is not supported by effect-containerd". Swarm's
 * answer as dockerd does on a node that is not in a swarm (moby's
 * daemon/cluster): 503 "This node is not a swarm manager ..." from
 * `errNoManager`, and for `/swarm/leave` `errNoSwarm`, "This node is not part of
 * a swarm". `POST /swarm/init` and `/swarm/join`, which dockerd would carry
 * out, are 501: no swarm can be made here.
 *
 * The reference is Docker Engine API v1.41's route list, with what later
 * versions up to the advertised one added.
 */

/** The status and message a refused route answers with. */
export interface Refusal {
  readonly status: 501 | 503
  readonly message: string
}

/** One refused route: a method (`*` for any) and a path pattern (`{id}` one segment, `{name}` any, `/**` anything under). */
export interface UnsupportedRoute {
  readonly method: "*" | "GET" | "HEAD" | "POST" | "PUT" | "DELETE"
  readonly path: string
  readonly refusal: Refusal
}

const notSupported = (what: string): Refusal => ({ status: 501, message: `${what} not supported by effect-containerd` })
/** dockerd's `errNoManager` on a node outside any swarm. */
const NOT_A_MANAGER: Refusal = {
  status: 503,
  message: "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."
}
/** dockerd's `errNoSwarm`, for leaving a swarm never joined. */
const NOT_IN_A_SWARM: Refusal = { status: 503, message: "This node is not part of a swarm" }

const route = (method: UnsupportedRoute["method"], path: string, refusal: Refusal): UnsupportedRoute => ({ method, path, refusal })

/** The rest of dockerd's swarm routes (moby's api/server/router/swarm), exactly: any other path under them is a 404 there too. */
const SWARM_ROUTES: ReadonlyArray<readonly [UnsupportedRoute["method"], string]> = [
  ["GET", "/swarm"],
  ["GET", "/swarm/unlockkey"],
  ["POST", "/swarm/update"],
  ["POST", "/swarm/unlock"],
  ["GET", "/services"],
  ["GET", "/services/{id}"],
  ["POST", "/services/create"],
  ["POST", "/services/{id}/update"],
  ["DELETE", "/services/{id}"],
  ["GET", "/services/{id}/logs"],
  ["GET", "/nodes"],
  ["GET", "/nodes/{id}"],
  ["DELETE", "/nodes/{id}"],
  ["POST", "/nodes/{id}/update"],
  ["GET", "/tasks"],
  ["GET", "/tasks/{id}"],
  ["GET", "/tasks/{id}/logs"],
  ["GET", "/secrets"],
  ["POST", "/secrets/create"],
  ["DELETE", "/secrets/{id}"],
  ["GET", "/secrets/{id}"],
  ["POST", "/secrets/{id}/update"],
  ["GET", "/configs"],
  ["POST", "/configs/create"],
  ["DELETE", "/configs/{id}"],
  ["GET", "/configs/{id}"],
  ["POST", "/configs/{id}/update"]
]

/** Every route refused, with its answer; the first that matches applies. */
export const UNSUPPORTED_ROUTES: ReadonlyArray<UnsupportedRoute> = [
  route("GET", "/containers/{id}/changes", notSupported("container filesystem changes are")),
  route("GET", "/containers/{id}/export", notSupported("exporting containers is")),
  route("GET", "/containers/{id}/attach/ws", notSupported("attaching over a websocket is")),
  route("POST", "/images/{name}/push", notSupported("pushing images is")),
  route("GET", "/images/search", notSupported("searching registries is")),
  route("POST", "/build", notSupported("building images is")),
  route("POST", "/build/prune", notSupported("pruning the build cache is")),
  route("POST", "/build/cancel", notSupported("building images is")),
  route("POST", "/session", notSupported("build sessions are")),
  // BuildKit's gRPC endpoint (buildx), hijacked with `Upgrade: h2c` as /session is.
  route("POST", "/grpc", notSupported("build sessions are")),
  route("GET", "/distribution/{name}/json", notSupported("distribution inspection is")),
  route("*", "/plugins/**", notSupported("plugins are")),
  route("POST", "/swarm/init", notSupported("swarm mode is")),
  route("POST", "/swarm/join", notSupported("swarm mode is")),
  route("POST", "/swarm/leave", NOT_IN_A_SWARM),
  ...SWARM_ROUTES.map(([method, path]) => route(method, path, NOT_A_MANAGER))
]

/** A path pattern as a regular expression; `/**` also matches the bare prefix (`/volumes` as `/volumes/x`). */
const compile = (path: string): RegExp =>
  new RegExp(
    `^${
      path.replace(/[.+?^$()|[\]\\]/g, "\\$&")
        .replace("/**", "(?:/.*)?")
        .replace("{id}", "[^/]+")
        .replace("{name}", ".+")
    }/?$`
  )

const COMPILED = UNSUPPORTED_ROUTES.map((entry) => ({ ...entry, pattern: compile(entry.path) }))

/** Whether `entry` is for `method`; a GET route answers HEAD too, as dockerd's router does. */
const forMethod = (entry: UnsupportedRoute, method: string) =>
  entry.method === "*" || entry.method === method || (entry.method === "GET" && method === "HEAD")

/** The refusal for a request (its path without the version prefix and query), or `undefined` if the route is not refused. */
export const refusalOf = (method: string, path: string): Refusal | undefined =>
  COMPILED.find((entry) => forMethod(entry, method) && entry.pattern.test(path))?.refusal
