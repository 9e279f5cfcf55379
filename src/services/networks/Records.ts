/**
 * Attachment records: our counterpart of libcni's result cache
 * (`/var/lib/cni/results`), one file per container at
 * `<confDir>/attachments/<namespace>-<containerId>.json`. It is written before
 * the first ADD (the intent: the conflist bytes each network is ADDed with,
 * the interface, CNI_ARGS and capability values, the netns, no result yet) and
 * again with each result, so that whatever happens after — a failure, a crash,
 * a restart — DEL is given exactly what ADD was, never a conflist that has
 * changed since. The file goes only after every DEL and the netns removal.
 */
import { Effect, Option, Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { ContainerdError } from "../../domain/ContainerdError.ts"
import { CniResult } from "../../domain/CniResult.ts"
import type { ConfList, Invocation, RawResult } from "../../internal/Cni.ts"
import { commandFailure } from "../../internal/Command.ts"
import type { Attachment, NetworkEndpoint, PortMapping } from "../Networks.ts"
import { removePartials, writeAtomic } from "./Definitions.ts"

const PortMappingSchema = Schema.Struct({
  hostPort: Schema.Int,
  containerPort: Schema.Int,
  protocol: Schema.Literals(["tcp", "udp"]),
  hostIp: Schema.optional(Schema.String)
})

const RecordedNetwork = Schema.Struct({
  network: Schema.String,
  ifname: Schema.String,
  /** The conflist exactly as ADD ran it (JSON). */
  conflist: Schema.String,
  args: Schema.String,
  capabilityArgs: Schema.Record(Schema.String, Schema.Unknown),
  /** The ADD result; null until ADD succeeded. */
  result: Schema.NullOr(Schema.Record(Schema.String, Schema.Unknown))
})

/** One network of a record. */
export type RecordedNetwork = typeof RecordedNetwork.Type

/** What is recorded of one container's attachment. */
export const AttachmentRecord = Schema.Struct({
  namespace: Schema.String,
  containerId: Schema.String,
  netns: Schema.String,
  ports: Schema.Array(PortMappingSchema),
  networks: Schema.Array(RecordedNetwork)
})

/** The decoded record. */
export type AttachmentRecord = typeof AttachmentRecord.Type

const decodeRecord = Schema.decodeUnknownOption(Schema.fromJsonString(AttachmentRecord))
const decodeResult = Schema.decodeUnknownOption(CniResult)

/** Where a container's record is. */
export const recordPath = (confDir: string, namespace: string, containerId: string) =>
  path.join(confDir, "attachments", `${namespace}@${containerId}.json`)

/** Writes a record (atomically). */
export const writeRecord = (confDir: string, record: AttachmentRecord): Effect.Effect<void, ContainerdError> =>
  writeAtomic(recordPath(confDir, record.namespace, record.containerId), JSON.stringify(record))

/** Removes a record. */
export const dropRecord = (confDir: string, record: AttachmentRecord): Effect.Effect<void, ContainerdError> =>
  Effect.try({
    try: () => fs.rmSync(recordPath(confDir, record.namespace, record.containerId), { force: true }),
    catch: (cause) => commandFailure("Networks", `could not remove the record of ${record.containerId}`, cause)
  })

/** Every readable record; unreadable ones are logged and left for a person to look at. */
export const loadRecords = (confDir: string): Effect.Effect<ReadonlyArray<AttachmentRecord>> =>
  Effect.gen(function*() {
    const dir = path.join(confDir, "attachments")
    removePartials(dir)
    const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((file) => file.endsWith(".json")) : []
    const records: Array<AttachmentRecord> = []
    for (const file of files) {
      const record = decodeRecord(fs.readFileSync(path.join(dir, file), "utf8"))
      if (Option.isSome(record)) records.push(record.value)
      else yield* Effect.logWarning(`Networks: ${path.join(dir, file)} is not an attachment record; left in place`)
    }
    return records
  })

/** The conflist a network was ADDed with. */
export const recordedList = (network: RecordedNetwork): ConfList => JSON.parse(network.conflist) as ConfList

/** The CNI invocation of a recorded network. */
export const recordedInvocation = (record: AttachmentRecord, network: RecordedNetwork): Invocation => ({
  containerId: record.containerId,
  netns: record.netns,
  ifname: network.ifname,
  args: network.args,
  capabilityArgs: network.capabilityArgs
})

/** The endpoint a bridge result describes: the address on the interface inside the netns. */
export const endpointOf = (network: string, ifname: string, raw: RawResult): NetworkEndpoint => {
  const result = Option.getOrUndefined(decodeResult(raw))
  const interfaces = result?.interfaces ?? []
  const ip = result?.ips?.find((ip) => ip.interface !== undefined && interfaces[ip.interface]?.sandbox) ?? result?.ips?.[0]
  const [address = "", prefix = "0"] = (ip?.address ?? "").split("/")
  const inside = interfaces.find((i) => i.name === ifname && i.sandbox) ??
    (ip?.interface === undefined ? undefined : interfaces[ip.interface])
  return { network, ifname, address, prefixLength: Number(prefix), gateway: ip?.gateway ?? "", mac: inside?.mac ?? "" }
}

/** The attachment a record describes (networks without a result yet are left out). */
export const attachmentOf = (record: AttachmentRecord): Attachment => ({
  namespace: record.namespace,
  containerId: record.containerId,
  netns: record.netns,
  endpoints: record.networks.flatMap((network) =>
    network.result === null ? [] : [endpointOf(network.network, network.ifname, network.result)]
  ),
  ports: record.ports as ReadonlyArray<PortMapping>
})
