/**
 * What a CNI plugin prints (CNI spec 1.0.0, "Result Types"): on success a
 * result with the interfaces it made, their addresses, routes and DNS; on
 * failure an error object `{code, msg, details}` and a non-zero exit. The
 * schemas keep only the fields we read; the raw JSON is what is passed on as
 * the next plugin's `prevResult`, so nothing a plugin added is lost.
 */
import { Schema } from "effect"

/** An interface a plugin created or configured; `sandbox` is the netns path for those inside the container. */
export const CniInterface = Schema.Struct({
  name: Schema.String,
  mac: Schema.optional(Schema.String),
  mtu: Schema.optional(Schema.Number),
  sandbox: Schema.optional(Schema.String)
})

/** An address given to an interface (`interface` indexes `interfaces`). */
export const CniIp = Schema.Struct({
  address: Schema.String,
  gateway: Schema.optional(Schema.String),
  interface: Schema.optional(Schema.Int)
})

/** A route set in the container. */
export const CniRoute = Schema.Struct({
  dst: Schema.String,
  gw: Schema.optional(Schema.String)
})

/** DNS settings a plugin suggests (bridge leaves it empty). */
export const CniDns = Schema.Struct({
  nameservers: Schema.optional(Schema.Array(Schema.String)),
  domain: Schema.optional(Schema.String),
  search: Schema.optional(Schema.Array(Schema.String)),
  options: Schema.optional(Schema.Array(Schema.String))
})

/** A plugin's ADD result, CNI 1.0.0. */
export const CniResult = Schema.Struct({
  cniVersion: Schema.String,
  interfaces: Schema.optional(Schema.Array(CniInterface)),
  ips: Schema.optional(Schema.Array(CniIp)),
  routes: Schema.optional(Schema.Array(CniRoute)),
  dns: Schema.optional(CniDns)
})

/** The decoded type of a result. */
export type CniResult = typeof CniResult.Type

/** A plugin's answer to VERSION. */
export const CniVersionResult = Schema.Struct({
  cniVersion: Schema.String,
  supportedVersions: Schema.Array(Schema.String)
})

/** The error object a failing plugin prints on stdout. */
export const CniErrorObject = Schema.Struct({
  code: Schema.Int,
  msg: Schema.String,
  details: Schema.optional(Schema.String)
})

/** CNI's well-known error codes (spec "Error"); 100 and up are the plugin's own. */
export const CniErrorCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodingFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11
} as const

/** A plugin exec that failed: the plugin's error object, or ours (code -1) when it could not be run or read. */
export class CniError extends Schema.TaggedError<CniError>()("CniError", {
  /** The plugin's type, e.g. `bridge`. */
  plugin: Schema.String,
  /** ADD, DEL, CHECK or VERSION. */
  command: Schema.String,
  /** The CNI error code; -1 when the plugin gave none (not found, killed, unreadable output, deadline). */
  code: Schema.Int,
  msg: Schema.String,
  details: Schema.optional(Schema.String)
}) {
  override get message(): string {
    const details = this.details ? `: ${this.details}` : ""
    return `CNI plugin ${this.plugin} ${this.command} failed${this.code >= 0 ? ` (code ${this.code})` : ""}: ${this.msg}${details}`
  }

  /** Whether the plugin asked to be called again later (code 11). */
  get isTryAgain(): boolean {
    return this.code === CniErrorCode.TryAgainLater
  }
}
