/**
 * Container networking on CNI, as containerd's CRI and nerdctl do it: networks
 * are CNI conflists (bridge + host-local IPAM + portmap), a container's
 * attachment is a network namespace pinned by us, the `loopback` plugin and an
 * ADD of each of its networks, and releasing it is the DEL of each in reverse
 * (with the result cached at ADD, as libcni's cache) before the namespace goes.
 *
 * An attachment is a scoped resource: `attach` and `adopt` tie it to the
 * caller's scope (the container's task), so deleting the container through
 * the library, or seeing it deleted by anyone else, releases its IP, host ports
 * and namespace. Attachments are recorded under the data directory so they
 * survive our restarts and are released or adopted at the next start.
 *
 * ADD and DEL of one container are ordered; different containers run in
 * parallel. DEL is idempotent, as CNI requires.
 *
 * Failures use containerd's errdefs vocabulary (`ContainerdError` reasons), so
 * a caller maps them once: a bad CIDR or an unknown network is
 * `InvalidArgument`/`NotFound`, a taken host port `AlreadyExists`, removing a
 * network in use `FailedPrecondition`, a plugin failing `Unknown` with the CNI
 * error code and message.
 */
import { Context, type Effect, Layer, type Option, type Scope, type Stream } from "effect"
import type { ContainerdError } from "../domain/ContainerdError.ts"
import { makeNetworks, type NetworksOptions } from "./networks/Make.ts"

export type { NetworksOptions } from "./networks/Make.ts"

/** A network as CNI runs it: a Linux bridge with addresses from host-local. */
export interface NetworkDefinition {
  /** The CNI network name: letters, digits, `.`, `_`, `-` (the daemon uses its network's 64-hex id). */
  readonly name: string
  /** The bridge device, at most 15 characters. */
  readonly bridge: string
  /** The IPv4 subnet, in CIDR notation: `10.254.1.0/24`. */
  readonly subnet: string
  /** The bridge's address; the subnet's first host when absent. */
  readonly gateway?: string | undefined
  /** Addresses are given out only from this CIDR inside the subnet. */
  readonly ipRange?: string | undefined
  /** No way out: no masquerade, and traffic from the bridge to anywhere else is dropped. */
  readonly internal?: boolean | undefined
  /** The bridge's and the interfaces' MTU; 1500 when absent. */
  readonly mtu?: number | undefined
  /** Add CNI's `firewall` plugin to the conflist (it costs ~250 ms of iptables per container). */
  readonly firewall?: boolean | undefined
}

/** A transport a port is published for. */
export type PortProtocol = "tcp" | "udp"

/** A container port published on the host (CNI's `portMappings` capability). */
export interface PortMapping {
  /** The host port; 0 asks for a free one from the host's ephemeral range, chosen at attach. */
  readonly hostPort: number
  readonly containerPort: number
  readonly protocol: PortProtocol
  /** The host address it is published on; every address ("0.0.0.0") when absent. */
  readonly hostIp?: string | undefined
}

/** One network a container joins. */
export interface NetworkRequest {
  /** The name of a defined network. */
  readonly network: string
  /** A fixed address in the network's subnet. */
  readonly ip?: string | undefined
  /** A fixed MAC address. */
  readonly mac?: string | undefined
}

/** What a container is attached with: its networks in order (`eth0`, `eth1`, ...) and its published ports. */
export interface AttachOptions {
  readonly networks: ReadonlyArray<NetworkRequest>
  /** Published to the container's address on its first network. */
  readonly ports?: ReadonlyArray<PortMapping> | undefined
}

/** A container's interface on one network, from the CNI result. */
export interface NetworkEndpoint {
  readonly network: string
  /** The interface in the container: `eth0`, `eth1`, ... */
  readonly ifname: string
  /** `10.254.1.2` */
  readonly address: string
  readonly prefixLength: number
  readonly gateway: string
  readonly mac: string
}

