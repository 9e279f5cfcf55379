/**
 * `POST /networks/create` checked, as dockerd's `daemon/network.go`
 * `createNetwork` and libnetwork's bridge driver check it, before anything is
 * made: the driver (bridge only), the name, the IPAM pool (one subnet with its
 * gateway and range inside it, not overlapping another network) and the
 * options. Pure: the taken names and subnets come in, a plan or a
 * `DockerError` comes out, with dockerd's status and words where it has them.
 *
 * Gotchas: dockerd answers several malformed pools with a 500 (`Invalid subnet
 * …`, `failed to allocate gateway …`); here they are 400s with the same words,
 * since the client's input is at fault. A duplicate name is always a 409, as
 * dockerd does with `CheckDuplicate` (and API 1.44+ always): without it dockerd
 * would make a second network of the same name that no name could then find.
 */
import { Result, Schema } from "effect"
import { badRequest, conflict, DockerError, notFound } from "../DockerError.ts"
import { contains, firstHost, formatSubnet, overlaps, parseAddress, parseSubnet, type Subnet, within } from "./Pools.ts"
import { isPredefinedName } from "./Store.ts"

const nullable = <S extends Schema.Top>(schema: S) => Schema.optional(Schema.NullOr(schema))
const StringMap = Schema.Record(Schema.String, Schema.String)

/** The body of `POST /networks/create`. */
export const NetworkCreateBody = Schema.Struct({
  Name: nullable(Schema.String),
  CheckDuplicate: nullable(Schema.Boolean),
  Driver: nullable(Schema.String),
  Scope: nullable(Schema.String),
  Internal: nullable(Schema.Boolean),
  Attachable: nullable(Schema.Boolean),
  Ingress: nullable(Schema.Boolean),
  EnableIPv6: nullable(Schema.Boolean),
  ConfigOnly: nullable(Schema.Boolean),
  ConfigFrom: nullable(Schema.Struct({ Network: nullable(Schema.String) })),
  IPAM: nullable(Schema.Struct({
    Driver: nullable(Schema.String),
    Options: nullable(StringMap),
    Config: nullable(Schema.Array(Schema.Struct({
      Subnet: nullable(Schema.String),
      IPRange: nullable(Schema.String),
      Gateway: nullable(Schema.String),
      AuxiliaryAddresses: nullable(StringMap)
    })))
  })),
  Options: nullable(StringMap),
  Labels: nullable(StringMap)
})
export type NetworkCreateBody = typeof NetworkCreateBody.Type

/** What a checked create makes: the pool when the client gave one (else one is allocated), the bridge's settings. */
export interface CreatePlan {
  readonly name: string
  /** The client's pool; `undefined`: the next free one of the daemon's pools. */
  readonly subnet: Subnet | undefined
  readonly gateway: number | undefined
  readonly ipRange: Subnet | undefined
  /** The client's bridge device (`com.docker.network.bridge.name`). */
  readonly bridge: string | undefined
  readonly mtu: number | undefined
  readonly internal: boolean
  readonly attachable: boolean
  readonly labels: Readonly<Record<string, string>>
  readonly options: Readonly<Record<string, string>>
  /** Options kept but not acted on, said in the response's `Warning`. */
  readonly warning: string
}

/** What a create is checked against. */
export interface Existing {
  readonly names: ReadonlySet<string>
  readonly subnets: ReadonlyArray<Subnet>
  readonly bridges: ReadonlySet<string>
}

const BRIDGE_NAME = "com.docker.network.bridge.name"
const MTU = "com.docker.network.driver.mtu"
/** Options of Docker's bridge driver whose default is all this daemon does: only that value is accepted. */
const FIXED_OPTIONS: Readonly<Record<string, string>> = {
  "com.docker.network.bridge.enable_icc": "true",
  "com.docker.network.bridge.enable_ip_masquerade": "true",
  "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
  "com.docker.network.bridge.default_bridge": "false"
}

const forbidden = (message: string) => new DockerError({ status: 403, message })
const unsupported = (message: string) => new DockerError({ status: 501, message })

const cidr = (text: string | null | undefined, what: string): Result.Result<Subnet | undefined, DockerError> => {
  if (text === undefined || text === null || text === "") return Result.succeed(undefined)
  const parsed = parseSubnet(text)
  return Result.isFailure(parsed)
    ? Result.fail(badRequest(what === "subnet" ? parsed.failure : `Invalid ${what} ${text} : invalid CIDR address: ${text}`))
    : Result.succeed(parsed.success)
}

