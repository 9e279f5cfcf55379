/**
 * Docker's volumes with the local driver, as dockerd 20.10's volume/local: each
 * volume is `<data-root>/volumes/<name>/_data`, its metadata (labels, options,
 * created at) in `volume.json` beside it, written atomically (temp + rename) as
 * the last step of a create, so a directory without it is a create killed
 * half-way and is removed at the next start. The records are loaded at start:
 * volumes survive daemon restarts.
 *
 * Gotchas: whether a volume is in use is not known here (containers reference
 * volumes by name in their create requests: the engine's `volumeUsers`, checked
 * by the routes); driver options (`type`/`device`/`o`) are refused with a 400
 * rather than ignored.
 */
import * as crypto from "node:crypto"
import { Context, Effect, Layer, Schema, Semaphore } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { badRequest, type DockerError, internal, notFound } from "./DockerError.ts"
import { EventLog } from "./EventLog.ts"

/** What is kept of a volume beside its data. */
export const VolumeRecord = Schema.Struct({
  Name: Schema.String,
  Driver: Schema.String,
  Labels: Schema.Record(Schema.String, Schema.String),
  Options: Schema.Record(Schema.String, Schema.String),
  CreatedAt: Schema.String
})
export type VolumeRecord = typeof VolumeRecord.Type

/** Where a volume's data is: what a container mounts (its `Mountpoint`). */
export const volumeData = (root: string, name: string) => path.join(root, name, "_data")

/** A volume as the API shows it (`GET /volumes/{name}`). */
export const volumeJson = (root: string, record: VolumeRecord) => ({
  CreatedAt: record.CreatedAt,
  Driver: record.Driver,
  Labels: record.Labels,
  Mountpoint: volumeData(root, record.Name),
  Name: record.Name,
  Options: record.Options,
  Scope: "local"
})

/** What `POST /volumes/create` asks for. */
export interface VolumeRequest {
  readonly name?: string | undefined
  readonly driver?: string | undefined
  readonly labels?: Readonly<Record<string, string>> | undefined
  readonly options?: Readonly<Record<string, string>> | undefined
}

/** The daemon's volumes. */
export interface DockerVolumesShape {
  readonly root: string
  readonly list: Effect.Effect<ReadonlyArray<VolumeRecord>>
  readonly get: (name: string) => Effect.Effect<VolumeRecord, DockerError>
  /** Creates the volume, or answers the one of that name (dockerd's create is idempotent). */
  readonly create: (request: VolumeRequest) => Effect.Effect<VolumeRecord, DockerError>
  /** The bytes its data holds (regular files, links not followed), for `system df`. */
  readonly size: (record: VolumeRecord) => Effect.Effect<number, DockerError>
  /** Removes it; with `force` a missing one is no error. */
  readonly remove: (name: string, force: boolean) => Effect.Effect<void, DockerError>
  /** Removes the volumes `select` picks (dockerd 20.10: every unused local volume); their names and bytes freed. */
  readonly prune: (
    select: (record: VolumeRecord) => boolean
  ) => Effect.Effect<{ readonly VolumesDeleted: ReadonlyArray<string>; readonly SpaceReclaimed: number }, DockerError>
}

/** dockerd's rule for local volume names (volume/local's validateName). */
const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/
const METADATA = "volume.json"
const decode = Schema.decodeUnknownSync(Schema.fromJsonString(VolumeRecord))

const fileWork = <A>(what: string, f: () => A) =>
  Effect.try({ try: f, catch: (cause) => internal(`${what}: ${cause instanceof Error ? cause.message : String(cause)}`, cause) })

/** Bytes under `dir` (regular files, not following links), for prune's SpaceReclaimed. */
const sizeOf = (dir: string): number => {
  let total = 0
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) total += sizeOf(full)
    else if (entry.isFile()) total += fs.lstatSync(full).size
  }
  return total
}

