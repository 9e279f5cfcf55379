/**
 * Docker's networks on the library's CNI `Networks`: the `DockerNetworks`
 * service, as dockerd's `daemon/network.go` over libnetwork. It keeps the
 * networks (`network/Store.ts`), gives each new one a pool (`network/Pools.ts`),
 * checks creates (`network/Create.ts`) and has the library define and remove
 * their bridges.
 *
 * Every daemon has three predefined networks, as dockerd: `bridge` (the
 * default network, its id kept across restarts, its subnet `--bip` or the first
 * free pool, its device `--bridge-name` or one derived from the data root;
 * none with `--bridge none`), `host` and `none`. At every start each stored bridge network is defined
 * again (idempotent in the library), so networks survive restarts and reboots.
 *
 * Creates and removals are serialized (one pool allocation at a time); which
 * containers use a network is what the library's live attachments say, so a
 * network is "in use" exactly while a container on it runs, as in dockerd
 * (a stopped container keeps only its intent to join).
 */
import { Context, Effect, Layer, Result, Semaphore } from "effect"
import { execFile } from "node:child_process"
import * as crypto from "node:crypto"
import { type Attachment, Networks } from "../services/Networks.ts"
import { DockerError, fromLibrary, notFound } from "./DockerError.ts"
import { EventLog } from "./EventLog.ts"
import { checkCreate, type NetworkCreateBody } from "./network/Create.ts"
import {
  allocate,
  DEFAULT_POOLS,
  formatAddress,
  formatSubnet,
  NO_POOL,
  type Pool,
  parseAddress,
  parseSubnet,
  routeSubnets,
  type Subnet,
  bridgeName as userBridgeName
} from "./network/Pools.ts"
import { definitionOf, forget, loadAll, type NetworkRecord, networksDir, save } from "./network/Store.ts"

/** What the daemon's networks are made with (its flags). */
export interface DockerNetworksOptions {
  readonly dataRoot: string
  /** The containerd namespace whose attachments count as the daemon's containers. */
  readonly namespace: string
  /** `--default-address-pool`s; Docker's defaults when empty. */
  readonly pools?: ReadonlyArray<Pool> | undefined
  /** `--bip`: the default bridge's subnet and gateway. */
  readonly bip?: { readonly subnet: Subnet; readonly gateway: number } | undefined
  /** The default bridge's device; none: no default bridge (dockerd's `--bridge=none`), containers asking for it get no network. */
  readonly bridgeName: string | undefined
}

/** A container's endpoint on one of the daemon's networks, from its live attachment. */
export interface LiveEndpoint {
  readonly containerId: string
  readonly attachment: Attachment
  readonly endpoint: Attachment["endpoints"][number]
}

/** The service. */
export interface DockerNetworksShape {
  /** Every network, predefined ones first. */
  readonly list: Effect.Effect<ReadonlyArray<NetworkRecord>>
  /** By full id, then name, then unique id prefix (dockerd's `FindNetwork`); 404 `network X not found`. */
  readonly find: (ref: string) => Effect.Effect<NetworkRecord, DockerError>
  readonly create: (body: NetworkCreateBody) => Effect.Effect<{ readonly Id: string; readonly Warning: string }, DockerError>
  /** 403 for a predefined one or one in use (dockerd's words), 404 for none. */
  readonly remove: (ref: string) => Effect.Effect<void, DockerError>
  /** Removes every network `select`ed that is not predefined and not in use; their names. */
  readonly prune: (select: (record: NetworkRecord) => boolean) => Effect.Effect<ReadonlyArray<string>, DockerError>
  /** The live endpoints of the daemon's containers, by network id. */
  readonly endpoints: Effect.Effect<ReadonlyMap<string, ReadonlyArray<LiveEndpoint>>>
  /** The library's networks (attach, connect, the attachments). */
  readonly library: Networks["Service"]
}

const forbidden = (message: string) => new DockerError({ status: 403, message })

/** RFC 3339 with nanoseconds, as Go's `time.Time` marshals (the milliseconds padded). */
const created = () => new Date().toISOString().replace("Z", "000000Z")

