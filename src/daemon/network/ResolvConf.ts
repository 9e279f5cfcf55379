/**
 * A container's /etc/resolv.conf, by dockerd 20.10's rules (libnetwork's
 * `resolvconf` package and `sandbox_dns_unix.go`), pure: the host's file with
 * its localhost nameservers removed (they mean the container's own loopback),
 * or, when the container asks for `--dns`, `--dns-search` or `--dns-option`,
 * a file built of those with the host's parts for what it did not ask. A
 * `--network host` container without them gets the host's file as it is.
 *
 * Gotchas:
 * - When no nameserver is left, dockerd (and this) falls back to Google's
 *   public servers (8.8.8.8, 8.8.4.4); `fallbackUsed` says so, for the log.
 * - dockerd points containers on user networks at its embedded DNS server
 *   (127.0.0.11). We run none (names resolve through /etc/hosts, see
 *   HostsFiles.ts), so they get the host's nameservers as on the default bridge.
 */
import { Result } from "effect"
import * as net from "node:net"

/** The loopback nameserver systemd-resolved puts in /etc/resolv.conf; its upstream file is used instead, as dockerd does. */
const SYSTEMD_STUB = "127.0.0.53"
/** Where systemd-resolved writes the upstream servers. */
export const SYSTEMD_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"

const IPV4_BLOCK = "(25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
const IPV4 = `(${IPV4_BLOCK}\\.){3}${IPV4_BLOCK}`
// As libnetwork's: a superset of IPv6, enough to tell a nameserver line.
const IPV6 = "([0-9A-Fa-f]{0,4}:){2,7}([0-9A-Fa-f]{0,4})(%\\w+)?"
const LOCALHOST = "((127\\.([0-9]{1,3}\\.){2}[0-9]{1,3})|(::1)$)"

const localhostLine = new RegExp(`^nameserver\\s+${LOCALHOST}\\s*\\n*`, "gm")
const ipv6Line = new RegExp(`^nameserver\\s+${IPV6}\\s*\\n*`, "gm")
const nameserverOf = {
  any: new RegExp(`^\\s*nameserver\\s*((${IPV4})|(${IPV6}))\\s*$`),
  ipv4: new RegExp(`^\\s*nameserver\\s*((${IPV4}))\\s*$`),
  ipv6: new RegExp(`^\\s*nameserver\\s*((${IPV6}))\\s*$`)
}
const searchLine = /^\s*search\s*(([^\s]+\s*)*)$/
const optionsLine = /^\s*options\s*(([^\s]+\s*)*)$/

const DEFAULT_IPV4 = ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
const DEFAULT_IPV6 = ["nameserver 2001:4860:4860::8888", "nameserver 2001:4860:4860::8844"]

/** The lines of a file, each without its comment (from `#` on). */
const lines = (content: string): ReadonlyArray<string> =>
  content.split("\n").map((line) => line.includes("#") ? line.slice(0, line.indexOf("#")) : line)

/** The nameservers a file lists, of one address family or both. */
export const nameservers = (content: string, kind: keyof typeof nameserverOf = "any"): ReadonlyArray<string> =>
  lines(content).flatMap((line) => {
    const match = nameserverOf[kind].exec(line)
    return match === null ? [] : [match[1]!]
  })

/** The words of the last line matching `re` (resolv.conf's rule: the last `search` or `options` line wins). */
const lastWords = (content: string, re: RegExp): ReadonlyArray<string> =>
  lines(content).reduce<ReadonlyArray<string>>((found, line) => {
    const match = re.exec(line)
    return match === null ? found : (match[1] ?? "").split(/\s+/).filter((w) => w !== "")
  }, [])

/** The search domains of a file. */
export const searchDomains = (content: string): ReadonlyArray<string> => lastWords(content, searchLine)

/** The options of a file. */
export const options = (content: string): ReadonlyArray<string> => lastWords(content, optionsLine)

/** The host file to read: systemd-resolved's upstream one when /etc/resolv.conf names only its stub, as dockerd's `Path()`. */
export const hostResolvConfPath = (etcResolvConf: string): string => {
  const servers = nameservers(etcResolvConf)
  return servers.length === 1 && servers[0] === SYSTEMD_STUB ? SYSTEMD_RESOLV_CONF : "/etc/resolv.conf"
}

/** A filtered file, and whether the public fallback servers had to be added. */
export interface Filtered {
  readonly content: string
  readonly fallbackUsed: boolean
}

