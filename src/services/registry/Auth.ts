/**
 * How a registry is authenticated with: its `WWW-Authenticate` challenge
 * (Basic, or Bearer with a token service), the key a pull token is cached
 * under, Basic credentials from the host's options, and the credentials one
 * request brings (`RegistryAuth`: a client's `X-Registry-Auth`, `docker login`).
 * The token fetching itself is the registry client's (it needs its HTTP client
 * and errors).
 *
 * A request's credentials are one user's: the tokens fetched with them are kept
 * in their own object, which lives as long as the request, never in the shared
 * token cache, so one user's token never serves another's request and nothing
 * of them outlives it.
 */
import { Context, Redacted } from "effect"
import type { Reference } from "../../domain/Reference.ts"
import { compositeKey } from "../../internal/Key.ts"
import type { RegistryHostOptions } from "../Registry.ts"

/** A parsed `WWW-Authenticate` challenge. */
export interface Challenge {
  readonly scheme: "basic" | "bearer"
  readonly realm: string
  readonly service: string | undefined
}

/** The scope a pull asks a token for. */
export const pullScope = (reference: Reference) => `repository:${reference.path}:pull`

/** The token cache's key: a pull token is per registry, realm, service and repository. */
export const tokenKey = (reference: Reference, challenge: Challenge) =>
  compositeKey(reference.domain, challenge.realm, challenge.service ?? "", pullScope(reference))

/** Parses `Bearer realm="…",service="…",scope="…"` (quoted values may hold commas and escapes). */
export const parseChallenge = (header: string | undefined): Challenge | undefined => {
  if (header === undefined) return undefined
  const match = /^\s*(\w+)\s*(.*)$/s.exec(header)
  if (match === null) return undefined
  const scheme = match[1]!.toLowerCase()
  if (scheme !== "basic" && scheme !== "bearer") return undefined
  const params = new Map<string, string>()
  const pair = /\s*([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?/gy
  const rest = match[2]!
  let found: RegExpExecArray | null
  while ((found = pair.exec(rest)) !== null && found[0] !== "") {
    params.set(found[1]!.toLowerCase(), found[2] !== undefined ? found[2].replace(/\\(.)/g, "$1") : found[3]!)
  }
  const realm = params.get("realm")
  if (scheme === "bearer" && realm === undefined) return undefined
  return { scheme, realm: realm ?? "", service: params.get("service") }
}

/** The credentials one request brings, with the bearer tokens fetched with them (for that request only). */
export interface RequestCredentials {
  readonly username: string
  readonly password: Redacted.Redacted<string>
  /** Tells requests with different credentials apart in keys of shared work (a number, never the secret). */
  readonly id: number
  /** Tokens fetched with these credentials, by `tokenKey`. */
  readonly tokens: Map<string, string>
}

let lastCredentialsId = 0

/** A request's credentials, with an empty token memo of their own. */
export const requestCredentials = (username: string, password: string | Redacted.Redacted<string>): RequestCredentials => ({
  username,
  password: Redacted.isRedacted(password) ? password : Redacted.make(password),
  id: ++lastCredentialsId,
  tokens: new Map()
})

/** The credentials of the request in progress, which win over the host's options for that request; none by default. */
export const RegistryAuth = Context.Reference<RequestCredentials | undefined>("effect-containerd/RegistryAuth", {
  defaultValue: () => undefined
})

/** The `Authorization` value for Basic credentials (a host's or a request's), if there are any. */
export const basicAuth = (host: { readonly username?: string | undefined; readonly password?: RegistryHostOptions["password"] }): string | undefined => {
  const { username, password } = host
  if (username === undefined) return undefined
  const secret = password === undefined ? "" : Redacted.isRedacted(password) ? Redacted.value(password) : password
  return `Basic ${Buffer.from(`${username}:${secret}`).toString("base64")}`
}
