/**
 * A network definition checked and turned into what CNI runs: the conflist
 * (bridge with host-local IPAM, portmap, optionally firewall), written to
 * `<confDir>/<name>.conflist` with the definition itself kept beside the
 * plugins so the layer reloads exactly what was defined.
 *
 * Checked before anything is written: the name, the bridge name (IFNAMSIZ),
 * the subnet, gateway and range (IPv4, inside the subnet), and that the subnet
 * overlaps no other network's (libnetwork's "Pool overlaps with other one on
 * this address space").
 */
import { Effect, Option, Schema } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { type ContainerdError, invalidArgument, notFound } from "../../domain/ContainerdError.ts"
import { CNI_VERSION, type ConfList, type PluginConf } from "../../internal/Cni.ts"
import { commandFailure } from "../../internal/Command.ts"
import type { AttachOptions, NetworkDefinition, NetworkRequest } from "../Networks.ts"

const METHOD = "Networks.define"

/** An IPv4 range: its first address and its prefix length. */
export interface Cidr {
  readonly base: number
  readonly prefix: number
}

/** `10.1.2.3` as a number; none unless four decimal octets. */
export const parseIp = (text: string): Option.Option<number> => {
  const parts = text.split(".")
  if (parts.length !== 4 || !parts.every((part) => /^(0|[1-9]\d{0,2})$/.test(part) && Number(part) <= 255)) {
    return Option.none()
  }
  return Option.some(parts.reduce((n, part) => n * 256 + Number(part), 0))
}