const newId = () => crypto.randomBytes(32).toString("hex")

/** The host's routes' subnets (`ip -j route`); none if `ip` cannot say (then only our own networks are avoided). */
const hostRoutes = Effect.callback<ReadonlyArray<Subnet>>((resume) => {
  const child = execFile("ip", ["-j", "route"], { timeout: 10_000 }, (error, stdout) =>
    resume(error === null ? Effect.succeed(routeSubnets(stdout)) : Effect.as(Effect.logWarning(`ip -j route: ${error.message}`), [])))
  return Effect.sync(() => child.kill())
})

const subnetOf = (record: NetworkRecord): Subnet | undefined =>
  record.Subnet === undefined ? undefined : Result.getOrUndefined(parseSubnet(record.Subnet))

const predefined = (name: "host" | "none"): NetworkRecord => ({
  Name: name,
  Id: newId(),
  Created: created(),
  Driver: name === "host" ? "host" : "null",
  Internal: false,
  Attachable: false,
  Options: {},
  Labels: {},
  IPAM: { Driver: "default", Options: null, Config: [] },
  Predefined: true
})

/** The default bridge as dockerd shows it, on `subnet` with `gateway`. */
const defaultBridge = (id: string, at: string, device: string, subnet: Subnet, gateway: number): NetworkRecord => ({
  Name: "bridge",
  Id: id,
  Created: at,
  Driver: "bridge",
  Internal: false,
  Attachable: false,
  Options: {
    "com.docker.network.bridge.default_bridge": "true",
    "com.docker.network.bridge.enable_icc": "true",
    "com.docker.network.bridge.enable_ip_masquerade": "true",
    "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
    "com.docker.network.bridge.name": device,
    "com.docker.network.driver.mtu": "1500"
  },
  Labels: {},
  IPAM: { Driver: "default", Options: null, Config: [{ Subnet: formatSubnet(subnet), Gateway: formatAddress(gateway) }] },
  Predefined: true,
  Bridge: device,
  Subnet: formatSubnet(subnet),
  Gateway: formatAddress(gateway)
})

