/**
 * How Docker's list filters match, for every list that takes them (containers,
 * images, events): patterns and label lists from the request.
 *
 * Patterns are Go's: a `name=` filter is an RE2 regular expression (Go's
 * `regexp`), a `reference=` filter a `path.Match` glob. Both are compiled to
 * RE2 with `re2js`, whose matching is linear in the input, so no pattern a
 * client sends can make a match take exponential time (JavaScript's own RegExp
 * backtracks: `^(a+)+$` against thirty `a`s and a `b` takes a minute).
 *
 * Label filters are moby's `MatchKVList`: every `key` or `key=value` given must
 * hold, and a key counts only if it is the labels' own (never `constructor`,
 * `__proto__` or anything else an object inherits).
 */
import { Result } from "effect"
import { RE2JS } from "re2js"

/** A compiled filter pattern: whether it matches (anywhere in) a text. */
export interface Pattern {
  readonly test: (text: string) => boolean
}

const compile = (regex: string, filter: string): Result.Result<Pattern, string> =>
  Result.try({
    try: (): Pattern => {
      const re = RE2JS.compile(regex)
      return { test: (text) => re.test(text) }
    },
    // re2js words its syntax errors as Go's regexp does ("error parsing regexp: missing closing ): `(`").
    catch: (error) => `invalid filter '${filter}': ${error instanceof Error ? error.message : String(error)}`
  })

/**
 * A `key=pattern` filter's pattern, as Go's `regexp.MatchString` reads it.
 *
 * Gotchas: dockerd skips a pattern that does not compile (it matches nothing);
 * here it is the client's error, a 400 that says why.
 */
export const regexpFilter = (key: string, pattern: string): Result.Result<Pattern, string> =>
  compile(pattern, `${key}=${pattern}`)

/** Go's `path.Match` pattern as RE2: `*` and `?` stop at `/`, `[...]` (`[^...]`) is a class, `\` quotes. */
const globToRegex = (glob: string): string | undefined => {
  let out = "^"
  let i = 0
  const quoted = (): string | undefined => {
    if (glob[i] === "\\") i++
    const c = glob[i++]
    // RE2 reads any ASCII character but a letter or digit after `\` as itself, in a class too.
    return c === undefined ? undefined : /^[\x00-\x7f]$/.test(c) && !/^[A-Za-z0-9]$/.test(c) ? `\\${c}` : c
  }
  while (i < glob.length) {
    const c = glob[i]!
    if (c === "*") {
      out += "[^/]*"
      i++
    } else if (c === "?") {
      out += "[^/]"
      i++
    } else if (c === "[") {
      i++
      let cls = "["
      if (glob[i] === "^") {
        cls += "^"
        i++
      }
      // Go's getEsc: a bare `-` or `]` cannot start a range or end one, and `[]` is no class.
      const classChar = () => glob[i] === "-" || glob[i] === "]" ? undefined : quoted()
      let ranges = 0
      while (glob[i] !== "]" || ranges === 0) {
        const low = classChar()
        if (low === undefined) return undefined
        cls += low
        if (glob[i] === "-") {
          i++
          const high = classChar()
          if (high === undefined) return undefined
          cls += `-${high}`
        }
        ranges++
      }
      i++
      out += `${cls}]`
    } else {
      const literal = quoted()
      if (literal === undefined) return undefined
      out += literal
    }
  }
  return `${out}$`
}

/** A `key=glob` filter's pattern (Go's `path.Match`, as moby's `reference=` filter), whole text only. */
export const globFilter = (key: string, glob: string): Result.Result<Pattern, string> => {
  const regex = globToRegex(glob)
  return regex === undefined
    ? Result.fail(`invalid filter '${key}=${glob}': syntax error in pattern`)
    : compile(regex, `${key}=${glob}`)
}

/**
 * moby's `MatchKVList`: whether `labels` has every `key` (any value) and every
 * `key=value` of `wanted`; true when nothing is wanted. Only own keys count.
 */
export const matchLabels = (wanted: ReadonlyArray<string> | undefined, labels: Readonly<Record<string, string>>): boolean =>
  (wanted ?? []).every((filter) => {
    const eq = filter.indexOf("=")
    const key = eq === -1 ? filter : filter.slice(0, eq)
    return Object.hasOwn(labels, key) && (eq === -1 || labels[key] === filter.slice(eq + 1))
  })

/** What a network filter looks at. */
export interface NetworkFacts {
  readonly name: string
  readonly id: string
  readonly driver: string
  readonly labels: Readonly<Record<string, string>>
  readonly predefined: boolean
  /** A container is attached to it. */
  readonly inUse: boolean
}

/** The filters of `GET /networks`, as dockerd's `daemon/network/filter.go`. */
export const NETWORK_FILTERS = ["driver", "id", "label", "name", "scope", "type", "dangling"] as const

/**
 * `GET /networks` filters as a predicate, as dockerd's: `driver` and `scope`
 * exact, `name` and `id` Go regexps (anywhere in the value), `label` moby's
 * `MatchKVList`, `type` `custom` or `builtin`, `dangling` (a Go boolean) for
 * user networks no container is attached to. Bad values are 400s with
 * dockerd's words (its `type` one is a 500 there).
 */
export const networkFilter = (
  filters: Readonly<Record<string, ReadonlyArray<string>>> | undefined
): Result.Result<(network: NetworkFacts) => boolean, string> =>
  Result.gen(function*() {
    const f = filters ?? {}
    const names = yield* Result.all((f["name"] ?? []).map((p) => regexpFilter("name", p)))
    const ids = yield* Result.all((f["id"] ?? []).map((p) => regexpFilter("id", p)))
    for (const type of f["type"] ?? []) {
      if (type !== "custom" && type !== "builtin") return yield* Result.fail(`invalid filter: 'type'='${type}'`)
    }
    const dangling = f["dangling"] ?? []
    for (const value of dangling) {
      if (!["true", "1", "false", "0"].includes(value)) {
        return yield* Result.fail(`invalid value for filter 'dangling', must be "true" (or "1"), or "false" (or "0")`)
      }
    }
    const any = (values: ReadonlyArray<string> | undefined, test: (value: string) => boolean) =>
      values === undefined || values.length === 0 || values.some(test)
    return (network: NetworkFacts) =>
      any(f["driver"], (v) => v === network.driver) &&
      any(f["scope"], (v) => v === "local") &&
      (names.length === 0 || names.some((p) => p.test(network.name))) &&
      (ids.length === 0 || ids.some((p) => p.test(network.id))) &&
      matchLabels(f["label"], network.labels) &&
      any(f["type"], (v) => (v === "builtin") === network.predefined) &&
      any(dangling, (v) => (v === "true" || v === "1") === (!network.predefined && !network.inUse))
  })
