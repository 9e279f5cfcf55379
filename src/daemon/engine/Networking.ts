/**
 * A container's networks, as dockerd's `daemon/container_operations.go` sees
 * them: which networks it joins (its `NetworkMode`, then `docker network
 * connect`s), with what aliases and fixed address, resolved at create against
 * the daemon's networks; what its task is attached with at each start (the
 * networks and the published ports, as the library's `AttachOptions`); and
 * how inspect and `docker ps` show it (`NetworkSettings`).
 *
 * The membership is kept in a label of the containerd container (written with
 * the create, changed by connect and disconnect), so a restarted daemon knows
 * it and a stopped container keeps what it was connected to; the addresses are
 * its running task's attachment, so a stopped container shows none, as
 * dockerd's.
 */
import { Effect, Option, Result, Schema } from "effect"
import * as crypto from "node:crypto"
import type { AttachOptions, Attachment } from "../../services/Networks.ts"
import { ContainerdError } from "../../domain/ContainerdError.ts"
import { badRequest, DockerError, internal, orBadRequest } from "../DockerError.ts"
import type { DockerNetworksShape } from "../Networks.ts"
import { contains, parseAddress, parseSubnet } from "../network/Pools.ts"
import type { NetworkRecord } from "../network/Store.ts"
import type { CreateBody, StoredContainer } from "../Model.ts"
import { type Environment, inNamespace, lib, setLabels, trackedOf } from "./Environment.ts"
import type { NetworkMode } from "./HostConfig.ts"
import { mappingsOf, parsePorts, type Ports, portsJson, summaryPorts } from "./Ports.ts"
import { isRunning } from "./State.ts"
import type { Entry } from "./Store.ts"

/** The label holding a container's networks. */
export const NETWORKS_LABEL = "effect-containerd.io/docker.networks"

/** One network a container joins. */
export const ContainerNetwork = Schema.Struct({
  /** The network's id. */
  id: Schema.String,
  /** `--network-alias`es (and compose's service name), for names that resolve. */
  aliases: Schema.Array(Schema.String),
  /** `--ip`. */
  ip: Schema.optional(Schema.String)
})
export type ContainerNetwork = typeof ContainerNetwork.Type

const decodeNetworks = Schema.decodeUnknownOption(Schema.fromJsonString(Schema.Array(ContainerNetwork)))

/** The networks a container's labels record. */
export const networksOfLabels = (labels: Readonly<Record<string, string>>): ReadonlyArray<ContainerNetwork> => {
  const text = labels[NETWORKS_LABEL]
  return text === undefined ? [] : decodeNetworks(text).pipe((o) => o._tag === "Some" ? o.value : [])
}

/** The label value for a container's networks. */
export const networksLabel = (networks: ReadonlyArray<ContainerNetwork>): Record<string, string> => ({
  [NETWORKS_LABEL]: JSON.stringify(networks)
})

/** A stable endpoint id for a container on a network (Docker's `EndpointID` is 64 hex characters). */
export const endpointId = (containerId: string, networkId: string): string =>
  crypto.createHash("sha256").update(`${containerId}/${networkId}`).digest("hex")

/** An endpoint config of a request (`NetworkingConfig.EndpointsConfig[…]`, connect's `EndpointConfig`). */
export interface EndpointRequest {
  readonly Aliases?: ReadonlyArray<string> | null | undefined
  readonly IPAMConfig?: { readonly IPv4Address?: string | null | undefined; readonly IPv6Address?: string | null | undefined } | null | undefined
  readonly Links?: ReadonlyArray<string> | null | undefined
}

