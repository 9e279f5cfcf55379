/**
 * Address pools for bridge networks, as libnetwork's `ipamutils` and default
 * IPAM give them out: a network created without a subnet takes the next block
 * of the pools that overlaps neither another network nor a route of the host
 * (`ip -j route`), so our bridges never shadow a network the host reaches.
 *
 * Docker's defaults are 172.17.0.0/16 (the default bridge) and then
 * 172.18.0.0/16 … 172.31.0.0/16 as /16s and 192.168.0.0/16 in /20s. The
 * daemon's `--default-address-pool base=<cidr>,size=<n>` (repeatable) replaces
 * them, and `--bip <address/prefix>` fixes the default bridge, as dockerd's.
 *
 * Pure: IPv4 only (the daemon has no IPv6 networks), addresses as unsigned
 * 32-bit numbers; every parser answers dockerd's words for bad input.
 */
import { Result } from "effect"
import * as crypto from "node:crypto"

/** An IPv4 network: its first address (masked) and its prefix length. */
export interface Subnet {
  readonly base: number
  readonly prefix: number
}

/** A pool to split: blocks of `/size` out of `base`. */
export interface Pool {
  readonly base: Subnet
  readonly size: number
}

/** A dotted quad as a number; `undefined` when it is not one. */
export const parseAddress = (text: string): number | undefined => {
  const parts = text.split(".")
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255)) return undefined
  return parts.reduce((n, p) => n * 256 + Number(p), 0)
}

/** A number as a dotted quad. */
export const formatAddress = (n: number): string => [24, 16, 8, 0].map((shift) => (n >>> shift) & 255).join(".")

const maskOf = (prefix: number): number => prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0

/** `10.1.2.3/24` split: the address as given and the prefix; `undefined` when malformed. */
const splitCidr = (text: string): { readonly address: number; readonly prefix: number } | undefined => {
  const match = /^([^/]+)\/(\d{1,2})$/.exec(text)
  if (match === null || Number(match[2]) > 32) return undefined
  const address = parseAddress(match[1]!)
  return address === undefined ? undefined : { address, prefix: Number(match[2]) }
}

/** A subnet in CIDR notation, masked (`10.1.2.3/24` is `10.1.2.0/24`, as Go's `net.ParseCIDR`); dockerd's words when malformed. */
export const parseSubnet = (text: string): Result.Result<Subnet, string> => {
  const split = splitCidr(text)
  return split === undefined
    ? Result.fail(`Invalid subnet ${text} : invalid CIDR address: ${text}`)
    : Result.succeed({ base: (split.address & maskOf(split.prefix)) >>> 0, prefix: split.prefix })
}

/** A subnet in CIDR notation. */
export const formatSubnet = (subnet: Subnet): string => `${formatAddress(subnet.base)}/${subnet.prefix}`

const lastOf = (subnet: Subnet): number => (subnet.base + 2 ** (32 - subnet.prefix) - 1) >>> 0

/** Whether two subnets share an address. */
export const overlaps = (a: Subnet, b: Subnet): boolean => a.base <= lastOf(b) && b.base <= lastOf(a)

/** Whether an address is in a subnet. */
export const contains = (subnet: Subnet, address: number): boolean => address >= subnet.base && address <= lastOf(subnet)

/** Whether `inner` lies wholly in `outer`. */
export const within = (outer: Subnet, inner: Subnet): boolean => contains(outer, inner.base) && contains(outer, lastOf(inner))

/** The subnet's first host: Docker's default gateway. */
export const firstHost = (subnet: Subnet): number => (subnet.base + 1) >>> 0

const pool = (cidr: string, size: number): Pool => ({ base: Result.getOrThrow(parseSubnet(cidr)), size })

/** libnetwork's local-scope defaults: 172.17–31.0.0/16 as /16s, then 192.168.0.0/16 as /20s. */
export const DEFAULT_POOLS: ReadonlyArray<Pool> = [
  ...Array.from({ length: 15 }, (_, i) => pool(`172.${17 + i}.0.0/16`, 16)),
  pool("192.168.0.0/16", 20)
]

/**
 * One `--default-address-pool` value, as dockerd reads it: `base=<cidr>,size=<n>`
 * (in either order), the size at least the base's prefix and at most 32.
 */
