/**
 * Where a container's log lives and how it is configured, shared by the engine
 * (which writes the options at create and reads the log) and the shim logger
 * (which writes the log): `<log root>/<id>/<id>-json.log`, as dockerd lays out
 * `containers/<id>/`, with the options beside it. Node's modules only: the
 * shim logger loads this.
 */
import * as path from "node:path"

/** A container's log options (`--log-opt max-size`, `max-file`), in bytes and files. */
export interface LogConfig {
  readonly maxSize?: number
  readonly maxFiles?: number
}

/** The options a log options file holds; anything malformed is left out (the defaults apply). */
export const parseLogConfig = (text: string): LogConfig => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return {}
  }
  const field = (name: string) => {
    const n = typeof value === "object" && value !== null ? (value as Record<string, unknown>)[name] : undefined
    return typeof n === "number" && Number.isInteger(n) && n > 0 ? n : undefined
  }
  const maxSize = field("maxSize")
  const maxFiles = field("maxFiles")
  return { ...(maxSize === undefined ? {} : { maxSize }), ...(maxFiles === undefined ? {} : { maxFiles }) }
}

/** The log options file of a container. */
export const logConfigPath = (root: string, id: string) => path.join(root, id, "log-config.json")

/** The json-file log of a container. */
export const logPath = (root: string, id: string) => path.join(root, id, `${id}-json.log`)