const makeDockerNetworks = Effect.fnUntraced(function*(options: DockerNetworksOptions) {
  const library = yield* Networks
  const eventLog = yield* EventLog
  /** Docker's network events: the network by id, its name and driver. */
  const publish = (record: NetworkRecord, action: "create" | "destroy") =>
    eventLog.publish({ type: "network", action, id: record.Id, attributes: { name: record.Name, type: record.Driver } })
  const dir = networksDir(options.dataRoot)
  const pools = options.pools !== undefined && options.pools.length > 0 ? options.pools : DEFAULT_POOLS
  const records = new Map<string, NetworkRecord>()
  const lock = Semaphore.makeUnsafe(1)

  /** A free subnet of the pools, avoiding every network's but `except`'s and the host's routes. */
  const freeSubnet = (except?: string) =>
    Effect.map(hostRoutes, (routes) =>
      allocate(pools, [
        ...[...records.values()].flatMap((r) => r.Id === except ? [] : [subnetOf(r)].filter((s) => s !== undefined)),
        ...routes
      ]))

  const define = (record: NetworkRecord) => {
    const definition = definitionOf(record)
    if (definition === undefined) return Effect.void
    // A changed definition of the same network (a new --bip): the old one goes first.
    return library.define(definition).pipe(
      Effect.catchIf(
        (error) => error.reason._tag === "AlreadyExists",
        () => Effect.andThen(library.remove(definition.name), library.define(definition))
      ),
      Effect.mapError((error) => fromLibrary(error, `network ${record.Name}`))
    )
  }

  for (const record of yield* loadAll(dir)) records.set(record.Id, record)
  const stored = (name: string) => [...records.values()].find((r) => r.Predefined && r.Name === name)
  for (const name of ["host", "none"] as const) {
    if (stored(name) === undefined) {
      const record = predefined(name)
      yield* save(dir, record)
      records.set(record.Id, record)
    }
  }
  // The default bridge: its id kept, its subnet --bip's, else what it had, else the first free pool.
  const old = stored("bridge")
  if (options.bridgeName === undefined) {
    // Disabled (--bridge none), as dockerd drops it then: its definition goes with its record.
    if (old !== undefined) {
      // Still in use (containers running on it): the start-up reconciliation below, or a later one, removes it.
      yield* Effect.ignore(library.remove(old.Id))
      yield* forget(dir, old.Id)
      records.delete(old.Id)
    }
  } else {
    const oldSubnet = old === undefined ? undefined : subnetOf(old)
    const place = options.bip ?? (oldSubnet !== undefined && old?.Gateway !== undefined && old.Bridge === options.bridgeName
      ? { subnet: oldSubnet, gateway: parseAddress(old.Gateway) ?? oldSubnet.base + 1 }
      : undefined)
    const subnet = place?.subnet ?? (yield* freeSubnet(old?.Id))
    if (subnet === undefined) return yield* Effect.die(new Error(`the default bridge: ${NO_POOL}`))
    const bridge = defaultBridge(old?.Id ?? newId(), old?.Created ?? created(), options.bridgeName, subnet, place?.gateway ?? subnet.base + 1)
    // Renamed: the old device's definition goes (if in use, redefining it below replaces it once free).
    if (old !== undefined && old.Bridge !== bridge.Bridge) yield* Effect.ignore(library.remove(old.Id))
    yield* save(dir, bridge)
    records.set(bridge.Id, bridge)
  }
  // Every bridge network again: the library's definitions survive in its files, the bridges and rules not a reboot.
  for (const record of records.values()) {
    yield* define(record).pipe(Effect.catch((error) => Effect.logError(`network ${record.Name} could not be defined: ${error.message}`)))
  }
  // What the library still defines with no record of ours (a removal that failed: still in use, or a
  // daemon killed between the two steps) goes now, or at a later start once it is unused.
  for (const definition of yield* library.definitions) {
    if (!records.has(definition.name)) {
      yield* library.remove(definition.name).pipe(
        Effect.catch((error) => Effect.logWarning(`network ${definition.name} of an earlier run is kept for now: ${error.message}`))
      )
    }
  }

  const all = () => [...records.values()].sort((a, b) => Number(b.Predefined) - Number(a.Predefined) || a.Created.localeCompare(b.Created))

  const find = (ref: string): Effect.Effect<NetworkRecord, DockerError> =>
    Effect.suspend(() => {
      const list = all()
      const exact = list.find((r) => r.Id === ref) ?? list.find((r) => r.Name === ref)
      if (exact !== undefined) return Effect.succeed(exact)
      const prefixed = ref === "" ? [] : list.filter((r) => r.Id.startsWith(ref))
      if (prefixed.length === 1) return Effect.succeed(prefixed[0]!)
      if (prefixed.length > 1) {
        return Effect.fail(new DockerError({ status: 400, message: `network ${ref} is ambiguous (${prefixed.length} matches found based on ID prefix)` }))
      }
      return Effect.fail(notFound(`network ${ref} not found`))
    })

  const removeRecord = (record: NetworkRecord) =>
    Effect.gen(function*() {
      yield* library.remove(record.Id).pipe(
        Effect.catchIf((error) => error.reason._tag === "NotFound", () => Effect.void),
        Effect.mapError((error) =>
          error.reason._tag === "FailedPrecondition"
            ? forbidden(`error while removing network: network ${record.Name} id ${record.Id} has active endpoints`)
            : fromLibrary(error, `network ${record.Name}`))
      )
      yield* forget(dir, record.Id)
      records.delete(record.Id)
      yield* publish(record, "destroy")
    })

  const create = Effect.fn("DockerNetworks.create")(function*(body: NetworkCreateBody) {
    return yield* lock.withPermit(Effect.gen(function*() {
      const list = all()
      const plan = yield* Result.match(checkCreate(body, {
        names: new Set(list.map((r) => r.Name)),
        subnets: list.flatMap((r) => [subnetOf(r)].filter((s) => s !== undefined)),
        bridges: new Set(list.flatMap((r) => r.Bridge === undefined ? [] : [r.Bridge]))
      }), { onSuccess: Effect.succeed, onFailure: Effect.fail })
      const subnet = plan.subnet ?? (yield* freeSubnet())
      if (subnet === undefined) return yield* Effect.fail(notFound(NO_POOL))
      const gateway = plan.gateway ?? subnet.base + 1
      const id = newId()
      const record: NetworkRecord = {
        Name: plan.name,
        Id: id,
        Created: created(),
        Driver: "bridge",
        Internal: plan.internal,
        Attachable: plan.attachable,
        Options: plan.options,
        Labels: plan.labels,
        IPAM: {
          Driver: "default",
          Options: body.IPAM?.Options ?? null,
          // As dockerd shows it: the client's pool as given, or the allocated one with its gateway.
          Config: [plan.subnet === undefined
            ? { Subnet: formatSubnet(subnet), Gateway: formatAddress(gateway) }
            : {
              Subnet: formatSubnet(subnet),
              ...(plan.ipRange === undefined ? {} : { IPRange: formatSubnet(plan.ipRange) }),
              ...(body.IPAM?.Config?.[0]?.Gateway ? { Gateway: formatAddress(gateway) } : {})
            }]
        },
        Predefined: false,
        Bridge: plan.bridge ?? userBridgeName(id),
        Subnet: formatSubnet(subnet),
        Gateway: formatAddress(gateway),
        ...(plan.ipRange === undefined ? {} : { IPRange: formatSubnet(plan.ipRange) }),
        ...(plan.mtu === undefined ? {} : { Mtu: plan.mtu })
      }
      yield* define(record)
      // Unsaved: the definition goes again (nothing uses it yet; else the start-up reconciliation removes it).
      yield* save(dir, record).pipe(Effect.onError(() => Effect.ignore(library.remove(id))))
      records.set(id, record)
      yield* publish(record, "create")
      return { Id: id, Warning: plan.warning }
    }))
  })

  const remove = Effect.fn("DockerNetworks.remove")(function*(ref: string) {
    const record = yield* find(ref)
    if (record.Predefined) return yield* Effect.fail(forbidden(`${record.Name} is a pre-defined network and cannot be removed`))
    yield* lock.withPermit(removeRecord(record))
  })

  const prune = Effect.fn("DockerNetworks.prune")(function*(select: (record: NetworkRecord) => boolean) {
    const removed: Array<string> = []
    for (const record of all().filter((r) => !r.Predefined && select(r))) {
      const gone = yield* lock.withPermit(removeRecord(record)).pipe(
        Effect.as(true),
        Effect.catchIf((error) => error.status === 403, () => Effect.succeed(false))
      )
      if (gone) removed.push(record.Name)
    }
    return removed
  })

  const endpoints = Effect.map(library.attachments, (attachments) => {
    const byNetwork = new Map<string, Array<LiveEndpoint>>()
    for (const attachment of attachments) {
      if (attachment.namespace !== options.namespace) continue
      for (const endpoint of attachment.endpoints) {
        const list = byNetwork.get(endpoint.network) ?? []
        list.push({ containerId: attachment.containerId, attachment, endpoint })
        byNetwork.set(endpoint.network, list)
      }
    }
    return byNetwork as ReadonlyMap<string, ReadonlyArray<LiveEndpoint>>
  })

  return DockerNetworks.of({ list: Effect.sync(all), find, create, remove, prune, endpoints, library })
})

/** Docker's networks over the library's. */
export class DockerNetworks extends Context.Service<DockerNetworks, DockerNetworksShape>()("effect-containerd/daemon/DockerNetworks") {
  /** The networks of a daemon, defined again in the library at build. */
  static readonly layer = (options: DockerNetworksOptions): Layer.Layer<DockerNetworks, DockerError, Networks | EventLog> =>
    Layer.effect(DockerNetworks, makeDockerNetworks(options))
}
