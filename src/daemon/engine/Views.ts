/**
 * The engine's read-only views, as moby's `daemon/inspect.go`, `list.go` and
 * `top_unix.go`: a container's Docker state, inspect, the filtered list, and the
 * counts of `GET /info` (`top` is `Top.ts`). They only read:
 * the monitors' state of the task, the entry's phase, what was stored at create.
 */
import { Clock, Effect, Option } from "effect"
import { badRequest, type DockerError, orBadRequest } from "../DockerError.ts"
import { matchLabels, regexpFilter } from "../Filters.ts"
import { type ContainerInspectJson, type ContainerStateJson, type ContainerSummaryJson, ZERO_TIME } from "../Model.ts"
import { withoutInit } from "../../domain/OciResources.ts"
import { filesOf } from "../network/HostsFiles.ts"
import { hostnameOf } from "./Config.ts"
import { type Environment, logPathOf, trackedOf } from "./Environment.ts"
import { HEALTH_FILTER_VALUES, healthFilterValue, healthJson, healthText } from "./Health.ts"
import { networkSettingsJson, summaryNetworkJson } from "./Networking.ts"
import { resourcesJson } from "./Resources.ts"
import type { ContainerFilters } from "./Shape.ts"
import { isPaused, isRunning, status } from "./State.ts"
import type { Entry } from "./Store.ts"

const iso = (date: Date | undefined) => date === undefined ? ZERO_TIME : date.toISOString()

/** Docker's `State` of the container. */
export const stateOf = (env: Environment, entry: Entry) =>
  Effect.map(trackedOf(env, entry), (tracked): ContainerStateJson => {
    const state = tracked?.state
    const running = isRunning(state?.status)
    const now = status(state?.status, entry.phase)
    return {
      Status: now,
      Running: running,
      Paused: isPaused(state?.status, entry.phase),
      Restarting: now === "restarting",
      OOMKilled: state?.oomKilled ?? false,
      Dead: now === "dead",
      Pid: running ? state?.pid ?? 0 : 0,
      ExitCode: running ? 0 : state?.exitCode ?? 0,
      Error: state?.exitUnknown === true ? "the container's exit status could not be known" : "",
      StartedAt: iso(state?.startedAt),
      FinishedAt: running ? ZERO_TIME : iso(state?.exitedAt),
      ...(entry.health === undefined ? {} : { Health: healthJson(entry.health) })
    }
  })

type Spec = { readonly process?: { readonly args?: ReadonlyArray<string>; readonly env?: ReadonlyArray<string> } }

const specOf = (env: Environment, entry: Entry) =>
  Effect.map(trackedOf(env, entry), (t) => (t?.container?.info.spec ?? {}) as Spec)

/** The container's command as dockerd shows it: without the `--init` in front. */
const commandOf = (entry: Entry, spec: Spec): ReadonlyArray<string> => {
  const args = spec.process?.args ?? []
  return entry.stored.HostConfig.Init === true ? withoutInit(args) : args
}

/** `Config` as dockerd shows it: the request's, completed by the image's. */
const configJson = (entry: Entry) => {
  const config = entry.stored.Config
  return {
    Hostname: hostnameOf(entry.id, config, entry.stored.HostConfig),
    Domainname: config.Domainname ?? "",
    User: entry.config.User,
    AttachStdin: config.AttachStdin ?? false,
    AttachStdout: config.AttachStdout ?? false,
    AttachStderr: config.AttachStderr ?? false,
    Tty: config.Tty ?? false,
    OpenStdin: config.OpenStdin ?? false,
    StdinOnce: config.StdinOnce ?? false,
    ...(exposedJson(entry) === undefined ? {} : { ExposedPorts: exposedJson(entry) }),
    // As dockerd: what was asked merged with the image's, not the process's (no HOSTNAME; a bare name stays).
    Env: entry.config.Env,
    Cmd: entry.config.Cmd,
    Entrypoint: entry.config.Entrypoint,
    Image: entry.stored.Image,
    WorkingDir: entry.config.WorkingDir,
    Labels: entry.config.Labels,
    ...(entry.config.Healthcheck === undefined ? {} : { Healthcheck: entry.config.Healthcheck }),
    ...(entry.config.StopSignal ? { StopSignal: entry.config.StopSignal } : {}),
    ...(config.StopTimeout !== undefined && config.StopTimeout !== null ? { StopTimeout: config.StopTimeout } : {})
  }
}

/** `Config.ExposedPorts` as dockerd shows it: the request's merged with the image's (absent when none). */
const exposedJson = (entry: Entry) => {
  const merged = { ...entry.stored.ImageConfig?.ExposedPorts, ...(entry.stored.Config.ExposedPorts as Record<string, unknown> | null | undefined) }
  return Object.keys(merged).length === 0 ? undefined : Object.fromEntries(Object.keys(merged).map((key) => [key, {}]))
}

