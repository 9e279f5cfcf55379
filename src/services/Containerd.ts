/**
 * The containerd client: every RPC of the services we use, as Effects and Streams.
 *
 * One Layer opens one grpc-js channel to containerd's unix socket and closes it
 * with its scope. Each call carries the ambient namespace (the `Namespace`
 * reference, else the client's default) in the `containerd-namespace` header,
 * and the ambient lease (the `Lease` reference), if any, in `containerd-lease`,
 * has a deadline (unary calls default to the client's timeout), is cancelled on
 * the wire when interrupted, fails with a typed `ContainerdError`, and is counted
 * per method in the `RpcCalls` metric, which tests and benchmarks read to hold the
 * library to its RPC budget.
 */
import * as grpc from "@grpc/grpc-js"
import { Config, Context, Duration, Effect, Layer, Metric } from "effect"
import { dual, identity } from "effect/Function"
import { type ContainerdError, invalidArgument } from "../domain/ContainerdError.ts"
import { ContainersDefinition } from "../gen/containerd/services/containers/v1/containers.ts"
import { ContentDefinition } from "../gen/containerd/services/content/v1/content.ts"
import { DiffDefinition } from "../gen/containerd/services/diff/v1/diff.ts"
import { EventsDefinition } from "../gen/containerd/services/events/v1/events.ts"
import { ImagesDefinition } from "../gen/containerd/services/images/v1/images.ts"
import { IntrospectionDefinition } from "../gen/containerd/services/introspection/v1/introspection.ts"
import { LeasesDefinition } from "../gen/containerd/services/leases/v1/leases.ts"
import { NamespacesDefinition } from "../gen/containerd/services/namespaces/v1/namespace.ts"
import { SnapshotsDefinition } from "../gen/containerd/services/snapshots/v1/snapshots.ts"
import { TasksDefinition } from "../gen/containerd/services/tasks/v1/tasks.ts"
import { VersionDefinition } from "../gen/containerd/services/version/v1/version.ts"
import { makeServiceClient, type ServiceClient, type Transport } from "../internal/Grpc.ts"

/** containerd's default socket. */
export const DEFAULT_ADDRESS = "/run/containerd/containerd.sock"
/** The namespace used when neither the client nor the caller names one. */
export const DEFAULT_NAMESPACE = "default"
/** The deadline of a unary call that does not set its own. */
export const DEFAULT_TIMEOUT: Duration.Duration = Duration.seconds(30)

/**
 * The namespace for calls made in a region of code, overriding the client's
 * default. `undefined` (the default) means "the client's namespace".
 */
export const Namespace = Context.Reference<string | undefined>("effect-containerd/Namespace", {
  defaultValue: () => undefined
})

/** Runs an effect with its containerd calls in `namespace`. */
export const withNamespace: {
  (namespace: string): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, namespace: string): Effect.Effect<A, E, R>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, namespace: string) =>
  Effect.provideService(self, Namespace, namespace))

/**
 * The lease for calls made in a region of code, sent as the `containerd-lease`
 * header: content and snapshots such calls create belong to the lease, so
 * containerd's garbage collector keeps them until it is deleted, even while no
 * image or container refers to them yet.
 */
export const Lease = Context.Reference<string | undefined>("effect-containerd/Lease", {
  defaultValue: () => undefined
})

/** Runs an effect with its containerd calls under the lease `id`. */
export const withLease: {
  (id: string): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, id: string): Effect.Effect<A, E, R>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, id: string) => Effect.provideService(self, Lease, id))

/** containerd RPCs started, by full method path (`/containerd.services.tasks.v1.Tasks/Start`). */
export const RpcCalls = Metric.frequency("effect_containerd_rpc_calls", {
  description: "containerd RPCs started, by method; streams count once when opened"
})

/** A snapshot of the RPC counts so far, by method path, in the caller's metric registry. */
export const rpcCounts: Effect.Effect<ReadonlyMap<string, number>> = Effect.map(
  Metric.value(RpcCalls),
  // The metric's own map keeps counting; a snapshot must not.
  (state) => new Map(state.occurrences)
)

/** How to reach containerd. */
export interface ContainerdOptions {
  /** A socket path or `unix://` URI; defaults to `/run/containerd/containerd.sock`. */
  readonly address?: string | undefined
  /** The namespace of calls made outside any `withNamespace`; defaults to `default`. */
  readonly namespace?: string | undefined
  /** The deadline of unary calls that set none; defaults to 30 seconds. */
  readonly timeout?: Duration.Input | undefined
}