export const parseAddressPool = (text: string): Result.Result<Pool, string> => {
  const fields = new Map(text.split(",").map((field) => {
    const at = field.indexOf("=")
    return [at < 0 ? field : field.slice(0, at).trim().toLowerCase(), at < 0 ? "" : field.slice(at + 1).trim()] as const
  }))
  const unknown = [...fields.keys()].find((key) => key !== "base" && key !== "size")
  if (unknown !== undefined) return Result.fail(`--default-address-pool ${text}: unexpected key '${unknown}' (use base=<cidr>,size=<n>)`)
  const base = parseSubnet(fields.get("base") ?? "")
  if (Result.isFailure(base)) return Result.fail(`--default-address-pool ${text}: ${base.failure}`)
  const size = Number(fields.get("size") ?? "")
  if (!Number.isInteger(size) || size < base.success.prefix || size > 32) {
    return Result.fail(`--default-address-pool ${text}: size must be a number from the base's prefix (${base.success.prefix}) to 32`)
  }
  return Result.succeed({ base: base.success, size })
}

/** The default bridge's subnet and gateway from `--bip` (`10.9.0.1/24`: the gateway and the prefix, as dockerd's). */
export const parseBip = (text: string): Result.Result<{ readonly subnet: Subnet; readonly gateway: number }, string> => {
  const split = splitCidr(text)
  if (split === undefined) return Result.fail(`--bip ${text}: invalid CIDR address (use the bridge's address and prefix, such as 10.9.0.1/24)`)
  const subnet = { base: (split.address & maskOf(split.prefix)) >>> 0, prefix: split.prefix }
  if (split.prefix > 30 || split.address === subnet.base || split.address === lastOf(subnet)) {
    return Result.fail(`--bip ${text}: the bridge's address must be a host address of a subnet of at most /30`)
  }
  return Result.succeed({ subnet, gateway: split.address })
}

/**
 * The first block of `pools` (in their order) that overlaps none of `taken`
 * (the networks' subnets and the host's routes); none when every block is taken.
 */
export const allocate = (pools: ReadonlyArray<Pool>, taken: ReadonlyArray<Subnet>): Subnet | undefined => {
  for (const { base, size } of pools) {
    const step = 2 ** (32 - size)
    for (let at = base.base; at <= lastOf(base); at += step) {
      const block = { base: at >>> 0, prefix: size }
      if (!taken.some((t) => overlaps(t, block))) return block
    }
  }
  return undefined
}

/** dockerd's words when every pool is taken. */
export const NO_POOL = "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"

/** The subnets of the host's routes, from `ip -j route` output (the default route is no subnet). */
export const routeSubnets = (json: string): ReadonlyArray<Subnet> => {
  const routes = Result.getOrElse(Result.try(() => JSON.parse(json) as unknown), () => [])
  if (!Array.isArray(routes)) return []
  return routes.flatMap((route: unknown) => {
    const dst = typeof route === "object" && route !== null ? (route as { dst?: unknown }).dst : undefined
    if (typeof dst !== "string" || dst === "default") return []
    const subnet = parseSubnet(dst.includes("/") ? dst : `${dst}/32`)
    return Result.isSuccess(subnet) ? [subnet.success] : []
  })
}

/** A user network's bridge device: `ec-` and the network id's first 12 characters (15 in all, Linux's IFNAMSIZ - 1). */
export const bridgeName = (networkId: string): string => `ec-${networkId.slice(0, 12)}`

/**
 * The default bridge's device when `--bridge-name` does not name one: `ec0-`
 * and 8 hex characters of the data root's hash, so two daemons on one host
 * (and a dockerd's `docker0`) never share a bridge.
 */
export const defaultBridgeName = (dataRoot: string): string =>
  `ec0-${crypto.createHash("sha256").update(dataRoot).digest("hex").slice(0, 8)}`

/** Whether a name can be a Linux network device (at most 15 characters, no `/`, whitespace or `:`). */
export const isDeviceName = (name: string): boolean => /^[A-Za-z0-9_.-]{1,15}$/.test(name) && name !== "." && name !== ".."
