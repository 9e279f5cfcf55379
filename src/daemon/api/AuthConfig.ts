/**
 * Docker's `AuthConfig` as clients send it — the `X-Registry-Auth` header of a
 * pull (base64url JSON) and the body of `POST /auth` — turned into the
 * library's per-request credentials (`Registry.requestCredentials`), which
 * live as long as the request: the daemon never stores them, and never logs
 * them (only the method and URL of a request are logged, and neither carries
 * them).
 *
 * As Go's `encoding/json` decodes `types.AuthConfig`, keys match whatever their
 * case. `auth` (base64 `user:password`, what a CLI config file holds) stands in
 * for a missing username and password. Identity and registry tokens (OAuth
 * refresh tokens, pre-fetched bearer tokens) are not honoured, so a config
 * that carries one is refused with a 400 rather than pulled with anonymously.
 */
import { Result } from "effect"
import { requestCredentials, type RequestCredentials } from "../../services/Registry.ts"

/** The fields of Docker's `AuthConfig` this daemon reads (all strings, possibly empty). */
export interface AuthConfig {
  readonly username: string
  readonly password: string
  readonly auth: string
  readonly serveraddress: string
  readonly identitytoken: string
  readonly registrytoken: string
}

const FIELDS = ["username", "password", "auth", "serveraddress", "identitytoken", "registrytoken"] as const

/** An `AuthConfig` from decoded JSON: an object whose string fields are read by case-insensitive name. */
export const authConfigOf = (json: unknown): Result.Result<AuthConfig, string> => {
  if (typeof json !== "object" || json === null || Array.isArray(json)) return Result.fail("the auth config is not a JSON object")
  const fields: Record<string, string> = {}
  for (const [key, value] of Object.entries(json)) {
    const field = key.toLowerCase()
    if (!(FIELDS as ReadonlyArray<string>).includes(field) || value === null || value === undefined) continue
    if (typeof value !== "string") return Result.fail(`the auth config's ${key} is not a string`)
    fields[field] = value
  }
  const get = (field: typeof FIELDS[number]) => fields[field] ?? ""
  return Result.succeed({
    username: get("username"),
    password: get("password"),
    auth: get("auth"),
    serveraddress: get("serveraddress"),
    identitytoken: get("identitytoken"),
    registrytoken: get("registrytoken")
  })
}

/** Base64 in either alphabet, padded or not (clients differ), as bytes; undefined when it is not base64. */
const fromBase64 = (text: string): Buffer | undefined =>
  /^[A-Za-z0-9+/_-]*={0,2}$/.test(text) ? Buffer.from(text.replace(/-/g, "+").replace(/_/g, "/"), "base64") : undefined

/** The `X-Registry-Auth` header's config; none when it is absent or empty (an anonymous pull). */
export const authHeaderOf = (header: string | undefined): Result.Result<AuthConfig | undefined, string> => {
  if (header === undefined || header.trim() === "") return Result.succeed(undefined)
  const bytes = fromBase64(header.trim())
  if (bytes === undefined) return Result.fail("invalid X-Registry-Auth header: not base64")
  const parsed = Result.try({ try: (): unknown => JSON.parse(bytes.toString("utf8")), catch: () => "invalid X-Registry-Auth header: not JSON" })
  return Result.flatMap(parsed, (json) => Result.mapError(authConfigOf(json), (problem) => `invalid X-Registry-Auth header: ${problem}`))
}

/** A config's credentials; none when it names no user (anonymous). Tokens are refused: they are not honoured. */
export const credentialsOf = (config: AuthConfig | undefined): Result.Result<RequestCredentials | undefined, string> => {
  if (config === undefined) return Result.succeed(undefined)
  if (config.identitytoken !== "" || config.registrytoken !== "") {
    return Result.fail("identity and registry tokens are not supported by effect-containerd: use a username and password")
  }
  let { username, password } = config
  if (username === "" && password === "" && config.auth !== "") {
    const decoded = fromBase64(config.auth)?.toString("utf8")
    const colon = decoded?.indexOf(":") ?? -1
    if (decoded === undefined || colon < 0) return Result.fail("invalid auth configuration: auth is not base64 user:password")
    username = decoded.slice(0, colon)
    password = decoded.slice(colon + 1)
  }
  return username === "" && password === "" ? Result.succeed(undefined) : Result.succeed(requestCredentials(username, password))
}

/** Docker Hub's names, which a login to the default registry sends. */
const DOCKER_HUB = new Set(["", "docker.io", "index.docker.io", "registry-1.docker.io"])

/** The registry host a login names (moby's `ConvertToHostname`: no scheme, nothing after the host); Docker Hub as `docker.io`. */
export const loginHost = (serverAddress: string): string => {
  const host = serverAddress.trim().replace(/^https?:\/\//, "").split("/")[0]!
  return DOCKER_HUB.has(host) ? "docker.io" : host
}