/** The client: one property per containerd service, one method per RPC. */
export interface ContainerdClient {
  /** The `unix://` address the channel dials. */
  readonly address: string
  /** The client's default namespace. */
  readonly namespace: string
  /** The namespace the caller's calls go to right now. */
  readonly currentNamespace: Effect.Effect<string>
  readonly containers: ServiceClient<typeof ContainersDefinition>
  readonly content: ServiceClient<typeof ContentDefinition>
  readonly diff: ServiceClient<typeof DiffDefinition>
  readonly events: ServiceClient<typeof EventsDefinition>
  readonly images: ServiceClient<typeof ImagesDefinition>
  readonly introspection: ServiceClient<typeof IntrospectionDefinition>
  readonly leases: ServiceClient<typeof LeasesDefinition>
  readonly namespaces: ServiceClient<typeof NamespacesDefinition>
  readonly snapshots: ServiceClient<typeof SnapshotsDefinition>
  readonly tasks: ServiceClient<typeof TasksDefinition>
  readonly version: ServiceClient<typeof VersionDefinition>
}

const MiB = 1024 * 1024

const channelOptions: grpc.ChannelOptions = {
  // containerd sends and accepts messages up to 16 MiB; grpc-js defaults to 4 MiB.
  "grpc.max_receive_message_length": 16 * MiB,
  "grpc.max_send_message_length": 16 * MiB,
  // A local socket is cheap to redial: keep the channel's own reconnect backoff
  // short so that a restarted containerd is found again within about a second.
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 1000
}

/** Accepts `/path`, `unix:/path` and `unix:///path`; anything else is rejected. */
const toUnixTarget = (address: string): Effect.Effect<string, ContainerdError> => {
  const path = address.replace(/^unix:(\/\/)?/, "")
  return path.startsWith("/")
    ? Effect.succeed(`unix://${path}`)
    : Effect.fail(
      invalidArgument(
        "Containerd.layer",
        `containerd address ${JSON.stringify(address)} is not a unix socket: use an absolute path or unix:///path`
      )
    )
}

const make = Effect.fnUntraced(function*(options: ContainerdOptions) {
  const address = yield* toUnixTarget(options.address ?? DEFAULT_ADDRESS)
  const namespace = options.namespace ?? DEFAULT_NAMESPACE
  const channel = yield* Effect.acquireRelease(
    Effect.sync(() => new grpc.Client(address, grpc.credentials.createInsecure(), channelOptions)),
    (channel) => Effect.sync(() => channel.close())
  )
  const currentNamespace = Namespace.useSync((override) => override ?? namespace)
  const transport: Transport = {
    channel,
    address,
    defaultTimeout: Duration.fromInputUnsafe(options.timeout ?? DEFAULT_TIMEOUT),
    metadata: Effect.zipWith(currentNamespace, Lease.useSync(identity), (ns, lease) => {
      const metadata = new grpc.Metadata()
      metadata.set("containerd-namespace", ns)
      if (lease !== undefined) metadata.set("containerd-lease", lease)
      return metadata
    }),
    onCall: (path) => Metric.update(RpcCalls, path)
  }
  return Containerd.of({
    address,
    namespace,
    currentNamespace,
    containers: makeServiceClient(transport, ContainersDefinition),
    content: makeServiceClient(transport, ContentDefinition),
    diff: makeServiceClient(transport, DiffDefinition),
    events: makeServiceClient(transport, EventsDefinition),
    images: makeServiceClient(transport, ImagesDefinition),
    introspection: makeServiceClient(transport, IntrospectionDefinition),
    leases: makeServiceClient(transport, LeasesDefinition),
    namespaces: makeServiceClient(transport, NamespacesDefinition),
    snapshots: makeServiceClient(transport, SnapshotsDefinition),
    tasks: makeServiceClient(transport, TasksDefinition),
    version: makeServiceClient(transport, VersionDefinition)
  })
})

/** The containerd client service. */
export class Containerd extends Context.Service<Containerd, ContainerdClient>()("effect-containerd/Containerd") {
  /** A client with explicit options; the channel closes when the layer's scope does. */
  static readonly layer = (options: ContainerdOptions = {}): Layer.Layer<Containerd, ContainerdError> =>
    Layer.effect(Containerd, make(options))

  /**
   * A client configured from `CONTAINERD_ADDRESS`, `CONTAINERD_NAMESPACE` and
   * `CONTAINERD_TIMEOUT` (a duration such as "30 seconds").
   */
  static readonly layerConfig: Layer.Layer<Containerd, ContainerdError | Config.ConfigError> = Layer.unwrap(
    Effect.map(
      Config.all({
        address: Config.String("CONTAINERD_ADDRESS").pipe(Config.withDefault(DEFAULT_ADDRESS)),
        namespace: Config.String("CONTAINERD_NAMESPACE").pipe(Config.withDefault(DEFAULT_NAMESPACE)),
        timeout: Config.Duration("CONTAINERD_TIMEOUT").pipe(Config.withDefault(DEFAULT_TIMEOUT))
      }),
      Containerd.layer
    )
  )
}
