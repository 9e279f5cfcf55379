/**
 * JSON with bigints, for the answers whose counters pass 2^53 (`stats`: an
 * unlimited cgroup's memory limit is 2^63-4096, CPU time in nanoseconds):
 * `JSON.stringify` throws on a bigint, and a number would round it. Written as
 * Go's encoder writes: fields in their order, `undefined` ones left out (Go's
 * `omitempty` is the caller's: it leaves the field undefined).
 */

/** `value` as JSON, a bigint as its digits. */
export const stringifyJson = (value: unknown): string => {
  if (typeof value === "bigint") return value.toString()
  if (Array.isArray(value)) return `[${value.map((item) => item === undefined ? "null" : stringifyJson(item)).join(",")}]`
  if (value !== null && typeof value === "object") {
    const fields = Object.entries(value)
      .filter(([, field]) => field !== undefined)
      .map(([key, field]) => `${JSON.stringify(key)}:${stringifyJson(field)}`)
    return `{${fields.join(",")}}`
  }
  return JSON.stringify(value) ?? "null"
}