/**
 * dockerd's `FilterResolvDNS`: the localhost nameservers removed (and the IPv6
 * ones without `ipv6`); Google's public servers appended when none is left.
 */
export const filter = (content: string, ipv6: boolean): Filtered => {
  let cleaned = content.replace(localhostLine, "")
  if (!ipv6) cleaned = cleaned.replace(ipv6Line, "")
  if (nameservers(cleaned).length > 0) return { content: cleaned, fallbackUsed: false }
  const servers = ipv6 ? [...DEFAULT_IPV4, ...DEFAULT_IPV6] : DEFAULT_IPV4
  return { content: `${cleaned}\n${servers.join("\n")}`, fallbackUsed: true }
}

/** What a container asks of its resolv.conf (`--dns`, `--dns-search`, `--dns-option`). */
export interface DnsSettings {
  readonly servers: ReadonlyArray<string>
  readonly search: ReadonlyArray<string>
  readonly options: ReadonlyArray<string>
}

/** Whether a container asks anything of its resolv.conf. */
export const asksDns = (dns: DnsSettings): boolean => dns.servers.length + dns.search.length + dns.options.length > 0

/** dockerd's `Build`: `search` (unless it is only "."), the nameservers, `options`. */
export const build = (dns: DnsSettings): string => {
  const search = dns.search.join(" ")
  const opts = dns.options.join(" ")
  return [
    ...(dns.search.length > 0 && search.replace(/^ +| +$/g, "") !== "." ? [`search ${search}\n`] : []),
    ...dns.servers.map((server) => `nameserver ${server}\n`),
    ...(dns.options.length > 0 && opts.trim() !== "" ? [`options ${opts}\n`] : [])
  ].join("")
}

/** How a container is networked, as its resolv.conf depends on it. */
export type ResolvMode = "host" | "none" | "bridge"

/** The host's files a container's resolv.conf is made from. */
export interface HostResolvConf {
  /** /etc/resolv.conf, verbatim ("" when it does not exist). */
  readonly etc: string
  /** The file `hostResolvConfPath` names (the same as `etc` unless systemd-resolved manages it). */
  readonly effective: string
}

/**
 * A container's resolv.conf. `host` without settings: the host's file as it is.
 * With settings: built, each part the container's or else the host's (its
 * nameservers unfiltered, as dockerd). Otherwise the host's without localhost
 * nameservers; a container on a bridge network has no IPv6, so its IPv6
 * nameservers go too (dockerd filters again when the endpoint joins).
 */
export const containerResolvConf = (host: HostResolvConf, mode: ResolvMode, dns: DnsSettings): Filtered => {
  if (mode === "host" && !asksDns(dns)) return { content: host.etc, fallbackUsed: false }
  if (asksDns(dns)) {
    return {
      content: build({
        servers: dns.servers.length > 0 ? dns.servers : nameservers(host.effective),
        search: dns.search.length > 0 ? dns.search : searchDomains(host.effective),
        options: dns.options.length > 0 ? dns.options : options(host.effective)
      }),
      fallbackUsed: false
    }
  }
  const atCreate = filter(host.effective, true)
  if (mode !== "bridge") return atCreate
  const joined = filter(atCreate.content, false)
  return { content: joined.content, fallbackUsed: atCreate.fallbackUsed || joined.fallbackUsed }
}

/** An IPv4 or IPv6 address, as Go's `net.ParseIP` takes one (no zone, no brackets). */
export const isIpAddress = (value: string): boolean => net.isIP(value) !== 0 && !value.includes("%")

/**
 * The container's settings, checked. dockerd 20.10 takes any string here (the
 * CLI checks `--dns`); a nameserver that is not an address, or a search domain
 * or option with blanks in it, would write a resolv.conf no resolver reads as
 * meant, so they are refused.
 */
export const checkDns = (dns: DnsSettings): Result.Result<DnsSettings, string> => {
  const server = dns.servers.find((s) => !isIpAddress(s.trim()))
  if (server !== undefined) return Result.fail(`IP address is not correctly formatted: ${server}`)
  const word = [...dns.search, ...dns.options].find((w) => w === "" || /\s/.test(w))
  if (word !== undefined) return Result.fail(`invalid DNS search domain or option ${JSON.stringify(word)}: one word each`)
  return Result.succeed({ ...dns, servers: dns.servers.map((s) => s.trim()) })
}
