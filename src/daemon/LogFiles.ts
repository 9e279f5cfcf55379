/**
 * Where a container's log lives and how it is configured, shared by the engine
 * (which writes the options at create and reads the log) and the shim logger
 * (logger.c, which writes the log): `<log root>/<id>/<id>-json.log`, as dockerd
 * lays out `containers/<id>/`, with the options (JSON) beside it.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { removeContainerTree } from "./Shm.ts"

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

/**
 * Removes the directories of containers that are gone — a create killed between
 * writing the log options and making the container, or a container deleted
 * (with its task) while the daemon was down. Run at start, before requests.
 */
export const removeOrphanDirs = (root: string, containerIds: ReadonlySet<string>): Effect.Effect<void> =>
  Effect.try({ try: () => fs.existsSync(root) ? fs.readdirSync(root) : [], catch: (cause) => cause }).pipe(
    Effect.flatMap((names) =>
      Effect.forEach(names.filter((name) => !containerIds.has(name)), (name) => removeContainerTree(containerDir(root, name)), {
        discard: true
      })
    ),
    // Harmless: what is left is disk space only, and the next start tries again.
    Effect.catch((cause) => Effect.logWarning(`could not list ${root} for directories of containers that are gone`, cause))
  )