/** An endpoint config checked against its network: dockerd's `validateNetworkingConfig` words. */
export const checkEndpoint = (record: NetworkRecord, endpoint: EndpointRequest | undefined): Result.Result<ContainerNetwork, string> => {
  const aliases = endpoint?.Aliases ?? []
  const ip = endpoint?.IPAMConfig?.IPv4Address ?? ""
  if ((endpoint?.Links ?? []).length > 0) return Result.fail("Links (--link) are not supported: use a user network, where names resolve")
  if ((endpoint?.IPAMConfig?.IPv6Address ?? "") !== "") return Result.fail("IPv6Address is not supported: networks here are IPv4 only")
  if (record.Predefined && aliases.length > 0) return Result.fail("network-scoped alias is supported only for containers in user defined networks")
  if (record.Predefined && ip !== "") return Result.fail("user specified IP address is supported on user defined networks only")
  if (ip !== "") {
    const address = parseAddress(ip)
    const subnet = record.Subnet === undefined ? undefined : Result.getOrUndefined(parseSubnet(record.Subnet))
    if (address === undefined) return Result.fail(`invalid IPv4 address: ${ip}`)
    if (subnet === undefined || !contains(subnet, address)) {
      return Result.fail(`Invalid address ${ip}: It does not belong to any of this network's subnets`)
    }
  }
  return Result.succeed({ id: record.Id, aliases: [...aliases], ...(ip === "" ? {} : { ip }) })
}

/** What create settles of a container's network. */
export interface CreateNetworking {
  /** The library's network option. */
  readonly network: "none" | "host" | AttachOptions
  readonly networks: ReadonlyArray<ContainerNetwork>
  readonly ports: Ports
  readonly warnings: ReadonlyArray<string>
}

/** Said when the default network is asked for and there is none (`--bridge none`, or an engine built without networks). */
export const BRIDGE_WARNING = "the bridge network does not exist here: the container has no network but loopback (as with --network none)"

/**
 * The network of a create: its mode resolved to a network (404 for an unknown
 * one, as dockerd's start), its one endpoint config (as 20.10, which connects
 * the rest after), its ports parsed. Fails with a status and message.
 */
export const createNetworking = (
  networks: DockerNetworksShape | undefined,
  mode: NetworkMode,
  body: CreateBody,
  imageExposedPorts: Readonly<Record<string, unknown>> | null | undefined
): Effect.Effect<CreateNetworking, DockerError> =>
  Effect.gen(function*() {
    const host = body.HostConfig ?? {}
    const ports = yield* orBadRequest(parsePorts({
      exposedPorts: body.ExposedPorts as Readonly<Record<string, unknown>> | null | undefined,
      imageExposedPorts,
      portBindings: host.PortBindings as Parameters<typeof parsePorts>[0]["portBindings"],
      publishAll: host.PublishAllPorts === true
    }))
    const endpoints = Object.entries(
      ((body.NetworkingConfig ?? {}) as { EndpointsConfig?: Record<string, EndpointRequest | null> | null }).EndpointsConfig ?? {}
    )
    if (endpoints.length > 1) {
      return yield* Effect.fail(badRequest(`Container cannot be connected to network endpoints: ${endpoints.map(([name]) => name).join(", ")}`))
    }
    const published = ports.bindings.length > 0
    const own = (warnings: ReadonlyArray<string>, network: "none" | "host"): CreateNetworking => ({ network, networks: [], ports, warnings })
    if (mode._tag === "Host") return own(published ? ["Published ports are discarded when using host network mode"] : [], "host")
    if (mode._tag === "Container" && published) {
      return yield* Effect.fail(badRequest("conflicting options: port publishing and the container type network mode"))
    }
    if (mode._tag === "None" || mode._tag === "Container") {
      return own(published ? ["Published ports are discarded when using network mode none"] : [], "none")
    }
    if (networks === undefined) {
      if (published) return yield* Effect.fail(badRequest("PortBindings (-p, -P) is not supported: this engine has no networks"))
      if (mode._tag === "Network") return yield* Effect.fail(badRequest(`network ${mode.ref} not found: this engine has no networks`))
      return own([BRIDGE_WARNING], "none")
    }
    if (mode._tag === "Bridge" && Option.isNone(yield* Effect.option(networks.find("bridge")))) {
      if (published) return yield* Effect.fail(badRequest("PortBindings (-p, -P) need a network: the default bridge is disabled (--bridge none)"))
      return own([BRIDGE_WARNING], "none")
    }
    // dockerd's words, as a 400: a 404 to a create makes the docker CLI pull the image and try again.
    const record = yield* networks.find(mode._tag === "Bridge" ? "bridge" : mode.ref).pipe(
      Effect.mapError((error) => error.status === 404 ? badRequest(error.message) : error)
    )
    if (record.Driver === "host") return own([], "host")
    if (record.Driver === "null") return own([], "none")
    const [endpointName, endpoint] = endpoints[0] ?? [undefined, undefined]
    if (endpointName !== undefined) {
      // The CLI names the default network as its mode does: `default`.
      const named = yield* networks.find(endpointName === "default" ? "bridge" : endpointName).pipe(
        Effect.mapError((error) => badRequest(error.message))
      )
      if (named.Id !== record.Id) {
        return yield* Effect.fail(badRequest(`Container cannot be connected to network endpoints: ${endpointName} (its network mode is ${record.Name})`))
      }
    }
    const joined = yield* orBadRequest(checkEndpoint(record, endpoint ?? undefined))
    return { network: attachOptions([joined], ports, new Set()), networks: [joined], ports, warnings: [] }
  })

