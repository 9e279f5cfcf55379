/**
 * How a registry is authenticated with: its `WWW-Authenticate` challenge
 * (Basic, or Bearer with a token service), the key a pull token is cached
 * under, and Basic credentials from the host's options. The token fetching
 * itself is the registry client's (it needs its HTTP client and errors).
 */
import { Redacted } from "effect"
import type { Reference } from "../../domain/Reference.ts"
import { compositeKey } from "../../internal/Key.ts"
import type { RegistryHostOptions } from "../Registry.ts"

/** A parsed `WWW-Authenticate` challenge. */
export interface Challenge {
  readonly scheme: "basic" | "bearer"
  readonly realm: string
  readonly service: string | undefined
}

/** The token cache's key: a pull token is per registry, realm, service and repository. */
export const tokenKey = (reference: Reference, challenge: Challenge) =>
  compositeKey(reference.domain, challenge.realm, challenge.service ?? "", `repository:${reference.path}:pull`)

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

/** The `Authorization` value for a host's Basic credentials, if it has any. */
export const basicAuth = (host: RegistryHostOptions): string | undefined => {
  const { username, password } = host
  if (username === undefined) return undefined
  const secret = password === undefined ? "" : Redacted.isRedacted(password) ? Redacted.value(password) : password
  return `Basic ${Buffer.from(`${username}:${secret}`).toString("base64")}`
}