/** A container's network attachment. */
export interface Attachment {
  readonly namespace: string
  readonly containerId: string
  /** The pinned network namespace, as the OCI spec joins it. */
  readonly netns: string
  readonly endpoints: ReadonlyArray<NetworkEndpoint>
  /** The published ports, host ports chosen (never 0). */
  readonly ports: ReadonlyArray<PortMapping>
}

/** An attachment made, changed or released (by us, at a restart's sweep, or because its container went). */
export type AttachmentChange =
  | { readonly _tag: "Attached"; readonly attachment: Attachment }
  | { readonly _tag: "Detached"; readonly attachment: Attachment }

/** The networks service. */
export interface NetworksShape {
  /**
   * Defines a network: its conflist, and its own iptables rules (masquerade,
   * isolation from our other networks). Idempotent for an equal definition;
   * `AlreadyExists` for a different one of the same name, `InvalidArgument`
   * for a bad CIDR or a subnet overlapping another network's.
   */
  readonly define: (definition: NetworkDefinition) => Effect.Effect<void, ContainerdError>
  /** Removes a network, its rules and its bridge; `FailedPrecondition` while a container is attached to it. */
  readonly remove: (name: string) => Effect.Effect<void, ContainerdError>
  /** The defined networks. */
  readonly definitions: Effect.Effect<ReadonlyArray<NetworkDefinition>>
  /**
   * Checks attach options against the networks defined, needing nothing of the
   * host: each network defined and asked for once, fixed addresses in range,
   * MACs, port numbers, ports only with a network. `attach` checks the same.
   */
  readonly validate: (method: string, options: AttachOptions) => Effect.Effect<void, ContainerdError>
  /** The network namespace a container will join (known at create, so its spec needs no change at start). */
  readonly netnsPath: (namespace: string, containerId: string) => string
  /**
   * Attaches a container: pins its namespace, brings up loopback, ADDs each
   * network, publishes its ports. Bound to the caller's scope, whose close
   * detaches it. A failure leaves nothing behind.
   */
  readonly attach: (
    namespace: string,
    containerId: string,
    options: AttachOptions
  ) => Effect.Effect<Attachment, ContainerdError, Scope.Scope>
  /** Takes an attachment recorded before a restart into the caller's scope; none if none is recorded. */
  readonly adopt: (namespace: string, containerId: string) => Effect.Effect<Option.Option<Attachment>, never, Scope.Scope>
  /** Adds a network to a live attachment (`docker network connect` on a running container). */
  readonly connect: (namespace: string, containerId: string, request: NetworkRequest) => Effect.Effect<Attachment, ContainerdError>
  /** Removes a network from a live attachment. */
  readonly disconnect: (namespace: string, containerId: string, network: string) => Effect.Effect<Attachment, ContainerdError>
  /** Releases an attachment now; nothing happens if there is none. */
  readonly detach: (namespace: string, containerId: string) => Effect.Effect<void, ContainerdError>
  /** A container's attachment. */
  readonly get: (namespace: string, containerId: string) => Effect.Effect<Option.Option<Attachment>>
  /** Every live attachment. */
  readonly attachments: Effect.Effect<ReadonlyArray<Attachment>>
  /** Every change from now on. */
  readonly changes: Effect.Effect<Stream.Stream<AttachmentChange>, never, Scope.Scope>
  /** Releases every recorded attachment of `namespace` whose container is not in `keep` (recovery). */
  readonly sweep: (namespace: string, keep: ReadonlySet<string>) => Effect.Effect<void, ContainerdError>
}

/** The networks service; its layer is built over the CNI plugins on this host. */
export class Networks extends Context.Service<Networks, NetworksShape>()("effect-containerd/Networks") {
  /**
   * The service over this host's CNI plugins (checked at build: each must
   * support CNI 1.0.0), with its definitions and attachment records reloaded
   * from `confDir`. Fails with `FailedPrecondition` naming the plugin
   * directories when a plugin is missing or too old.
   */
  static readonly layer = (options: NetworksOptions): Layer.Layer<Networks, ContainerdError> =>
    Layer.effect(Networks, makeNetworks(options))
}