/** What a task is attached with: the networks in order (the first is `eth0`, where ports are published), the ports chosen. */
export const attachOptions = (networks: ReadonlyArray<ContainerNetwork>, ports: Ports, taken: ReadonlySet<string>): AttachOptions => ({
  networks: networks.map((n) => ({ network: n.id, ...(n.ip === undefined ? {} : { ip: n.ip }) })),
  ports: networks.length === 0 ? [] : mappingsOf(ports.bindings, taken)
})

/** A stored container's ports (they were checked at its create). */
export const portsOf = (stored: StoredContainer): Ports =>
  Result.getOrElse(
    parsePorts({
      exposedPorts: stored.Config.ExposedPorts as Readonly<Record<string, unknown>> | null | undefined,
      imageExposedPorts: stored.ImageConfig?.ExposedPorts,
      portBindings: stored.HostConfig.PortBindings as Parameters<typeof parsePorts>[0]["portBindings"],
      publishAll: stored.HostConfig.PublishAllPorts === true
    }),
    () => ({ exposed: [], bindings: [] })
  )

/** The host ports (`proto/port`) published by attachments. */
export const takenPorts = (attachments: ReadonlyArray<Attachment>): ReadonlySet<string> =>
  new Set(attachments.flatMap((a) => a.ports.map((p) => `${p.protocol}/${p.hostPort}`)))

/** One endpoint as `NetworkSettings.Networks` shows it (empty addresses while the container is not attached). */
export const endpointJson = (
  containerId: string,
  record: NetworkRecord | undefined,
  joined: ContainerNetwork,
  endpoint: Attachment["endpoints"][number] | undefined,
  summary: boolean
) => ({
  IPAMConfig: joined.ip === undefined ? null : { IPv4Address: joined.ip },
  Links: null,
  // As dockerd: on user networks the aliases and the short id (only in inspect).
  Aliases: summary || record === undefined || record.Predefined ? null : [...joined.aliases, containerId.slice(0, 12)],
  NetworkID: record?.Id ?? joined.id,
  EndpointID: endpoint === undefined ? "" : endpointId(containerId, joined.id),
  Gateway: endpoint?.gateway ?? "",
  IPAddress: endpoint?.address ?? "",
  IPPrefixLen: endpoint?.prefixLength ?? 0,
  IPv6Gateway: "",
  GlobalIPv6Address: "",
  GlobalIPv6PrefixLen: 0,
  MacAddress: endpoint?.mac ?? "",
  DriverOpts: null
})

/**
 * What a start attaches the container's task with: its networks now (404 for
 * one removed since, as dockerd's start) and its ports, a host range's port
 * chosen among those no other container of the daemon publishes. None for a
 * container that is not on networks.
 */
export const networkAtStart = (env: Environment, entry: Entry): Effect.Effect<AttachOptions | undefined, DockerError> =>
  Effect.gen(function*() {
    const networks = env.networks
    if (networks === undefined || entry.networks === undefined) return undefined
    for (const joined of entry.networks) yield* networks.find(joined.id)
    const others = (yield* networks.library.attachments).filter((a) => a.containerId !== entry.id)
    return attachOptions(entry.networks, portsOf(entry.stored), takenPorts(others))
  })