/** The request checked against the networks there are; the plan, or dockerd's answer. */
export const checkCreate = (body: NetworkCreateBody, existing: Existing): Result.Result<CreatePlan, DockerError> =>
  Result.gen(function*() {
    const name = body.Name ?? ""
    if (name === "") return yield* Result.fail(badRequest("invalid name: a network needs a name"))
    if (isPredefinedName(name)) return yield* Result.fail(forbidden(`operation is not permitted on predefined ${name} network `))
    const driver = body.Driver ?? ""
    if (driver === "host" || driver === "null") {
      return yield* Result.fail(forbidden(`only one instance of "${driver}" network is allowed`))
    }
    if (["overlay", "macvlan", "ipvlan"].includes(driver)) {
      return yield* Result.fail(unsupported(`the ${driver} driver is not supported by effect-containerd: only bridge networks are`))
    }
    if (driver !== "" && driver !== "bridge") return yield* Result.fail(notFound(`plugin "${driver}" not found`))
    if ((body.Scope ?? "") !== "" && body.Scope !== "local") {
      return yield* Result.fail(badRequest(`scope ${body.Scope} is not supported: networks here are local`))
    }
    if (body.EnableIPv6 === true) return yield* Result.fail(badRequest("EnableIPv6 is not supported: networks here are IPv4 only"))
    if (body.Ingress === true) return yield* Result.fail(badRequest("Ingress is not supported: there is no swarm here"))
    if (body.ConfigOnly === true || (body.ConfigFrom?.Network ?? "") !== "") {
      return yield* Result.fail(badRequest("ConfigOnly and ConfigFrom are not supported: they are for swarm networks"))
    }
    if (existing.names.has(name)) return yield* Result.fail(conflict(`network with name ${name} already exists`))
    const ipamDriver = body.IPAM?.Driver ?? ""
    if (ipamDriver !== "" && ipamDriver !== "default") return yield* Result.fail(notFound(`plugin "${ipamDriver}" not found`))
    if (Object.keys(body.IPAM?.Options ?? {}).length > 0) {
      return yield* Result.fail(badRequest("IPAM options are not supported: the default IPAM driver takes none"))
    }
    const pools = body.IPAM?.Config ?? []
    if (pools.length > 1) return yield* Result.fail(forbidden("bridge driver doesn't support multiple subnets"))
    const pool = pools[0]
    if (Object.keys(pool?.AuxiliaryAddresses ?? {}).length > 0) {
      return yield* Result.fail(badRequest("AuxiliaryAddresses are not supported"))
    }
    const subnet = yield* cidr(pool?.Subnet, "subnet")
    const ipRange = yield* cidr(pool?.IPRange, "range")
    const gatewayText = pool?.Gateway ?? ""
    const gateway = gatewayText === "" ? undefined : parseAddress(gatewayText)
    if (gatewayText !== "" && gateway === undefined) return yield* Result.fail(badRequest(`invalid gateway address ${gatewayText}`))
    if (subnet === undefined && (ipRange !== undefined || gateway !== undefined)) {
      return yield* Result.fail(badRequest("a gateway or an IP range needs a subnet (IPAM Config Subnet)"))
    }
    if (subnet !== undefined) {
      if (subnet.prefix > 30) return yield* Result.fail(badRequest(`subnet ${formatSubnet(subnet)} is too small: use at most a /30`))
      if (gateway !== undefined && !contains(subnet, gateway)) {
        return yield* Result.fail(badRequest(`failed to allocate gateway (${gatewayText}): Requested address is out of range`))
      }
      if (ipRange !== undefined && !within(subnet, ipRange)) {
        return yield* Result.fail(badRequest(`Invalid range ${pool?.IPRange}: it is not inside subnet ${formatSubnet(subnet)}`))
      }
      if (existing.subnets.some((taken) => overlaps(taken, subnet))) {
        return yield* Result.fail(forbidden("Pool overlaps with other one on this address space"))
      }
    }
    const options = body.Options ?? {}
    const ignored: Array<string> = []
    for (const [key, value] of Object.entries(options)) {
      if (key === BRIDGE_NAME || key === MTU) continue
      const fixed = FIXED_OPTIONS[key]
      if (fixed !== undefined && value !== fixed) {
        return yield* Result.fail(badRequest(`network option ${key}=${value} is not supported: only ${fixed} is`))
      }
      if (fixed === undefined) ignored.push(key)
    }
    const bridge = options[BRIDGE_NAME]
    if (bridge !== undefined && (!/^[A-Za-z0-9_.-]{1,15}$/.test(bridge) || existing.bridges.has(bridge))) {
      return yield* Result.fail(badRequest(`invalid ${BRIDGE_NAME} ${JSON.stringify(bridge)}: use an unused device name of at most 15 characters`))
    }
    const mtuText = options[MTU]
    const mtu = mtuText === undefined ? undefined : Number(mtuText)
    if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)) {
      return yield* Result.fail(badRequest(`invalid ${MTU} ${JSON.stringify(mtuText)}: use a number from 68 to 65535`))
    }
    return {
      name,
      subnet,
      gateway: gateway ?? (subnet === undefined ? undefined : firstHost(subnet)),
      ipRange,
      bridge,
      mtu,
      internal: body.Internal ?? false,
      attachable: body.Attachable ?? false,
      labels: body.Labels ?? {},
      options,
      warning: ignored.length === 0 ? "" : `network options ignored (effect-containerd does not act on them): ${ignored.join(", ")}`
    }
  })
