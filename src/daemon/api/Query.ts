/**
 * The query parameters of the Docker Engine API, parsed as dockerd parses them:
 * pure functions from the text the client sent to a value or the 400 message
 * dockerd would give. They are apart from the routes so each can be tested
 * against dockerd's rules (Go's `strconv`, `timetypes.GetTimestamp`, the
 * version middleware) without a server.
 */
import { Result, Schema } from "effect"
import type { Platform } from "../../domain/Image.ts"
import type { WaitCondition } from "../Engine.ts"
import { matchLabels } from "../Filters.ts"
import { goBool } from "../engine/HostConfig.ts"
import { API_VERSION, MIN_API_VERSION } from "../System.ts"

/** Docker's filters: each key matches if any of its values does. */
export type Filters = Readonly<Record<string, ReadonlyArray<string>>>

/** A boolean query parameter: Go's `strconv.ParseBool`, and absent or empty is false. */
export const parseBoolean = (name: string, value: string | undefined): Result.Result<boolean, string> => {
  const parsed = value === undefined || value === "" ? false : goBool(value)
  return parsed === undefined
    ? Result.fail(`invalid value for ${name}: ${JSON.stringify(value)} is not a boolean (use 1, true, 0 or false)`)
    : Result.succeed(parsed)
}

/** An integer query parameter (Go's `strconv.Atoi`); absent or empty is `undefined`. */
export const parseInteger = (name: string, value: string | undefined): Result.Result<number | undefined, string> =>
  value === undefined || value === ""
    ? Result.succeed(undefined)
    : /^[+-]?\d+$/.test(value) && Number.isSafeInteger(Number(value))
    ? Result.succeed(Number(value))
    : Result.fail(`invalid value for ${name}: ${JSON.stringify(value)} is not an integer`)

const FiltersJson = Schema.fromJsonString(
  Schema.Record(Schema.String, Schema.Union([Schema.Array(Schema.String), Schema.Record(Schema.String, Schema.Boolean)]))
)
const decodeFilters = Schema.decodeUnknownResult(FiltersJson)

/**
 * The `filters` query parameter: JSON mapping each key to its values, or (the
 * legacy form, API < 1.22) to an object whose true keys are the values. Keys
 * outside `allowed` are refused as dockerd refuses them ("invalid filter 'x'").
 */
export const parseFilters = (
  value: string | undefined,
  allowed: ReadonlyArray<string>
): Result.Result<Filters | undefined, string> => {
  if (value === undefined || value === "") return Result.succeed(undefined)
  return Result.match(decodeFilters(value), {
    onFailure: () =>
      Result.fail(`invalid filters ${JSON.stringify(value)}: expected JSON such as {"status":["running"]}`),
    onSuccess: (decoded) => {
      const unknown = Object.keys(decoded).find((key) => !allowed.includes(key))
      if (unknown !== undefined) return Result.fail(`invalid filter '${unknown}'`)
      return Result.succeed(Object.fromEntries(
        Object.entries(decoded).map(([key, values]) => [
          key,
          Array.isArray(values) ? values : Object.keys(values).filter((v) => (values as Record<string, boolean>)[v] === true)
        ])
      ))
    }
  })
}

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  "μs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000
}
const DURATION = /^[+-]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$/
const DURATION_PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g
const UNIX = /^(\d+)(?:\.(\d{1,9}))?$/
const DATE = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(Z|[+-]\d{2}:\d{2})?$/

/**
 * A time of `GET /events?since=&until=` in ms since the epoch, as dockerd's
 * `timetypes.GetTimestamp`: unix seconds with an optional fraction
 * (`1700000000.5`), an RFC 3339 date or time (without a zone: local time), or a
 * Go duration before `now` (`10m`, `1h30m`).
 */
export const parseTimestamp = (value: string, now: number): Result.Result<number, string> => {
  const unix = UNIX.exec(value)
  if (unix !== null) return Result.succeed(Number(unix[1]) * 1000 + Number(`0.${unix[2] ?? "0"}`) * 1000)
  if (DURATION.test(value)) {
    let millis = 0
    for (const [, amount, unit] of value.matchAll(DURATION_PART)) millis += Number(amount) * DURATION_UNITS[unit!]!
    return Result.succeed(now - (value.startsWith("-") ? -millis : millis))
  }
  const date = DATE.exec(value)
  if (date !== null) {
    const [, y, mo, d, h = "0", mi = "0", s = "0", fraction = "0", zone] = date
    const fields = [Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), Number(`0.${fraction}`) * 1000] as const
    if (zone === undefined) return Result.succeed(new Date(...fields).getTime())
    const offset = zone === "Z" ? 0 : (zone.startsWith("-") ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(4, 6)))
    return Result.succeed(Date.UTC(...fields) - offset * 60_000)
  }
  return Result.fail(`failed to parse value as time or duration: ${JSON.stringify(value)}`)
}

