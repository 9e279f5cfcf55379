/**
 * Published ports, as dockerd reads them (`docker/go-connections/nat` and
 * `daemon/container_operations.go`): a container's exposed ports are its
 * `ExposedPorts`, its image's and every key of `PortBindings`; each binding
 * publishes one of them on a host address and port (a port, a range to take
 * the first free one of, or none for a random one), and `PublishAllPorts`
 * (`-P`) publishes every exposed port not bound otherwise on a random one.
 *
 * Pure: parsed at create (bad input is a 400 with dockerd's words), applied at
 * start (the host ports themselves are the library's to allocate), shown by
 * inspect and `docker ps` from the attachment's chosen ports.
 *
 * Gotchas: dockerd publishes only bindings of exposed ports, and the CLI makes
 * every `-p` port exposed; a binding's own key counts as exposed here, so a
 * binding sent through the API alone is not dropped silently. Only TCP and UDP
 * on IPv4 are published (no SCTP, no IPv6 host address).
 */
import { Result } from "effect"
import type { PortMapping, PortProtocol } from "../../services/Networks.ts"
import { parseAddress } from "../network/Pools.ts"

/** A container port: `80/tcp`. */
export interface ContainerPort {
  readonly port: number
  readonly protocol: PortProtocol
}

/** One binding of a container port to the host: a host port range (`[0, 0]`: any free port). */
export interface PortBinding extends ContainerPort {
  /** `""`: every address. */
  readonly hostIp: string
  readonly hostPorts: readonly [number, number]
}

/** What a container publishes and exposes. */
export interface Ports {
  /** Every exposed port, in Docker's order (by number, then protocol). */
  readonly exposed: ReadonlyArray<ContainerPort>
  readonly bindings: ReadonlyArray<PortBinding>
}

const keyOf = (port: ContainerPort) => `${port.port}/${port.protocol}`

const portNumber = (text: string): number | undefined =>
  /^\d{1,5}$/.test(text) && Number(text) >= 1 && Number(text) <= 65535 ? Number(text) : undefined

/** `80`, `80/tcp` or `53/udp`. */
export const parseContainerPort = (key: string): Result.Result<ContainerPort, string> => {
  const [text = "", protocol = "tcp", ...rest] = key.split("/")
  const port = portNumber(text)
  if (port === undefined || rest.length > 0) return Result.fail(`invalid port specification: ${JSON.stringify(key)}`)
  if (protocol !== "tcp" && protocol !== "udp") {
    return Result.fail(`port ${key}: protocol ${JSON.stringify(protocol)} is not supported: use tcp or udp`)
  }
  return Result.succeed({ port, protocol })
}

/** A binding's `HostPort`: ``/`0` (random), `8080`, or `8000-8010`. */
const parseHostPorts = (text: string): Result.Result<readonly [number, number], string> => {
  if (text === "" || text === "0") return Result.succeed([0, 0])
  const [low = "", high = low, ...rest] = text.split("-")
  const from = portNumber(low)
  const to = portNumber(high)
  if (from === undefined || to === undefined || to < from || rest.length > 0) {
    return Result.fail(`invalid port specification: ${JSON.stringify(text)}`)
  }
  return Result.succeed([from, to])
}

type PortMap = Readonly<Record<string, unknown>> | null | undefined
type Bindings = Readonly<Record<string, ReadonlyArray<{ readonly HostIp?: string | null; readonly HostPort?: string | null }> | null>> | null | undefined

const compare = (a: ContainerPort, b: ContainerPort) => a.port - b.port || a.protocol.localeCompare(b.protocol)

/** A container's ports from its create request and its image's `ExposedPorts`. */
export const parsePorts = (request: {
  readonly exposedPorts: PortMap
  readonly imageExposedPorts: PortMap
  readonly portBindings: Bindings
  readonly publishAll: boolean
}): Result.Result<Ports, string> =>
  Result.gen(function*() {
    const exposed = new Map<string, ContainerPort>()
    for (const key of [...Object.keys(request.exposedPorts ?? {}), ...Object.keys(request.imageExposedPorts ?? {})]) {
      const port = yield* parseContainerPort(key)
      exposed.set(keyOf(port), port)
    }
    const bindings: Array<PortBinding> = []
    for (const [key, list] of Object.entries(request.portBindings ?? {})) {
      const port = yield* parseContainerPort(key)
      exposed.set(keyOf(port), port)
      for (const binding of list ?? []) {
        const hostIp = binding.HostIp ?? ""
        if (hostIp !== "" && (parseAddress(hostIp) === undefined)) {
          return yield* Result.fail(`invalid host IP ${JSON.stringify(hostIp)} for port ${key}: use an IPv4 address`)
        }
        const hostPorts = yield* parseHostPorts(binding.HostPort ?? "")
        bindings.push({ ...port, hostIp: hostIp === "0.0.0.0" ? "" : hostIp, hostPorts })
      }
    }
    const all = [...exposed.values()].sort(compare)
    if (request.publishAll) {
      const bound = new Set(bindings.map(keyOf))
      for (const port of all) if (!bound.has(keyOf(port))) bindings.push({ ...port, hostIp: "", hostPorts: [0, 0] })
    }
    return { exposed: all, bindings: bindings.sort(compare) }
  })

/**
 * The library's port mappings for the bindings: a range's first port not in
 * `taken` (ports published by the daemon's other containers, `proto/port`), a
 * random one for none; the library still refuses a port taken otherwise.
 */
export const mappingsOf = (bindings: ReadonlyArray<PortBinding>, taken: ReadonlySet<string>): ReadonlyArray<PortMapping> => {
  const chosen = new Set(taken)
  return bindings.map((binding) => {
    const [from, to] = binding.hostPorts
    let hostPort = from
    for (let port = from; port <= to && port !== 0; port++) {
      if (!chosen.has(`${binding.protocol}/${port}`)) {
        hostPort = port
        break
      }
    }
    if (hostPort !== 0) chosen.add(`${binding.protocol}/${hostPort}`)
    return {
      hostPort,
      containerPort: binding.port,
      protocol: binding.protocol,
      ...(binding.hostIp === "" ? {} : { hostIp: binding.hostIp })
    }
  })
}

/** Inspect's `NetworkSettings.Ports`: every exposed port, with its host bindings (`null` when unpublished). */
export const portsJson = (exposed: ReadonlyArray<ContainerPort>, published: ReadonlyArray<PortMapping>) =>
  Object.fromEntries(exposed.map((port) => {
    const bound = published.filter((m) => m.containerPort === port.port && m.protocol === port.protocol)
    return [keyOf(port), bound.length === 0 ? null : bound.map((m) => ({ HostIp: m.hostIp ?? "0.0.0.0", HostPort: String(m.hostPort) }))]
  }))

/** `docker ps`'s `Ports`: the published ones with their host side, then the exposed ones alone. */
export const summaryPorts = (exposed: ReadonlyArray<ContainerPort>, published: ReadonlyArray<PortMapping>) =>
  exposed.flatMap((port) => {
    const bound = published.filter((m) => m.containerPort === port.port && m.protocol === port.protocol)
    return bound.length === 0
      ? [{ PrivatePort: port.port, Type: port.protocol }]
      : bound.map((m) => ({ IP: m.hostIp ?? "0.0.0.0", PrivatePort: port.port, PublicPort: m.hostPort, Type: port.protocol }))
  })
