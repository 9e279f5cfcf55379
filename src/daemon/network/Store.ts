/**
 * The daemon's networks on disk, as dockerd keeps them in libnetwork's local
 * store: one JSON file per network, `<data-root>/network/networks/<id>.json`,
 * holding Docker's view of it (name, id, driver, IPAM, labels, options) and
 * what the bridge is made of (its device, subnet, gateway, range). Networks are
 * not containerd objects, so this is their only record; the CNI conflists the
 * library writes are derived from it again at every start.
 *
 * Each file is written whole to a temporary name and renamed, so a daemon
 * killed mid-write leaves the old record or the new one, never half of one.
 */
import { Effect, Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { NetworkDefinition } from "../../services/Networks.ts"
import { type DockerError, internal } from "../DockerError.ts"

const StringMap = Schema.Record(Schema.String, Schema.String)

/** One IPAM pool of a network, as Docker shows it (`Gateway` only when given or chosen for an allocated pool). */
export const IpamConfig = Schema.Struct({
  Subnet: Schema.optional(Schema.String),
  IPRange: Schema.optional(Schema.String),
  Gateway: Schema.optional(Schema.String)
})

/** A network as stored: Docker's fields, and the bridge it is made of. */
export const NetworkRecord = Schema.Struct({
  Name: Schema.String,
  /** 64 hex characters. */
  Id: Schema.String,
  /** RFC 3339 with nanoseconds, as Docker shows it. */
  Created: Schema.String,
  Driver: Schema.Literals(["bridge", "host", "null"]),
  Internal: Schema.Boolean,
  Attachable: Schema.Boolean,
  Options: StringMap,
  Labels: StringMap,
  IPAM: Schema.Struct({
    Driver: Schema.String,
    Options: Schema.NullOr(StringMap),
    Config: Schema.Array(IpamConfig)
  }),
  /** One of the three networks every daemon has (`bridge`, `host`, `none`): never removed. */
  Predefined: Schema.Boolean,
  /** A bridge network's device, subnet (CIDR), gateway and address range. */
  Bridge: Schema.optional(Schema.String),
  Subnet: Schema.optional(Schema.String),
  Gateway: Schema.optional(Schema.String),
  IPRange: Schema.optional(Schema.String),
  Mtu: Schema.optional(Schema.Int)
})
export type NetworkRecord = typeof NetworkRecord.Type

/** The names of the predefined networks, as dockerd's `runconfig.IsPreDefinedNetwork`. */
export const PREDEFINED = ["bridge", "host", "none"] as const

/** Whether a name is that of a predefined network (`default` is the CLI's word for `bridge`). */
export const isPredefinedName = (name: string): boolean => (PREDEFINED as ReadonlyArray<string>).includes(name)

/** Where the records are. */
export const networksDir = (dataRoot: string): string => path.join(dataRoot, "network", "networks")

const decode = Schema.decodeUnknownResult(Schema.fromJsonString(NetworkRecord))

/** Every stored network; a file that does not decode is logged and left alone. */
export const loadAll = (dir: string): Effect.Effect<ReadonlyArray<NetworkRecord>, DockerError> =>
  Effect.gen(function*() {
    const names = yield* Effect.try({
      try: () => {
        fs.mkdirSync(dir, { recursive: true })
        return fs.readdirSync(dir).filter((name) => name.endsWith(".json"))
      },
      catch: (cause) => internal(`could not read the networks in ${dir}: ${String(cause)}`, cause)
    })
    const records: Array<NetworkRecord> = []
    for (const name of names) {
      const file = path.join(dir, name)
      const decoded = decode(fs.readFileSync(file, "utf8"))
      if (decoded._tag === "Success") records.push(decoded.success)
      else yield* Effect.logWarning(`network record ${file} cannot be read, so that network is left out: ${decoded.failure.message}`)
    }
    return records
  })

/** Writes a network's record (whole, then renamed into place). */
export const save = (dir: string, record: NetworkRecord): Effect.Effect<void, DockerError> =>
  Effect.try({
    try: () => {
      const file = path.join(dir, `${record.Id}.json`)
      fs.writeFileSync(`${file}.tmp`, JSON.stringify(record))
      fs.renameSync(`${file}.tmp`, file)
    },
    catch: (cause) => internal(`could not store network ${record.Name}: ${String(cause)}`, cause)
  })

/** Removes a network's record. */
export const forget = (dir: string, id: string): Effect.Effect<void, DockerError> =>
  Effect.try({
    try: () => fs.rmSync(path.join(dir, `${id}.json`), { force: true }),
    catch: (cause) => internal(`could not remove the record of network ${id}: ${String(cause)}`, cause)
  })

/** What the library defines for a bridge network: the CNI network is named by the network's id. */
export const definitionOf = (record: NetworkRecord): NetworkDefinition | undefined =>
  record.Driver !== "bridge" || record.Bridge === undefined || record.Subnet === undefined
    ? undefined
    : {
      name: record.Id,
      bridge: record.Bridge,
      subnet: record.Subnet,
      gateway: record.Gateway,
      ipRange: record.IPRange,
      internal: record.Internal,
      mtu: record.Mtu
    }

/** A container's endpoint as a network's `Containers` map shows it. */
export interface NetworkMember {
  readonly containerId: string
  readonly name: string
  readonly endpointId: string
  readonly mac: string
  /** `10.254.1.2/24` */
  readonly ipv4: string
}

/** `GET /networks/{id}` (and each entry of `GET /networks`): Docker's shape. */
export const networkJson = (record: NetworkRecord, members: ReadonlyArray<NetworkMember>) => ({
  Name: record.Name,
  Id: record.Id,
  Created: record.Created,
  Scope: "local",
  Driver: record.Driver,
  EnableIPv6: false,
  IPAM: record.IPAM,
  Internal: record.Internal,
  Attachable: record.Attachable,
  Ingress: false,
  ConfigFrom: { Network: "" },
  ConfigOnly: false,
  Containers: Object.fromEntries(members.map((m) => [m.containerId, {
    Name: m.name,
    EndpointID: m.endpointId,
    MacAddress: m.mac,
    IPv4Address: m.ipv4,
    IPv6Address: ""
  }])),
  Options: record.Options,
  Labels: record.Labels
})
