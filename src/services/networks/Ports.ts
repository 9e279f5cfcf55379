/**
 * Host ports, owned by the layer as dockerd's libnetwork `portallocator` owns
 * them: portmap's DNAT binds no socket, so nothing else would notice two
 * containers (or a host listener) on one port. A port is taken per protocol
 * and host address, `0.0.0.0` conflicting with every address. Port 0 asks for
 * a free one from the host's ephemeral range (`ip_local_port_range`, as
 * dockerd 20.10). A port that is ours is refused with dockerd's words; one a
 * host process listens on is found by a quick bind and refused with the words
 * of dockerd's userland proxy.
 */
import { Effect } from "effect"
import * as dgram from "node:dgram"
import * as fs from "node:fs"
import * as net from "node:net"
import { alreadyExists, type ContainerdError, invalidArgument } from "../../domain/ContainerdError.ts"
import type { PortMapping } from "../Networks.ts"

const METHOD = "Networks.attach"
const ANY = "0.0.0.0"

/** The host ports in use by attachments, by owner. */
export interface PortAllocator {
  /** Takes every port of `ports` for `owner` (0 chosen), or none of them. */
  readonly reserve: (owner: string, ports: ReadonlyArray<PortMapping>) => Effect.Effect<ReadonlyArray<PortMapping>, ContainerdError>
  /** Marks ports recorded before a restart as taken (no probe: their DNAT rules are live). */
  readonly restore: (owner: string, ports: ReadonlyArray<PortMapping>) => void
  /** Frees an owner's ports. */
  readonly release: (owner: string) => void
}

/** The ephemeral range, as dockerd reads it (49153-65535 when unreadable). */
const ephemeralRange = (): readonly [number, number] => {
  const text = fs.existsSync("/proc/sys/net/ipv4/ip_local_port_range")
    ? fs.readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8")
    : ""
  const [low, high] = text.trim().split(/\s+/).map(Number)
  return low !== undefined && high !== undefined && low > 0 && high >= low ? [low, high] : [49153, 65535]
}

const hostIpOf = (port: PortMapping) => port.hostIp ?? ANY

const clash = (a: PortMapping, b: PortMapping) =>
  a.protocol === b.protocol && a.hostPort === b.hostPort &&
  (hostIpOf(a) === hostIpOf(b) || hostIpOf(a) === ANY || hostIpOf(b) === ANY)

/** Whether a host process holds the port: a bind that fails with EADDRINUSE. Other bind failures are the caller's. */
const probe = (port: PortMapping): Effect.Effect<"free" | "taken", ContainerdError> =>
  Effect.callback<"free" | "taken", ContainerdError>((resume) => {
    const settle = (error: NodeJS.ErrnoException | undefined) =>
      error === undefined
        ? resume(Effect.succeed("free"))
        : error.code === "EADDRINUSE"
        ? resume(Effect.succeed("taken"))
        : resume(Effect.fail(invalidArgument(METHOD, `cannot publish on ${hostIpOf(port)}:${port.hostPort}: ${error.message}`)))
    if (port.protocol === "udp") {
      const socket = dgram.createSocket("udp4")
      socket.once("error", (error) => {
        socket.close()
        settle(error)
      })
      socket.bind({ port: port.hostPort, address: hostIpOf(port), exclusive: true }, () => socket.close(() => settle(undefined)))
    } else {
      const server = net.createServer()
      server.once("error", (error) => settle(error))
      server.listen({ port: port.hostPort, host: hostIpOf(port), exclusive: true }, () => server.close(() => settle(undefined)))
    }
  })

const takenMessage = (port: PortMapping) => `Bind for ${hostIpOf(port)}:${port.hostPort} failed: port is already allocated`
const listenedMessage = (port: PortMapping) =>
  `Error starting userland proxy: listen ${port.protocol}4 ${hostIpOf(port)}:${port.hostPort}: bind: address already in use`

/** A fresh allocator with nothing taken. */
export const makePortAllocator = (): PortAllocator => {
  const owners = new Map<string, ReadonlyArray<PortMapping>>()
  const [low, high] = ephemeralRange()
  const inUse = (candidate: PortMapping) =>
    [...owners.values()].some((ports) => ports.some((port) => clash(port, candidate)))
  // No lock: a port is checked and marked as the owner's in one step, before the probe yields.
  const claim = (owner: string, port: PortMapping) => void owners.set(owner, [...(owners.get(owner) ?? []), port])
  const unclaim = (owner: string, port: PortMapping) =>
    void owners.set(owner, (owners.get(owner) ?? []).filter((claimed) => claimed !== port))

  const pick = (owner: string, port: PortMapping): Effect.Effect<PortMapping, ContainerdError> =>
    Effect.gen(function*() {
      const span = high - low + 1
      const start = Math.floor(Math.random() * span)
      for (let i = 0; i < span; i++) {
        const candidate = { ...port, hostPort: low + ((start + i) % span) }
        if (inUse(candidate)) continue
        claim(owner, candidate)
        if ((yield* probe(candidate)) === "free") return candidate
        unclaim(owner, candidate)
      }
      return yield* Effect.fail(alreadyExists(METHOD, `no free host port in ${low}-${high} for ${port.protocol}`))
    })

  const take = (owner: string, port: PortMapping): Effect.Effect<PortMapping, ContainerdError> =>
    Effect.gen(function*() {
      // Port numbers were checked with the rest of the options (Definitions.checkAttach).
      if (port.hostPort === 0) return yield* pick(owner, port)
      if (inUse(port)) return yield* Effect.fail(alreadyExists(METHOD, takenMessage(port)))
      claim(owner, port)
      if ((yield* probe(port)) === "taken") return yield* Effect.fail(alreadyExists(METHOD, listenedMessage(port)))
      return port
    })

  const reserve = (owner: string, ports: ReadonlyArray<PortMapping>) =>
    Effect.forEach(ports, (port) => take(owner, port)).pipe(
      Effect.onError(() => Effect.sync(() => void owners.delete(owner)))
    )

  return {
    reserve,
    restore: (owner, ports) => void owners.set(owner, ports),
    release: (owner) => void owners.delete(owner)
  }
}