/** A number as `10.1.2.3`. */
export const formatIp = (n: number): string => [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join(".")

const size = (cidr: Cidr) => 2 ** (32 - cidr.prefix)

/** `10.1.0.0/16`; none unless a valid IPv4 address and prefix (host bits are cleared). */
export const parseCidr = (text: string): Option.Option<Cidr> => {
  const [ip, prefixText, extra] = text.split("/")
  if (ip === undefined || prefixText === undefined || extra !== undefined || !/^\d{1,2}$/.test(prefixText)) {
    return Option.none()
  }
  const prefix = Number(prefixText)
  if (prefix > 32) return Option.none()
  return Option.map(parseIp(ip), (n) => ({ base: n - (n % 2 ** (32 - prefix)), prefix }))
}

const contains = (outer: Cidr, n: number) => n >= outer.base && n < outer.base + size(outer)

/** Whether two ranges share an address. */
export const overlaps = (a: Cidr, b: Cidr): boolean => contains(a, b.base) || contains(b, a.base)

/** What a checked definition yields besides itself: the range host-local gives addresses from. */
export interface CheckedNetwork {
  readonly definition: NetworkDefinition
  readonly subnet: Cidr
  readonly gateway: string
  /** The range host-local allocates from (the ipRange, or the whole subnet). */
  readonly rangeStart: string
  readonly rangeEnd: string
}

const NamePattern = /^[A-Za-z0-9][A-Za-z0-9._-]*$/
const BridgePattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/

/** Checks a definition against itself and the other networks; `InvalidArgument` saying what is wrong. */
export const checkDefinition = (
  definition: NetworkDefinition,
  others: ReadonlyArray<NetworkDefinition>
): Effect.Effect<CheckedNetwork, ContainerdError> =>
  Effect.suspend(() => {
    const bad = (message: string) => Effect.fail(invalidArgument(METHOD, message))
    const { bridge, name } = definition
    if (!NamePattern.test(name) || name.length > 128) {
      return bad(`invalid network name ${JSON.stringify(name)}: letters, digits, '.', '_' and '-', at most 128`)
    }
    if (!BridgePattern.test(bridge)) {
      return bad(`invalid bridge name ${JSON.stringify(bridge)}: at most 15 letters, digits, '.', '_' and '-'`)
    }
    const subnet = parseCidr(definition.subnet)
    if (Option.isNone(subnet) || subnet.value.prefix > 30 || subnet.value.prefix < 8) {
      return bad(`invalid subnet ${JSON.stringify(definition.subnet)}: an IPv4 CIDR from /8 to /30, e.g. 10.254.1.0/24`)
    }
    const net = subnet.value
    const first = net.base + 1
    const last = net.base + size(net) - 2
    const gatewayN = definition.gateway === undefined ? Option.some(first) : parseIp(definition.gateway)
    if (Option.isNone(gatewayN) || gatewayN.value < first || gatewayN.value > last) {
      return bad(`invalid gateway ${JSON.stringify(definition.gateway)}: a host address inside ${definition.subnet}`)
    }
    let rangeStart = first
    let rangeEnd = last
    if (definition.ipRange !== undefined) {
      const range = parseCidr(definition.ipRange)
      if (Option.isNone(range) || range.value.prefix < net.prefix || !contains(net, range.value.base)) {
        return bad(`invalid ip range ${JSON.stringify(definition.ipRange)}: a CIDR inside ${definition.subnet}`)
      }
      rangeStart = Math.max(first, range.value.base)
      rangeEnd = Math.min(last, range.value.base + size(range.value) - 1)
    }
    if (definition.mtu !== undefined && (!Number.isInteger(definition.mtu) || definition.mtu < 68 || definition.mtu > 65535)) {
      return bad(`invalid MTU ${definition.mtu}: an integer from 68 to 65535`)
    }
    for (const other of others) {
      if (other.name === name) continue
      if (other.bridge === bridge) return bad(`bridge ${bridge} is used by network ${other.name}`)
      const theirs = parseCidr(other.subnet)
      if (Option.isSome(theirs) && overlaps(net, theirs.value)) {
        return bad(`Pool overlaps with other one on this address space (${definition.subnet} and ${other.name}'s ${other.subnet})`)
      }
    }
    return Effect.succeed({
      // The gateway filled in, so what `definitions` lists is what the network has, and defining that again is no change.
      definition: normalise({ ...definition, gateway: formatIp(gatewayN.value) }),
      subnet: net,
      gateway: formatIp(gatewayN.value),
      rangeStart: formatIp(rangeStart),
      rangeEnd: formatIp(rangeEnd)
    })
  })

/** The definition with only the fields it sets, so two equal definitions compare equal. */
export const normalise = (definition: NetworkDefinition): NetworkDefinition =>
  Object.fromEntries(
    Object.entries({
      name: definition.name,
      bridge: definition.bridge,
      subnet: definition.subnet,
      gateway: definition.gateway,
      ipRange: definition.ipRange,
      internal: definition.internal || undefined,
      mtu: definition.mtu,
      firewall: definition.firewall || undefined
    }).filter(([, value]) => value !== undefined)
  ) as unknown as NetworkDefinition

/** The conflist key our definition is kept under (CNI ignores keys it does not know). */
const DefinitionKey = "effectContainerd"

/** A network's conflist: bridge + host-local (addresses recorded under `ipamDir`), portmap, firewall if asked. */
export const conflist = (network: CheckedNetwork, ipamDir: string): ConfList & Record<string, unknown> => {
  const { definition } = network
  const bridge: PluginConf = {
    type: "bridge",
    bridge: definition.bridge,
    isGateway: true,
    ipMasq: false,
    hairpinMode: true,
    ...(definition.mtu === undefined ? {} : { mtu: definition.mtu }),
    ipam: {
      type: "host-local",
      dataDir: ipamDir,
      ranges: [[{
        subnet: `${formatIp(network.subnet.base)}/${network.subnet.prefix}`,
        gateway: network.gateway,
        rangeStart: network.rangeStart,
        rangeEnd: network.rangeEnd
      }]],
      // An internal network has no way out, so no default route either (as Docker's).
      routes: definition.internal ? [] : [{ dst: "0.0.0.0/0" }]
    }
  }
  const portmap: PluginConf = { type: "portmap", capabilities: { portMappings: true }, snat: true }
  const firewall: PluginConf = { type: "firewall" }
  return {
    cniVersion: CNI_VERSION,
    name: definition.name,
    plugins: [bridge, portmap, ...(definition.firewall ? [firewall] : [])],
    [DefinitionKey]: definition
  }
}

/** The plugins a network's list runs: portmap only with ports to publish (it would cost nothing, but neither does skipping it). */
export const pluginsFor = (list: ConfList, withPorts: boolean): ConfList => ({
  cniVersion: list.cniVersion,
  name: list.name,
  plugins: list.plugins.filter((plugin) => withPorts || plugin.type !== "portmap")
})

/** Where a network's conflist is written. */
export const conflistPath = (confDir: string, name: string) => path.join(confDir, `${name}.conflist`)

const NetworkDefinitionSchema = Schema.Struct({
  name: Schema.String,
  bridge: Schema.String,
  subnet: Schema.String,
  gateway: Schema.optional(Schema.String),
  ipRange: Schema.optional(Schema.String),
  internal: Schema.optional(Schema.Boolean),
  mtu: Schema.optional(Schema.Number),
  firewall: Schema.optional(Schema.Boolean)
})

const StoredConfList = Schema.fromJsonString(Schema.Struct({ [DefinitionKey]: NetworkDefinitionSchema }))
const decodeStored = Schema.decodeUnknownOption(StoredConfList)

/** The definitions of every conflist in `confDir` we wrote; unreadable files are logged and left. */
export const loadDefinitions = (confDir: string): Effect.Effect<ReadonlyArray<NetworkDefinition>> =>
  Effect.gen(function*() {
    removePartials(confDir)
    const files = fs.existsSync(confDir) ? fs.readdirSync(confDir).filter((file) => file.endsWith(".conflist")) : []
    const definitions: Array<NetworkDefinition> = []
    for (const file of files) {
      const stored = decodeStored(fs.readFileSync(path.join(confDir, file), "utf8"))
      if (Option.isSome(stored)) definitions.push(normalise(stored.value[DefinitionKey]))
      else yield* Effect.logWarning(`Networks: ${path.join(confDir, file)} is not a network we defined; ignored`)
    }
    return definitions
  })

/** Removes what a write killed half-way left in `dir` (never a file a reader takes for whole). */
export const removePartials = (dir: string): void => {
  for (const file of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    if (file.endsWith(".partial")) fs.rmSync(path.join(dir, file), { force: true })
  }
}

/** Writes `content` to `file` atomically (a temporary file renamed over it). */
export const writeAtomic = (file: string, content: string): Effect.Effect<void, ContainerdError> =>
  Effect.try({
    try: () => {
      fs.mkdirSync(path.dirname(file), { recursive: true })
      const partial = `${file}.${process.pid}-${Math.random().toString(36).slice(2)}.partial`
      fs.writeFileSync(partial, content, { mode: 0o600 })
      fs.renameSync(partial, file)
    },
    catch: (cause) => commandFailure("Networks", `could not write ${file}`, cause)
  })

const isPort = (n: number, min: number) => Number.isSafeInteger(n) && n >= min && n <= 65535

/** Checks one network asked for: a fixed address in host-local's range (never the gateway's), a MAC's syntax. */
const checkRequest = (method: string, network: CheckedNetwork, request: NetworkRequest) =>
  Effect.gen(function*() {
    if (request.ip !== undefined) {
      const ip = parseIp(request.ip)
      const { gateway, rangeEnd, rangeStart } = network
      const inRange = Option.isSome(ip) && ip.value >= Option.getOrThrow(parseIp(rangeStart)) &&
        ip.value <= Option.getOrThrow(parseIp(rangeEnd)) && request.ip !== gateway
      if (!inRange) {
        return yield* Effect.fail(invalidArgument(
          method,
          `invalid address ${request.ip}: network ${request.network} gives addresses from ${rangeStart} to ${rangeEnd}, except its gateway ${gateway}`
        ))
      }
    }
    if (request.mac !== undefined && !/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(request.mac)) {
      return yield* Effect.fail(invalidArgument(method, `invalid MAC address ${request.mac}`))
    }
  })

/**
 * Checks what a container is to be attached with, against the networks
 * defined: each network defined and asked for once, its address and MAC, each
 * port a port (a host port 0 is chosen at attach) and published only with a
 * network. What needs the host (is a host port free?) is the attach's.
 */
export const checkAttach = (
  method: string,
  defined: (name: string) => CheckedNetwork | undefined,
  options: AttachOptions
): Effect.Effect<void, ContainerdError> =>
  Effect.gen(function*() {
    const seen = new Set<string>()
    for (const request of options.networks) {
      const network = defined(request.network)
      if (network === undefined) return yield* Effect.fail(notFound(method, `network ${request.network} not found`))
      if (seen.has(request.network)) return yield* Effect.fail(invalidArgument(method, `network ${request.network} is asked for twice`))
      seen.add(request.network)
      yield* checkRequest(method, network, request)
    }
    const ports = options.ports ?? []
    if (ports.length > 0 && options.networks.length === 0) {
      return yield* Effect.fail(invalidArgument(method, "ports can only be published on a network; none was given"))
    }
    for (const port of ports) {
      if (!isPort(port.containerPort, 1) || !isPort(port.hostPort, 0)) {
        return yield* Effect.fail(invalidArgument(
          method,
          `invalid port mapping ${port.hostPort}:${port.containerPort}/${port.protocol}: ports are 1 to 65535 (a host port 0 is chosen)`
        ))
      }
      if (port.protocol !== "tcp" && port.protocol !== "udp") {
        return yield* Effect.fail(invalidArgument(method, `invalid protocol ${JSON.stringify(port.protocol)}: use tcp or udp`))
      }
    }
  })