/**
 * A start's failure as dockerd words it when a host port is taken: a 500
 * `driver failed programming external connectivity on endpoint <name> (<id>):
 * Bind for 0.0.0.0:8080 failed: port is already allocated`.
 */
export const startNetworkError = (entry: Entry, error: DockerError): DockerError => {
  const cause = error.cause
  if (!(cause instanceof ContainerdError) || cause.reason._tag !== "AlreadyExists" || !/^(Bind for |Error starting userland proxy)/.test(cause.reason.message)) return error
  const network = entry.networks?.[0]?.id ?? ""
  return internal(
    `driver failed programming external connectivity on endpoint ${entry.name} (${endpointId(entry.id, network)}): ${cause.reason.message}`,
    cause
  )
}

/** A container's networks by name, each with its endpoint on it while attached. */
const endpointsOf = (env: Environment, entry: Entry, attachment: Attachment | undefined, summary: boolean) =>
  Effect.map(env.networks?.list ?? Effect.succeed([]), (records) => {
    const byId = new Map(records.map((r) => [r.Id, r]))
    // Not on networks: the predefined network of its mode, as dockerd lists it (none for container:<id>).
    const joined = entry.networks ?? (() => {
      const mode = entry.stored.HostConfig.NetworkMode ?? ""
      const own = records.find((r) => r.Predefined && r.Name === (mode === "host" ? "host" : mode.startsWith("container:") ? "" : "none"))
      return own === undefined ? [] : [{ id: own.Id, aliases: [] }]
    })()
    return joined.map((network) => {
      const record = byId.get(network.id)
      const endpoint = attachment?.endpoints.find((e) => e.network === network.id)
      return { name: record?.Name ?? network.id, record, endpoint, json: endpointJson(entry.id, record, network, endpoint, summary) }
    })
  })

/** Inspect's `NetworkSettings`: the top-level address fields are the default bridge's, as dockerd's. */
export const networkSettingsJson = (env: Environment, entry: Entry, attachment: Attachment | undefined) =>
  Effect.map(endpointsOf(env, entry, attachment, false), (endpoints) => {
    const bridge = endpoints.find((e) => e.record?.Predefined === true && e.record.Driver === "bridge")?.json
    return {
      Bridge: "",
      SandboxID: attachment === undefined ? "" : crypto.createHash("sha256").update(attachment.netns).digest("hex"),
      HairpinMode: false,
      LinkLocalIPv6Address: "",
      LinkLocalIPv6PrefixLen: 0,
      Ports: attachment === undefined ? {} : portsJson(portsOf(entry.stored).exposed, attachment.ports),
      SandboxKey: attachment?.netns ?? "",
      SecondaryIPAddresses: null,
      SecondaryIPv6Addresses: null,
      EndpointID: bridge?.EndpointID ?? "",
      Gateway: bridge?.Gateway ?? "",
      GlobalIPv6Address: "",
      GlobalIPv6PrefixLen: 0,
      IPAddress: bridge?.IPAddress ?? "",
      IPPrefixLen: bridge?.IPPrefixLen ?? 0,
      IPv6Gateway: "",
      MacAddress: bridge?.MacAddress ?? "",
      Networks: Object.fromEntries(endpoints.map((e) => [e.name, e.json]))
    }
  })

/** `docker ps`'s `Ports` and `NetworkSettings` of a container. */
export const summaryNetworkJson = (env: Environment, entry: Entry, attachment: Attachment | undefined) =>
  Effect.map(endpointsOf(env, entry, attachment, true), (endpoints) => ({
    Ports: attachment === undefined ? [] : summaryPorts(portsOf(entry.stored).exposed, attachment.ports),
    NetworkSettings: { Networks: Object.fromEntries(endpoints.map((e) => [e.name, e.json])) }
  }))

