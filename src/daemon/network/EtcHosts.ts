/**
 * A container's /etc/hosts, pure: dockerd 20.10's file (libnetwork's
 * `etchosts`: the localhost and IPv6 lines, the `--add-host` lines, then the
 * container's own address and hostname once it is on a network), followed by
 * a section of ours naming the containers on its user networks — what
 * dockerd's embedded DNS server answers (names, `--network-alias`es, compose's
 * service aliases, short ids), written here instead (see HostsFiles.ts).
 */
import { Result } from "effect"
import { isIpAddress } from "./ResolvConf.ts"

/** One line: an address and the names it has. */
export interface HostsEntry {
  readonly ip: string
  /** Space-separated, as the line has them. */
  readonly names: string
}

/** The lines every container's file starts with, as dockerd's `defaultContent`. */
export const DEFAULT_ENTRIES: ReadonlyArray<HostsEntry> = [
  { ip: "127.0.0.1", names: "localhost" },
  { ip: "::1", names: "localhost ip6-localhost ip6-loopback" },
  { ip: "fe00::0", names: "ip6-localnet" },
  { ip: "ff00::0", names: "ip6-mcastprefix" },
  { ip: "ff02::1", names: "ip6-allnodes" },
  { ip: "ff02::2", names: "ip6-allrouters" }
]

/** `--add-host NAME:host-gateway`: the default bridge's gateway, as dockerd's `HostGatewayIP`. */
export const HOST_GATEWAY = "host-gateway"

/** The first and last line of our section; what lies between is rewritten as members come and go. */
export const SECTION_START = "# effect-containerd: containers on this container's networks (kept up to date by the daemon)"
export const SECTION_END = "# effect-containerd: end"

/** An `ExtraHosts` entry (`name:ip`, split at the first colon so an IPv6 address stays whole), checked as dockerd's `ValidateExtraHost`. */
export const parseExtraHost = (value: string): Result.Result<{ readonly name: string; readonly ip: string }, string> => {
  const colon = value.indexOf(":")
  // A line break would write a line of the client's own; dockerd takes it, we do not.
  if (colon <= 0 || /[\n\r]/.test(value)) return Result.fail(`bad format for add-host: ${JSON.stringify(value)}`)
  const ip = value.slice(colon + 1)
  if (ip !== HOST_GATEWAY && !isIpAddress(ip.trim())) return Result.fail(`invalid IP address in add-host: ${JSON.stringify(ip)}`)
  return Result.succeed({ name: value.slice(0, colon), ip })
}

/** The container's own line: its address, then `host.domain host` (a dotted hostname counts as a FQDN), as dockerd's `updateHostsFile`. */
export const ownEntry = (ip: string, hostname: string, domainname: string): HostsEntry => {
  const fqdn = domainname === "" ? hostname : `${hostname}.${domainname}`
  const dot = fqdn.indexOf(".")
  return { ip, names: dot < 0 ? fqdn : `${fqdn} ${fqdn.slice(0, dot)}` }
}

/** What a container's file holds. */
export interface HostsContent {
  /** `--add-host` entries, `host-gateway` already replaced. */
  readonly extra: ReadonlyArray<HostsEntry>
  /** Its own line, once it has an address. */
  readonly own?: HostsEntry | undefined
  /** The containers on its user networks; no section when absent (the default bridge, none, host). */
  readonly members?: ReadonlyArray<HostsEntry> | undefined
}

const line = (entry: HostsEntry) => `${entry.ip}\t${entry.names}\n`

/** The file. */
export const renderHosts = (content: HostsContent): string =>
  [
    ...DEFAULT_ENTRIES.map(line),
    ...content.extra.map(line),
    ...(content.own === undefined ? [] : [line(content.own)]),
    ...(content.members === undefined ? [] : [`${SECTION_START}\n`, ...content.members.map(line), `${SECTION_END}\n`])
  ].join("")

/** A network member, as the others' files name it. */
export interface Member {
  readonly ip: string
  /** Its name (without Docker's leading `/`). */
  readonly name: string
  readonly id: string
  /** Its aliases on that network (`--network-alias`, compose's service name). */
  readonly aliases: ReadonlyArray<string>
}

/**
 * The section's lines: one per member address, its name, aliases and short id
 * (each name once), ordered by address so the file does not change with the
 * order members were seen in.
 */
export const memberEntries = (members: ReadonlyArray<Member>): ReadonlyArray<HostsEntry> => {
  const byIp = new Map<string, Array<string>>()
  for (const member of members) {
    const names = byIp.get(member.ip) ?? []
    for (const name of [member.name, ...member.aliases, member.id.slice(0, 12)]) {
      if (name !== "" && !names.includes(name)) names.push(name)
    }
    byIp.set(member.ip, names)
  }
  return [...byIp.entries()]
    .sort(([a], [b]) => compareIps(a, b))
    .map(([ip, names]) => ({ ip, names: names.join(" ") }))
}

/** IPv4 addresses in numeric order (others after them, as strings). */
const compareIps = (a: string, b: string): number => {
  const key = (ip: string) => /^\d+\.\d+\.\d+\.\d+$/.test(ip) ? ip.split(".").reduce((n, part) => n * 256 + Number(part), 0) : Infinity
  const [ka, kb] = [key(a), key(b)]
  return ka !== kb ? ka - kb : a < b ? -1 : a > b ? 1 : 0
}