const hostConfigJson = (entry: Entry) => {
  const host = entry.stored.HostConfig
  return {
    Binds: host.Binds ?? null,
    NetworkMode: host.NetworkMode || "default",
    PortBindings: host.PortBindings ?? {},
    PublishAllPorts: host.PublishAllPorts ?? false,
    RestartPolicy: { Name: entry.restarts.policy.name, MaximumRetryCount: entry.restarts.policy.max },
    AutoRemove: host.AutoRemove ?? false,
    ReadonlyRootfs: host.ReadonlyRootfs ?? false,
    Tmpfs: host.Tmpfs ?? null,
    Memory: host.Memory ?? 0,
    CpuShares: host.CpuShares ?? 0,
    Privileged: host.Privileged ?? false,
    CapAdd: host.CapAdd ?? null,
    CapDrop: host.CapDrop ?? null,
    OomScoreAdj: host.OomScoreAdj ?? 0,
    SecurityOpt: host.SecurityOpt ?? null,
    Runtime: host.Runtime || "runc",
    Dns: host.Dns ?? null,
    DnsOptions: host.DnsOptions ?? null,
    DnsSearch: host.DnsSearch ?? null,
    ExtraHosts: host.ExtraHosts ?? null,
    LogConfig: { Type: "json-file", Config: host.LogConfig?.Config ?? {} },
    ...resourcesJson(host)
  }
}

const mountsJson = (entry: Entry) => {
  const host = entry.stored.HostConfig
  return [
    ...(host.Binds ?? []).map((bind) => {
      const [source = "", destination = "", mode = ""] = bind.split(":")
      return { Type: "bind", Source: source, Destination: destination, Mode: mode, RW: !mode.split(",").includes("ro"), Propagation: "rprivate" }
    }),
    ...Object.keys(host.Tmpfs ?? {}).map((destination) => ({ Type: "tmpfs", Source: "", Destination: destination, Mode: "", RW: true, Propagation: "" }))
  ]
}

/** `GET /containers/{id}/json`. */
export const inspect = (env: Environment, entry: Entry) =>
  Effect.gen(function*() {
    const state = yield* stateOf(env, entry)
    const spec = yield* specOf(env, entry)
    const args = commandOf(entry, spec)
    const files = filesOf(env.options.logRoot, entry.id)
    const networkSettings = yield* networkSettingsJson(env, entry, yield* attachmentOf(env, entry))
    return {
      Id: entry.id,
      Created: entry.stored.Created,
      Path: args[0] ?? "",
      Args: args.slice(1),
      State: state,
      Image: entry.stored.ImageId,
      LogPath: logPathOf(env, entry),
      ResolvConfPath: files.resolvConf,
      HostnamePath: files.hostname,
      HostsPath: files.hosts,
      Name: `/${entry.name}`,
      RestartCount: entry.restarts.count,
      Driver: "overlayfs",
      Platform: "linux",
      HostConfig: hostConfigJson(entry),
      Config: configJson(entry),
      Mounts: mountsJson(entry),
      NetworkSettings: networkSettings
    } satisfies ContainerInspectJson
  })

/** Docker's `2 minutes` (go-units' HumanDuration). */
const humanDuration = (ms: number): string => {
  const s = Math.round(ms / 1000)
  if (s < 1) return "Less than a second"
  if (s < 60) return `${s} second${s === 1 ? "" : "s"}`
  const m = Math.round(s / 60)
  if (m < 60) return m === 1 ? "About a minute" : `${m} minutes`
  const h = Math.round(m / 60)
  if (h < 48) return h === 1 ? "About an hour" : `${h} hours`
  return `${Math.round(h / 24)} days`
}

/** The `STATUS` column of `docker ps`. */
const statusText = (state: ContainerStateJson, now: number): string => {
  switch (state.Status) {
    case "running":
      // As dockerd's State.String: the health only of a running, unpaused container.
      return state.Health === undefined
        ? `Up ${humanDuration(now - Date.parse(state.StartedAt))}`
        : `Up ${humanDuration(now - Date.parse(state.StartedAt))} (${healthText(state.Health.Status)})`
    case "paused":
      return `Up ${humanDuration(now - Date.parse(state.StartedAt))} (Paused)`
    case "restarting":
      return `Restarting (${state.ExitCode}) ${humanDuration(now - Date.parse(state.FinishedAt))} ago`
    case "exited":
      return state.FinishedAt === ZERO_TIME ? `Exited (${state.ExitCode})` : `Exited (${state.ExitCode}) ${humanDuration(now - Date.parse(state.FinishedAt))} ago`
    case "removing":
      return "Removal In Progress"
    case "dead":
      return "Dead"
    case "created":
      return "Created"
  }
}