const sharedNamespaceRefusal = (entry: Entry): string => {
  const mode = entry.stored.HostConfig.NetworkMode ?? ""
  return mode === "host"
    ? "container cannot be disconnected from host network or connected to host network"
    : mode === "none"
    ? "container cannot be connected to multiple networks with one of the networks in private (none) mode"
    : "container sharing network namespace with another container or host cannot be connected to any other network"
}

/**
 * `docker network connect` and `disconnect`, as dockerd's: a running container's
 * live attachment gains or loses the network at once (the library's
 * `connect`/`disconnect`), a stopped one's membership only changes, for its next
 * start. Under the container's lock, so a start sees the membership before or after.
 */
export const makeConnections = (env: Environment) => {
  const ns = inNamespace(env)
  const networksOrFail = () =>
    env.networks === undefined ? Effect.fail(badRequest("this engine has no networks")) : Effect.succeed(env.networks)
  const running = (entry: Entry) => Effect.map(trackedOf(env, entry), (t) => isRunning(t?.state.status))
  // The hosts files follow (network/HostsFiles.ts): its attachment's change may have come before its new membership.
  const record = (entry: Entry, networks: ReadonlyArray<ContainerNetwork>) =>
    setLabels(env, entry, networksLabel(networks)).pipe(
      Effect.andThen(Effect.sync(() => void (entry.networks = networks))),
      Effect.andThen(env.hosts.refreshAll([entry.id]))
    )

  const connect = Effect.fn("Engine.networkConnect")(function*(networkRef: string, containerRef: string, config: EndpointRequest | undefined) {
    const networks = yield* networksOrFail()
    const entry = yield* env.store.find(containerRef)
    const network = yield* networks.find(networkRef)
    if (network.Driver === "host") return yield* Effect.fail(badRequest("container cannot be disconnected from host network or connected to host network"))
    if (network.Driver === "null") {
      return yield* Effect.fail(badRequest("container cannot be connected to multiple networks with one of the networks in private (none) mode"))
    }
    const joined = yield* orBadRequest(checkEndpoint(network, config))
    yield* entry.lock.withPermit(Effect.gen(function*() {
      if (entry.networks === undefined) return yield* Effect.fail(badRequest(sharedNamespaceRefusal(entry)))
      const live = yield* running(entry)
      if (live && entry.networks.some((n) => n.id === network.Id)) {
        return yield* Effect.fail(new DockerError({ status: 403, message: `endpoint with name ${entry.name} already exists in network ${network.Name}` }))
      }
      if (live) yield* lib(networks.library.connect(env.options.namespace, entry.id, { network: network.Id, ...(joined.ip === undefined ? {} : { ip: joined.ip }) }))
      yield* record(entry, [...entry.networks.filter((n) => n.id !== network.Id), joined])
    }))
    yield* publishNetwork(env, network, "connect", entry.id)
  })

  const disconnect = Effect.fn("Engine.networkDisconnect")(function*(networkRef: string, containerRef: string) {
    const networks = yield* networksOrFail()
    const entry = yield* env.store.find(containerRef)
    const network = yield* networks.find(networkRef)
    if (network.Driver === "host") return yield* Effect.fail(badRequest("container cannot be disconnected from host network or connected to host network"))
    yield* entry.lock.withPermit(Effect.gen(function*() {
      if (entry.networks === undefined || !entry.networks.some((n) => n.id === network.Id)) {
        return yield* Effect.fail(badRequest(`container ${entry.id} is not connected to the network ${network.Name}`))
      }
      if (yield* running(entry)) yield* lib(networks.library.disconnect(env.options.namespace, entry.id, network.Id))
      yield* record(entry, entry.networks.filter((n) => n.id !== network.Id))
    }))
    yield* publishNetwork(env, network, "disconnect", entry.id)
  })

  return { connect, disconnect, ns }
}

/** Publishes a network event (Docker's: the network's name and type, the container). */
export const publishNetwork = (env: Environment, network: NetworkRecord, action: string, container?: string) =>
  env.eventLog.publish({
    type: "network",
    action,
    id: network.Id,
    attributes: { name: network.Name, type: network.Driver, ...(container === undefined ? {} : { container }) }
  })