/** The filters every prune takes (containers, images, networks). */
export const PRUNE_FILTERS: ReadonlyArray<string> = ["until", "label", "label!"]

/**
 * What a prune may take, as moby's prune filters select: created before `until`
 * (one at most: "more than one until filter specified"), with the `label`s, and
 * not with all the `label!`s (moby's `matchLabels`).
 */
export const pruneSelector = (
  filters: Filters | undefined,
  now: number
): Result.Result<(created: number, labels: Readonly<Record<string, string>>) => boolean, string> => {
  const untils = filters?.["until"] ?? []
  if (untils.length > 1) return Result.fail("more than one until filter specified")
  const until = untils.length === 0 ? Result.succeed(undefined) : parseTimestamp(untils[0]!, now)
  return Result.map(until, (before) => (created, labels) =>
    (before === undefined || created < before) &&
    matchLabels(filters?.["label"], labels) &&
    (filters?.["label!"] === undefined || !matchLabels(filters["label!"], labels)))
}

/** Compares dotted versions numerically (`1.9` < `1.24`), missing parts counting as 0. */
export const compareVersions = (a: string, b: string): number => {
  const left = a.split(".").map(Number)
  const right = b.split(".").map(Number)
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const difference = (left[i] ?? 0) - (right[i] ?? 0)
    if (difference !== 0) return Math.sign(difference)
  }
  return 0
}

const VERSION_PREFIX = /^\/v([0-9.]+)(?=\/|\?|$)/

/** The API version a path asks for with its prefix (`/v1.41/...`); the newest without one, as dockerd. */
export const apiVersionOf = (path: string): string => VERSION_PREFIX.exec(path)?.[1] ?? API_VERSION

/** The URL without its API version prefix, or why that version is refused (dockerd's version middleware). */
export const stripApiVersion = (url: string): Result.Result<string, string> => {
  const match = VERSION_PREFIX.exec(url)
  if (match === null) return Result.succeed(url)
  const version = match[1]!
  if (compareVersions(version, API_VERSION) > 0) {
    return Result.fail(`client version ${version} is too new. Maximum supported API version is ${API_VERSION}`)
  }
  if (compareVersions(version, MIN_API_VERSION) < 0) {
    return Result.fail(
      `client version ${version} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`
    )
  }
  const rest = url.slice(match[0].length)
  return Result.succeed(rest.startsWith("/") ? rest : `/${rest}`)
}

// A Map: the name comes from the request, and `constructor` must not find Object's.
const ARCHITECTURE_ALIASES: ReadonlyMap<string, string> = new Map([["x86_64", "amd64"], ["x86-64", "amd64"], ["aarch64", "arm64"]])

/** `?platform=os/arch[/variant]` of a pull; absent or empty is the host's. */
export const parsePlatform = (value: string | undefined): Result.Result<Platform | undefined, string> => {
  if (value === undefined || value === "") return Result.succeed(undefined)
  const [os, architecture, variant, ...rest] = value.toLowerCase().split("/")
  if (os === undefined || os === "" || architecture === undefined || architecture === "" || rest.length > 0) {
    return Result.fail(`invalid platform ${JSON.stringify(value)}: expected os/arch[/variant]`)
  }
  const arch = ARCHITECTURE_ALIASES.get(architecture) ?? architecture
  return Result.succeed(variant === undefined || variant === "" ? { os, architecture: arch } : { os, architecture: arch, variant })
}

const WAIT_CONDITIONS: ReadonlyArray<WaitCondition> = ["not-running", "next-exit", "removed"]

/** `?condition=` of a wait; absent or empty is `not-running`. */
export const parseWaitCondition = (value: string | undefined): Result.Result<WaitCondition, string> => {
  if (value === undefined || value === "") return Result.succeed("not-running")
  const condition = WAIT_CONDITIONS.find((c) => c === value)
  return condition === undefined
    ? Result.fail(`invalid condition: ${JSON.stringify(value)} (use ${WAIT_CONDITIONS.join(", ")})`)
    : Result.succeed(condition)
}
