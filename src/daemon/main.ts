#!/usr/bin/env node
/**
 * The `effect-containerd` command. `effect-containerd daemon` serves the Docker
 * Engine API on a unix socket, so the unmodified `docker` CLI and dockerode can
 * drive containers on containerd through this library.
 *
 * Like dockerd it runs its own containerd under its data root unless pointed at
 * one (`--containerd`). Everything it starts lives in one scope: SIGTERM or
 * SIGINT interrupts it, which closes the API socket (and removes it), stops the
 * engine's monitors, and stops the embedded containerd (not the containers:
 * their shims keep running, and the next start finds them again).
 *
 * Every flag can also be set by an environment variable, `EFFECT_CONTAINERD_`
 * and the flag's name in capitals (`EFFECT_CONTAINERD_DATA_ROOT`);
 * `EFFECT_CONTAINERD_INSECURE_REGISTRY` takes a comma-separated list.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { NodeHttpServer, NodeRuntime, NodeServices } from "@effect/platform-node"
import { Config, Effect, Layer, Option, References, Result, Schema } from "effect"
import { CliConfig, Command, Flag, GlobalFlag } from "effect/cli"
import { HttpRouter } from "effect/http"
import { removeFile } from "../internal/Files.ts"
import { holdLock, probeSocket } from "../internal/UnixSocket.ts"
import * as Live from "../layers/Live.ts"
import { Containerd } from "../services/Containerd.ts"
import * as Api from "./Api.ts"
import { embeddedContainerd } from "./EmbeddedContainerd.ts"
import { Engine } from "./Engine.ts"
import { parseSize } from "./engine/HostConfig.ts"
import { EventLog } from "./EventLog.ts"
import { defaultBridgeName, isDeviceName, parseAddressPool, parseBip, type Pool, type Subnet } from "./network/Pools.ts"
import { DockerNetworks } from "./Networks.ts"
import { DockerVolumes } from "./Volumes.ts"
import { buildShimLogger } from "./ShimLogger.ts"
import { DockerImages } from "./Images.ts"
import { packageVersion, System } from "./System.ts"

/** Why the daemon could not start: its settings or its socket. */
class DaemonError extends Schema.TaggedError<DaemonError>()("DaemonError", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/** The daemon's log levels (`--log-level`). */
const LOG_LEVELS = ["debug", "info", "warn", "error"] as const
type DaemonLogLevel = typeof LOG_LEVELS[number]

/** The daemon's settings, defaults applied. */
interface DaemonSettings {
  /** The API socket. */
  readonly socketPath: string
  /** An existing containerd to use; `undefined`: start our own under the data root. */
  readonly containerdAddress: string | undefined
  readonly dataRoot: string
  readonly namespace: string
  /** Registry hosts (`host[:port]`) spoken to over plain HTTP. */
  readonly insecureRegistries: ReadonlyArray<string>
  /** OCI runtimes besides runc (`--add-runtime name=path`): name → runc-compatible binary. */
  readonly runtimes: Readonly<Record<string, string>>
  readonly logLevel: DaemonLogLevel
  /** The largest JSON request body, in bytes. */
  readonly maxJsonBody: number
  /** `--default-address-pool`s (Docker's pools when empty). */
  readonly addressPools: ReadonlyArray<Pool>
  /** `--bip`: the default bridge's subnet and gateway. */
  readonly bip: { readonly subnet: Subnet; readonly gateway: number } | undefined
  /** The default bridge's device; none with `--bridge none`. */
  readonly bridgeName: string | undefined
  /** Where the CNI plugins are looked for, in order (`--cni-path`). */
  readonly cniPath: ReadonlyArray<string>
  /** The networks' conflists and attachment records (`--cni-netconfpath`). */
  readonly cniConfDir: string
}

const isRoot = () => process.getuid?.() === 0

/** `unix:///run/x.sock`, `unix:/run/x.sock` or a path (relative to the working directory); other schemes are refused. */
const socketPathOf = (host: string): Effect.Effect<string, DaemonError> => {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(host)?.[1]
  if (scheme !== undefined && scheme !== "unix") {
    return Effect.fail(new DaemonError({ message: `--host ${host}: only unix sockets are supported (unix:///path or a path)` }))
  }
  const socket = host.replace(/^unix:(\/\/)?/, "")
  return socket === ""
    ? Effect.fail(new DaemonError({ message: `--host ${host}: the socket path is empty` }))
    : Effect.succeed(path.resolve(socket))
}

/**
 * `--add-runtime name=path`s, as dockerd takes them: a runc-compatible binary
 * under a name containers ask for (`--runtime name`); `runc` is the built-in one.
 */
const runtimesOf = (specs: ReadonlyArray<string>): Effect.Effect<Readonly<Record<string, string>>, DaemonError> =>
  Effect.gen(function*() {
    const runtimes: Record<string, string> = {}
    for (const spec of specs) {
      const at = spec.indexOf("=")
      const name = at < 0 ? "" : spec.slice(0, at)
      const binary = at < 0 ? "" : spec.slice(at + 1)
      if (name === "" || binary === "") {
        return yield* Effect.fail(new DaemonError({ message: `--add-runtime ${spec}: use name=path` }))
      }
      if (name === "runc" || name === "io.containerd.runc.v2" || Object.hasOwn(runtimes, name)) {
        return yield* Effect.fail(new DaemonError({ message: `--add-runtime ${spec}: runtime name '${name}' is reserved or given twice` }))
      }
      runtimes[name] = path.resolve(binary)
    }
    return runtimes
  })

const optionalEnv = (name: string) => Config.option(Config.String(name))

/** As dockerd: `/run/effect-containerd.sock` for root, else in `$XDG_RUNTIME_DIR`. */
const defaultSocketPath = Effect.gen(function*() {
  if (isRoot()) return "/run/effect-containerd.sock"
  const runtimeDir = yield* optionalEnv("XDG_RUNTIME_DIR")
  if (Option.isNone(runtimeDir) || runtimeDir.value === "") {
    return yield* new DaemonError({ message: "XDG_RUNTIME_DIR is not set: pass --host for the API socket" })
  }
  return path.join(runtimeDir.value, "effect-containerd.sock")
})

/** As dockerd: `/var/lib/effect-containerd` for root, else in `$XDG_DATA_HOME` (default `~/.local/share`). */
const defaultDataRoot = Effect.gen(function*() {
  if (isRoot()) return "/var/lib/effect-containerd"
  const dataHome = Option.getOrElse(yield* optionalEnv("XDG_DATA_HOME"), () => "")
  return path.join(dataHome === "" ? path.join(os.homedir(), ".local", "share") : dataHome, "effect-containerd")
})

// ---------------------------------------------------------------------------
// The socket

/** The path with symlinks resolved as far as it exists, so two spellings of one directory lock alike. */
const realPath = (file: string): string => {
  try {
    return fs.realpathSync(file)
  } catch {
    const parent = path.dirname(file)
    return parent === file ? file : path.join(realPath(parent), path.basename(file))
  }
}

/** Holds `key`'s lock for the daemon's life, or fails with `held` when another process has it. */
const exclusive = (purpose: string, key: string, held: string) =>
  holdLock(purpose, key).pipe(
    Effect.mapError((cause) => new DaemonError({ message: `could not lock ${key}: ${cause.message}`, cause })),
    Effect.filterOrFail((acquired) => acquired, () => new DaemonError({ message: held }))
  )

/**
 * Claims the API socket path, as dockerd does: removes a socket left by a crash
 * (but never a live one, nor a file that is not a socket), and removes ours
 * when the scope closes. Claimed before anything starts, so a second daemon on
 * the same socket leaves the first one's containerd alone. A lock on the path
 * makes the probe and the removal safe from a second daemon starting at the
 * same moment, which could otherwise remove the socket the first just bound.
 */
const claimSocket = (socket: string) =>
  Effect.gen(function*() {
    yield* exclusive("socket", realPath(socket), `another daemon is starting or listening on ${socket}`)
    yield* Effect.try({
      try: () => fs.mkdirSync(path.dirname(socket), { recursive: true }),
      catch: (cause) => new DaemonError({ message: `could not create ${path.dirname(socket)}`, cause })
    })
    const state = yield* probeSocket(socket)
    if (state === "listening") return yield* new DaemonError({ message: `another daemon is listening on ${socket}` })
    if (state === "other") return yield* new DaemonError({ message: `${socket} exists and is not a socket` })
    if (state === "stale") yield* removeFile(socket)
    yield* Effect.addFinalizer(() => removeFile(socket))
  })

/** Once the API is served: the socket is for its owner and group (dockerd's 0660), and we say where it is. */
const announce = (socket: string) =>
  Effect.gen(function*() {
    yield* Effect.try({
      try: () => fs.chmodSync(socket, 0o660),
      catch: (cause) => new DaemonError({ message: `could not chmod ${socket}`, cause })
    })
    yield* Effect.logInfo(`API listening on ${socket}`)
  })

// ---------------------------------------------------------------------------
// The daemon

/** The daemon's services over the containerd at `address`: the library, the event log, the engine, images, system. */
const servicesLayer = (settings: DaemonSettings & { readonly containerdAddress: string }) => {
  const library = Live.services({
    registry: { hosts: Object.fromEntries(settings.insecureRegistries.map((host) => [host, { insecure: true }])) },
    runtime: { fifoDir: path.join(settings.dataRoot, "fifo") },
    // The library's networks under the data root: its conflists and attachment records beside our network records.
    networks: { confDir: settings.cniConfDir, runRoot: path.join(settings.dataRoot, "run"), pluginDirs: settings.cniPath }
  }).pipe(Layer.provideMerge(Containerd.layer({ address: settings.containerdAddress, namespace: settings.namespace })))
  const dockerNetworks = DockerNetworks.layer({
    dataRoot: settings.dataRoot,
    namespace: settings.namespace,
    pools: settings.addressPools,
    bip: settings.bip,
    bridgeName: settings.bridgeName
  })
  return System.layer({
    dataRoot: settings.dataRoot,
    containerdAddress: settings.containerdAddress,
    namespace: settings.namespace,
    insecureRegistries: settings.insecureRegistries,
    runtimes: settings.runtimes
  }).pipe(
    Layer.provideMerge(DockerImages.layerWith({ spoolDir: path.join(settings.dataRoot, "tmp") })),
    Layer.provideMerge(Layer.unwrap(Effect.map(
      buildShimLogger(path.join(settings.dataRoot, "bin")),
      (shimLogger) =>
        Engine.layer({
          namespace: settings.namespace,
          logRoot: path.join(settings.dataRoot, "containers"),
          mountRoot: path.join(settings.dataRoot, "mnt"),
          shimLogger,
          runtimes: settings.runtimes
        })
    ))),
    Layer.provideMerge(dockerNetworks),
    Layer.provideMerge(DockerVolumes.layer({ dataRoot: settings.dataRoot })),
    Layer.provideMerge(EventLog.layer),
    Layer.provideMerge(library)
  )
}

/** The API served on the socket, over the daemon's services (built first, so the socket opens only once they are ready). */
const daemonLayer = (settings: DaemonSettings & { readonly containerdAddress: string }) =>
  Layer.effectDiscard(announce(settings.socketPath)).pipe(
    Layer.provideMerge(HttpRouter.serve(Api.layerWith({ maxJsonBody: settings.maxJsonBody }), { disableLogger: true, disableListenLog: true })),
    // Streams (`events`, `wait`) never end by themselves: in-flight requests get a second to finish, then are cut.
    Layer.provide(NodeHttpServer.layer(() => http.createServer(), { path: settings.socketPath, gracefulShutdownTimeout: "1 second" })),
    Layer.provide(servicesLayer(settings))
  )

/** Runs the daemon until interrupted (or until the embedded containerd cannot be kept running). */
const runDaemon = Effect.fn("daemon")(function*(settings: DaemonSettings) {
  // One daemon per data root (dockerd's pid file, without its stale-file race):
  // two would share the embedded containerd, the logs and the FIFOs, and both
  // would handle every exit.
  yield* exclusive(
    "data-root",
    realPath(settings.dataRoot),
    `another effect-containerd daemon is running with the data root ${settings.dataRoot}`
  )
  yield* claimSocket(settings.socketPath)
  if (settings.containerdAddress !== undefined) {
    return yield* Layer.launch(daemonLayer({ ...settings, containerdAddress: settings.containerdAddress }))
  }
  const containerd = yield* embeddedContainerd({ dataRoot: settings.dataRoot, logLevel: settings.logLevel })
  return yield* Effect.raceFirst(
    Layer.launch(daemonLayer({ ...settings, containerdAddress: containerd.address })),
    containerd.join
  )
}, Effect.scoped)

// ---------------------------------------------------------------------------
// The command

const fromEnv = (name: string) => Flag.withFallbackConfig(Config.String(`EFFECT_CONTAINERD_${name}`))

/** A string flag that may be given many times (or as a list in `EFFECT_CONTAINERD_<env>`); none by default. */
const repeatable = (name: string, env: string, description: string) =>
  Flag.String(name).pipe(
    Flag.withDescription(description),
    Flag.atLeast(1),
    Flag.withFallbackConfig(Config.Array(Schema.String, `EFFECT_CONTAINERD_${env}`)),
    Flag.withDefault([])
  )

const flags = {
  host: Flag.String("host").pipe(
    Flag.withAlias("H"),
    Flag.withDescription(
      "The API socket: a path or unix:///path (default /run/effect-containerd.sock as root, else $XDG_RUNTIME_DIR/effect-containerd.sock)"
    ),
    fromEnv("HOST"),
    Flag.optional
  ),
  containerd: Flag.String("containerd").pipe(
    Flag.withDescription("The socket of a containerd to use; without it, the daemon runs its own under the data root"),
    fromEnv("CONTAINERD"),
    Flag.optional
  ),
  dataRoot: Flag.String("data-root").pipe(
    Flag.withDescription(
      "Where the daemon keeps its state (default /var/lib/effect-containerd as root, else $XDG_DATA_HOME/effect-containerd)"
    ),
    fromEnv("DATA_ROOT"),
    Flag.optional
  ),
  namespace: Flag.String("namespace").pipe(
    Flag.withDescription("The containerd namespace of the daemon's containers and images"),
    fromEnv("NAMESPACE"),
    Flag.withDefault("effect-containerd")
  ),
  insecureRegistries: repeatable("insecure-registry", "INSECURE_REGISTRY", "A registry (host[:port]) to speak plain HTTP to; repeatable"),
  maxJsonBody: Flag.String("max-json-body").pipe(
    Flag.withDescription("The largest JSON request body (create, exec, ...) read, e.g. 512k or 16m; larger ones are refused with 413"),
    fromEnv("MAX_JSON_BODY"),
    Flag.withDefault("4m")
  ),
  runtimes: repeatable(
    "add-runtime",
    "ADD_RUNTIME",
    "An OCI runtime containers may ask for (--runtime name): name=path of a runc-compatible binary; repeatable"
  ),
  addressPools: repeatable(
    "default-address-pool",
    "DEFAULT_ADDRESS_POOL",
    "Where networks created without a subnet take theirs, as dockerd's: base=<cidr>,size=<prefix>; repeatable (default 172.17-31.0.0/16, then 192.168.0.0/16 in /20s)"
  ),
  bip: Flag.String("bip").pipe(
    Flag.withDescription("The default bridge's address and prefix, such as 10.9.0.1/24 (default: the first free address pool)"),
    fromEnv("BIP"),
    Flag.optional
  ),
  bridge: Flag.String("bridge").pipe(
    Flag.withAlias("b"),
    Flag.withDescription("none: no default bridge network, as dockerd's --bridge=none (containers asking for it get loopback only)"),
    fromEnv("BRIDGE"),
    Flag.optional
  ),
  bridgeName: Flag.String("bridge-name").pipe(
    Flag.withDescription("The default bridge's device (default ec0- and 8 hex characters of the data root's hash, so daemons never share one)"),
    fromEnv("BRIDGE_NAME"),
    Flag.optional
  ),
  cniPath: repeatable(
    "cni-path",
    "CNI_PATH",
    "A directory of CNI plugins (bridge, host-local, portmap, loopback), looked in in the order given; repeatable (default /usr/lib/cni, Debian's containernetworking-plugins)"
  ),
  cniNetconfPath: Flag.String("cni-netconfpath").pipe(
    Flag.withDescription("Where the networks' CNI conflists and the containers' attachment records are kept (default <data-root>/network)"),
    fromEnv("CNI_NETCONFPATH"),
    Flag.optional
  ),
  logLevel: Flag.Literals("log-level", LOG_LEVELS).pipe(
    Flag.withDescription("The least severe messages logged"),
    Flag.withFallbackConfig(Config.Literals(LOG_LEVELS, "EFFECT_CONTAINERD_LOG_LEVEL")),
    Flag.withDefault("info" as const)
  )
}

/** `--max-json-body`: a size as Docker writes them, at least 1 KiB (a create body is rarely under 1 KiB). */
const maxJsonBodyOf = (text: string) => {
  const bytes = parseSize(text)
  return bytes === undefined || bytes < 1024
    ? Effect.fail(new DaemonError({ message: `invalid --max-json-body ${JSON.stringify(text)}: use a size of at least 1k, such as 4m` }))
    : Effect.succeed(bytes)
}

/** `--default-address-pool`, `--bip` and `--bridge-name`, checked. */
const networkSettingsOf = (
  input: {
    readonly addressPools: ReadonlyArray<string>
    readonly bip: Option.Option<string>
    readonly bridge: Option.Option<string>
    readonly bridgeName: Option.Option<string>
  },
  dataRoot: string
) =>
  Effect.gen(function*() {
    const fail = (message: string) => Effect.fail(new DaemonError({ message }))
    const addressPools = yield* Effect.forEach(input.addressPools, (text) =>
      Result.match(parseAddressPool(text), { onSuccess: Effect.succeed, onFailure: fail }))
    const bip = Option.isNone(input.bip)
      ? undefined
      : yield* Result.match(parseBip(input.bip.value), { onSuccess: Effect.succeed, onFailure: fail })
    if (Option.isSome(input.bridge) && input.bridge.value !== "none") {
      return yield* fail(`--bridge ${input.bridge.value}: only none is supported (name the default bridge's device with --bridge-name)`)
    }
    if (Option.isSome(input.bridge) && (bip !== undefined || Option.isSome(input.bridgeName))) {
      return yield* fail("--bridge none disables the default bridge: --bip and --bridge-name are for it")
    }
    const bridgeName = Option.isSome(input.bridge) ? undefined : Option.getOrElse(input.bridgeName, () => defaultBridgeName(dataRoot))
    if (bridgeName !== undefined && !isDeviceName(bridgeName)) {
      return yield* fail(`--bridge-name ${bridgeName}: use a device name of at most 15 letters, digits, '.', '_' or '-'`)
    }
    return { addressPools, bip, bridgeName }
  })

const minimumLogLevel = { debug: "Debug", info: "Info", warn: "Warn", error: "Error" } as const

const daemon = Command.make("daemon", flags, (input) =>
  Effect.gen(function*() {
    const dataRoot = Option.isSome(input.dataRoot) ? path.resolve(input.dataRoot.value) : yield* defaultDataRoot
    const settings: DaemonSettings = {
      socketPath: Option.isSome(input.host) ? yield* socketPathOf(input.host.value) : yield* defaultSocketPath,
      containerdAddress: Option.getOrUndefined(input.containerd),
      dataRoot,
      namespace: input.namespace,
      insecureRegistries: input.insecureRegistries,
      runtimes: yield* runtimesOf(input.runtimes),
      logLevel: input.logLevel,
      maxJsonBody: yield* maxJsonBodyOf(input.maxJsonBody),
      ...(yield* networkSettingsOf(input, dataRoot)),
      cniPath: input.cniPath.length === 0 ? ["/usr/lib/cni"] : input.cniPath.map((dir) => path.resolve(dir)),
      cniConfDir: Option.isSome(input.cniNetconfPath) ? path.resolve(input.cniNetconfPath.value) : path.join(dataRoot, "network")
    }
    yield* runDaemon(settings)
  }).pipe(Effect.provideService(References.MinimumLogLevel, minimumLogLevel[input.logLevel]))).pipe(
    Command.withDescription("Serve the Docker Engine API on a unix socket")
  )

/** `effect-containerd`: its one subcommand is `daemon`. */
const command = Command.make("effect-containerd").pipe(
  Command.withDescription("Containers on containerd, driven through the Docker Engine API"),
  Command.withSubcommands([daemon])
)

packageVersion.pipe(
  Effect.flatMap((version) => Command.run(command, { version })),
  // `--log-level` is the daemon's own flag (with its environment variable), not the CLI's built-in one.
  Effect.provide(CliConfig.layer({ builtIns: [GlobalFlag.Help, GlobalFlag.Version, GlobalFlag.Completions] })),
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