const make = (root: string) =>
  Effect.gen(function*() {
    const eventLog = yield* EventLog
    const records = new Map<string, VolumeRecord>()
    // Creates and removals are rare and short (a mkdir, a rename): one permit keeps them from interleaving.
    const permit = yield* Semaphore.make(1)
    yield* fileWork("could not read the volumes", () => {
      fs.mkdirSync(root, { recursive: true, mode: 0o700 })
      for (const name of fs.readdirSync(root)) {
        const dir = path.join(root, name)
        const file = path.join(dir, METADATA)
        if (!fs.existsSync(file)) {
          // A create killed before its metadata was renamed into place.
          fs.rmSync(dir, { recursive: true, force: true })
          continue
        }
        records.set(name, decode(fs.readFileSync(file, "utf8")))
      }
    })
    const publish = (action: string, record: VolumeRecord) =>
      eventLog.publish({ type: "volume", action, id: record.Name, attributes: { driver: record.Driver } })
    const get = (name: string) =>
      Effect.suspend(() => {
        const record = records.get(name)
        return record === undefined ? Effect.fail(notFound(`get ${name}: no such volume`)) : Effect.succeed(record)
      })
    const size = (record: VolumeRecord) => fileWork(`size of ${record.Name}`, () => sizeOf(volumeData(root, record.Name)))
    const removeOne = (record: VolumeRecord) =>
      Effect.gen(function*() {
        const dir = path.join(root, record.Name)
        // The metadata goes first: a removal killed half-way leaves a directory the next start removes.
        yield* fileWork(`remove ${record.Name}`, () => {
          fs.rmSync(path.join(dir, METADATA), { force: true })
          fs.rmSync(dir, { recursive: true, force: true })
        })
        records.delete(record.Name)
        yield* publish("destroy", record)
      })
    return {
      root,
      list: Effect.sync(() => [...records.values()]),
      get,
      size,
      create: (request) =>
        permit.withPermit(Effect.gen(function*() {
          const name = request.name || crypto.randomBytes(32).toString("hex")
          if (!NAME_PATTERN.test(name)) {
            return yield* Effect.fail(badRequest(
              `create ${name}: "${name}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`
            ))
          }
          const driver = request.driver || "local"
          if (driver !== "local") {
            return yield* Effect.fail(notFound(`create ${name}: error looking up volume plugin ${driver}: plugin "${driver}" not found`))
          }
          const existing = records.get(name)
          if (existing !== undefined) return existing
          const options = request.options ?? {}
          const keys = Object.keys(options)
          if (keys.length > 0) {
            return yield* Effect.fail(badRequest(
              `create ${name}: driver options (${keys.join(", ")}) are not supported by effect-containerd: volumes are plain directories`
            ))
          }
          const record: VolumeRecord = {
            Name: name,
            Driver: "local",
            Labels: { ...request.labels },
            Options: {},
            CreatedAt: new Date().toISOString().replace(/\.\d+Z$/, "Z")
          }
          const dir = path.join(root, name)
          yield* fileWork(`create ${name}`, () => {
            fs.mkdirSync(path.join(dir, "_data"), { recursive: true, mode: 0o755 })
            const temp = path.join(dir, `${METADATA}.tmp`)
            fs.writeFileSync(temp, JSON.stringify(record))
            fs.renameSync(temp, path.join(dir, METADATA))
          }).pipe(Effect.onError(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))))
          records.set(name, record)
          yield* publish("create", record)
          return record
        })),
      remove: (name, force) =>
        permit.withPermit(Effect.gen(function*() {
          const record = records.get(name)
          if (record === undefined) return force ? undefined : yield* Effect.fail(notFound(`get ${name}: no such volume`))
          yield* removeOne(record)
        })),
      prune: (select) =>
        permit.withPermit(Effect.gen(function*() {
          const deleted: Array<string> = []
          let reclaimed = 0
          for (const record of [...records.values()].filter(select)) {
            reclaimed += yield* size(record)
            yield* removeOne(record)
            deleted.push(record.Name)
          }
          return { VolumesDeleted: deleted, SpaceReclaimed: reclaimed }
        }))
    } satisfies DockerVolumesShape
  })

/** The daemon's volumes. */
export class DockerVolumes extends Context.Service<DockerVolumes, DockerVolumesShape>()("effect-containerd/daemon/DockerVolumes") {
  /** The volumes under `<dataRoot>/volumes`. */
  static readonly layer = (options: { readonly dataRoot: string }): Layer.Layer<DockerVolumes, DockerError, EventLog> =>
    Layer.effect(DockerVolumes, make(path.join(options.dataRoot, "volumes")))
}