const STATUSES = ["created", "restarting", "running", "removing", "paused", "exited", "dead"]

/** `GET /containers/json`: running ones (all with `all` or a status filter), newest first. */
export const list = (
  env: Environment,
  options: { readonly all?: boolean | undefined; readonly limit?: number | undefined; readonly filters?: ContainerFilters | undefined }
): Effect.Effect<ReadonlyArray<ContainerSummaryJson>, DockerError> =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const filters = options.filters ?? {}
    const anyOf = (key: string, test: (value: string) => boolean) => {
      const values = filters[key]
      return values === undefined || values.length === 0 || values.some(test)
    }
    for (const wanted of filters.status ?? []) {
      if (!STATUSES.includes(wanted)) return yield* Effect.fail(badRequest(`invalid filter 'status=${wanted}'`))
    }
    for (const wanted of filters.health ?? []) {
      if (!HEALTH_FILTER_VALUES.includes(wanted)) return yield* Effect.fail(badRequest(`Unrecognised filter value for health: ${wanted}`))
    }
    // Names match as Go regular expressions (dockerd's name filter), in linear time; a malformed one is a 400.
    const namePatterns = yield* Effect.forEach(filters.name ?? [], (pattern) => orBadRequest(regexpFilter("name", pattern)))
    const rows = yield* Effect.forEach(env.store.all(), (entry) =>
      Effect.map(Effect.all([stateOf(env, entry), specOf(env, entry)]), ([state, spec]) => ({ entry, state, spec })))
    const all = options.all === true || (filters.status?.length ?? 0) > 0
    const selected = rows
      .filter(({ entry, state }) =>
        (all || state.Running) &&
        anyOf("status", (v) => v === state.Status) &&
        anyOf("health", (v) => v === healthFilterValue(entry.health)) &&
        anyOf("id", (v) => entry.id.startsWith(v)) &&
        // As dockerd: against the name with its leading slash and without.
        (namePatterns.length === 0 || namePatterns.some((pattern) => pattern.test(`/${entry.name}`) || pattern.test(entry.name))) &&
        matchLabels(filters.label, entry.config.Labels))
      .sort((a, b) => b.entry.stored.Created.localeCompare(a.entry.stored.Created))
    const limited = options.limit !== undefined && options.limit > 0 ? selected.slice(0, options.limit) : selected
    return yield* Effect.forEach(limited, ({ entry, spec, state }) =>
      Effect.map(Effect.flatMap(attachmentOf(env, entry), (a) => summaryNetworkJson(env, entry, a)), (network): ContainerSummaryJson => ({
      Id: entry.id,
      Names: [`/${entry.name}`],
      Image: entry.stored.Image,
      ImageID: entry.stored.ImageId,
      Command: commandOf(entry, spec).join(" "),
      Created: Math.floor(Date.parse(entry.stored.Created) / 1000),
      State: state.Status,
      Status: statusText(state, now),
      Labels: entry.config.Labels,
      Ports: network.Ports,
      Mounts: [],
      HostConfig: { NetworkMode: entry.stored.HostConfig.NetworkMode || "default" },
      NetworkSettings: network.NetworkSettings
    })))
  })

/** The network attachment of its running task, if it has one. */
const attachmentOf = (env: Environment, entry: Entry) =>
  Effect.flatMap(trackedOf(env, entry), (tracked) =>
    !isRunning(tracked?.state.status)
      ? Effect.succeed(undefined)
      // The library's live one: connect and disconnect change it after the task's start.
      : env.networks === undefined
      ? Effect.succeed(tracked?.task?.attachment)
      : Effect.map(env.networks.library.get(env.options.namespace, entry.id), Option.getOrUndefined))

/** The containers made from image `imageId` (a store query: no listing is rendered), running ones flagged. */
export const usersOf = (env: Environment, imageId: string) =>
  Effect.forEach(env.store.all().filter((entry) => entry.stored.ImageId === imageId), (entry) =>
    Effect.map(stateOf(env, entry), (state) => ({ id: entry.id, running: state.Running || state.Restarting })))

/** Counts for `GET /info`. */
export const counts = (env: Environment) =>
  Effect.gen(function*() {
    const states = yield* Effect.forEach(env.store.all(), (entry) => stateOf(env, entry))
    const paused = states.filter((s) => s.Paused).length
    const running = states.filter((s) => s.Running && !s.Paused).length
    return { total: states.length, running, paused, stopped: states.length - running - paused }
  })
