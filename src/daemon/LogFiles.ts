/**
 * Where a container's log lives and how it is configured, shared by the engine
 * (which writes the options at create and reads the log) and the shim logger
 * (logger.c, which writes the log): `<log root>/<id>/<id>-json.log`, as dockerd
 * lays out `containers/<id>/`, with the options (JSON) beside it.
 */
import * as path from "node:path"

/** A container's log options (`--log-opt max-size`, `max-file`), in bytes and files. */
export interface LogConfig {
  readonly maxSize?: number
  readonly maxFiles?: number
}

/** A container's directory: its log, the rotated ones, and its log options. */
export const containerDir = (root: string, id: string) => path.join(root, id)

/** The log options file of a container. */
export const logConfigPath = (root: string, id: string) => path.join(containerDir(root, id), "log-config.json")

/** The json-file log of a container. */
export const logPath = (root: string, id: string) => path.join(containerDir(root, id), `${id}-json.log`)
