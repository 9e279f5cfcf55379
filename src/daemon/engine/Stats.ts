/**
 * `docker stats`, as dockerd 20.10 answers `GET /containers/{id}/stats` (moby's
 * `daemon/stats.go`, `stats_unix.go`, `daemon/stats/collector.go`): each frame
 * is containerd's cgroup v1 sample of the task (`Task.metrics`) in dockerd's
 * `StatsJSON` shape, with the host's CPU time from `/proc/stat` (which the CLI
 * divides the container's by to get a percentage), the host's memory as the
 * limit of a container without one, and the interfaces of the container's
 * network namespace from its init's `/proc/<pid>/net/dev`.
 *
 * Counters stay bigints (an unlimited cgroup's memory limit is 2^63-4096): the
 * API writes them with `stringifyJson`. Unlike dockerd, which samples every
 * container from one collector each second, each request samples its own
 * container when it needs a frame: nothing samples while no client reads, and a
 * client that goes away leaves nothing running.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import { Effect, Option, PubSub, type Scope, Stream } from "effect"
import type { BlkIOEntry, CgroupV1Stats } from "../../domain/TaskMetrics.ts"
import { badRequest, type DockerError, internal } from "../DockerError.ts"
import { type Environment, lib, type Notice, trackedOf } from "./Environment.ts"
import { isRunning } from "./State.ts"
import type { Entry } from "./Store.ts"

/** What the client asked: a frame each second (`stream`, the default), or one sample only (`one-shot`). */
export interface StatsOptions {
  readonly stream: boolean
  readonly oneShot: boolean
}

/** dockerd's `CPUStats`. */
export interface CpuStatsJson {
  readonly cpu_usage: {
    readonly total_usage: bigint
    readonly percpu_usage?: ReadonlyArray<bigint> | undefined
    readonly usage_in_kernelmode: bigint
    readonly usage_in_usermode: bigint
  }
  readonly system_cpu_usage?: bigint | undefined
  readonly online_cpus?: number | undefined
  readonly throttling_data: { readonly periods: bigint; readonly throttled_periods: bigint; readonly throttled_time: bigint }
}

/** dockerd's `BlkioStatEntry`. */
interface BlkioEntryJson {
  readonly major: bigint
  readonly minor: bigint
  readonly op: string
  readonly value: bigint
}

/** dockerd's `NetworkStats`. */
interface NetworkJson {
  readonly rx_bytes: bigint
  readonly rx_packets: bigint
  readonly rx_errors: bigint
  readonly rx_dropped: bigint
  readonly tx_bytes: bigint
  readonly tx_packets: bigint
  readonly tx_errors: bigint
  readonly tx_dropped: bigint
}

/** One frame, dockerd's `StatsJSON` in its field order (absent fields are its `omitempty` ones). */
export interface StatsJson {
  readonly read: string
  readonly preread: string
  readonly pids_stats: { readonly current?: bigint | undefined; readonly limit?: bigint | undefined }
  readonly blkio_stats: Readonly<Record<(typeof BLKIO_FIELDS)[number][0], ReadonlyArray<BlkioEntryJson> | null>>
  readonly num_procs: 0
  readonly storage_stats: Record<string, never>
  readonly cpu_stats: CpuStatsJson
  readonly precpu_stats: CpuStatsJson
  readonly memory_stats: {
    readonly usage?: bigint | undefined
    readonly max_usage?: bigint | undefined
    readonly stats?: Readonly<Record<string, bigint>> | undefined
    readonly failcnt?: bigint | undefined
    readonly limit?: bigint | undefined
  }
  readonly name: string
  readonly id: string
  readonly networks?: Readonly<Record<string, NetworkJson>> | undefined
}

/** How often a stream samples, as dockerd's collector (1 s). */
const INTERVAL = "1 second"

/** Go's zero `time.Time` in RFC 3339. */
const ZERO_TIME = "0001-01-01T00:00:00Z"

/** dockerd's blkio lists, each from its cgroup v1 counterpart. */
const BLKIO_FIELDS = [
  ["io_service_bytes_recursive", "ioServiceBytesRecursive"],
  ["io_serviced_recursive", "ioServicedRecursive"],
  ["io_queue_recursive", "ioQueuedRecursive"],
  ["io_service_time_recursive", "ioServiceTimeRecursive"],
  ["io_wait_time_recursive", "ioWaitTimeRecursive"],
  ["io_merged_recursive", "ioMergedRecursive"],
  ["io_time_recursive", "ioTimeRecursive"],
  ["sectors_recursive", "sectorsRecursive"]
] as const

/** The keys of `memory_stats.stats`, as moby's `statsV1` names the cgroup's `memory.stat` counters. */
const MEMORY_FIELDS = [
  ["cache", "cache"],
  ["rss", "rss"],
  ["rss_huge", "rssHuge"],
  ["mapped_file", "mappedFile"],
  ["dirty", "dirty"],
  ["writeback", "writeback"],
  ["pgpgin", "pgPgIn"],
  ["pgpgout", "pgPgOut"],
  ["pgfault", "pgFault"],
  ["pgmajfault", "pgMajFault"],
  ["inactive_anon", "inactiveAnon"],
  ["active_anon", "activeAnon"],
  ["inactive_file", "inactiveFile"],
  ["active_file", "activeFile"],
  ["unevictable", "unevictable"],
  ["hierarchical_memory_limit", "hierarchicalMemoryLimit"],
  ["hierarchical_memsw_limit", "hierarchicalSwapLimit"],
  ["total_cache", "totalCache"],
  ["total_rss", "totalRss"],
  ["total_rss_huge", "totalRssHuge"],
  ["total_mapped_file", "totalMappedFile"],
  ["total_dirty", "totalDirty"],
  ["total_writeback", "totalWriteback"],
  ["total_pgpgin", "totalPgPgIn"],
  ["total_pgpgout", "totalPgPgOut"],
  ["total_pgfault", "totalPgFault"],
  ["total_pgmajfault", "totalPgMajFault"],
  ["total_inactive_anon", "totalInactiveAnon"],
  ["total_active_anon", "totalActiveAnon"],
  ["total_inactive_file", "totalInactiveFile"],
  ["total_active_file", "totalActiveFile"],
  ["total_unevictable", "totalUnevictable"]
] as const

const EMPTY_CPU: CpuStatsJson = {
  cpu_usage: { total_usage: 0n, usage_in_kernelmode: 0n, usage_in_usermode: 0n },
  throttling_data: { periods: 0n, throttled_periods: 0n, throttled_time: 0n }
}

/** Go's `omitempty` for a counter. */
const nonZero = (value: bigint | undefined) => (value === undefined || value === 0n ? undefined : value)

/** Go's `time.RFC3339Nano`: the fraction without its trailing zeros, none when whole. */
const rfc3339 = (date: Date) => date.toISOString().replace(/\.?0*Z$/, "Z")

/** The frame of a container that does not run (or no longer does): its name and id, every count zero. */
const emptyFrame = (entry: Entry): StatsJson => ({
  read: ZERO_TIME,
  preread: ZERO_TIME,
  pids_stats: {},
  blkio_stats: Object.fromEntries(BLKIO_FIELDS.map(([name]) => [name, null])) as StatsJson["blkio_stats"],
  num_procs: 0,
  storage_stats: {},
  cpu_stats: EMPTY_CPU,
  precpu_stats: EMPTY_CPU,
  memory_stats: {},
  name: `/${entry.name}`,
  id: entry.id
})

/**
 * The host's CPU time as moby's collector reads it: the first seven fields of
 * `/proc/stat`'s `cpu` line (user … softirq) in clock ticks (USER_HZ, 100 on
 * Linux) as nanoseconds, and the number of `cpuN` lines.
 */
export const parseProcStat = (text: string): { readonly systemCpuUsage: bigint; readonly onlineCpus: number } | undefined => {
  const lines = text.split("\n")
  const total = lines.find((line) => line.startsWith("cpu "))
  if (total === undefined) return undefined
  const ticks = total.trim().split(/\s+/).slice(1, 8)
  if (ticks.length < 7 || !ticks.every((field) => /^\d+$/.test(field))) return undefined
  return {
    systemCpuUsage: ticks.reduce((sum, field) => sum + BigInt(field), 0n) * 10_000_000n,
    onlineCpus: lines.filter((line) => /^cpu\d/.test(line)).length
  }
}

/**
 * The interfaces of `/proc/<pid>/net/dev` but the loopback, as libnetwork's
 * sandbox statistics count its own interfaces only; none when nothing is left.
 */
export const parseNetDev = (text: string): Record<string, NetworkJson> | undefined => {
  const networks: Record<string, NetworkJson> = {}
  for (const line of text.split("\n").slice(2)) {
    const colon = line.indexOf(":")
    if (colon === -1) continue
    const name = line.slice(0, colon).trim()
    const f = line.slice(colon + 1).trim().split(/\s+/)
    if (name === "lo" || f.length < 16 || !f.every((field) => /^\d+$/.test(field))) continue
    const at = (i: number) => BigInt(f[i]!)
    networks[name] = {
      rx_bytes: at(0),
      rx_packets: at(1),
      rx_errors: at(2),
      rx_dropped: at(3),
      tx_bytes: at(8),
      tx_packets: at(9),
      tx_errors: at(10),
      tx_dropped: at(11)
    }
  }
  return Object.keys(networks).length === 0 ? undefined : networks
}

const hostCpu = Effect.try({
  try: () => parseProcStat(fs.readFileSync("/proc/stat", "utf8")),
  catch: (cause) => internal(`reading /proc/stat: ${cause instanceof Error ? cause.message : String(cause)}`, cause)
}).pipe(Effect.flatMap((cpu) => cpu === undefined ? Effect.fail(internal("/proc/stat has no cpu line")) : Effect.succeed(cpu)))

/** Its network namespace's interfaces; none on the host's network, or once the process is gone. */
const networksOf = (entry: Entry, pid: number) =>
  Effect.sync(() => {
    if (entry.stored.HostConfig.NetworkMode === "host") return undefined
    try {
      return parseNetDev(fs.readFileSync(`/proc/${pid}/net/dev`, "utf8"))
    } catch {
      return undefined
    }
  })

const blkioList = (entries: ReadonlyArray<BlkIOEntry> | undefined): ReadonlyArray<BlkioEntryJson> =>
  (entries ?? []).map((e) => ({ major: e.major, minor: e.minor, op: e.op, value: e.value }))

/** A sample in dockerd's shape (moby's `statsV1` and the collector's CPU fields). */
const frameOf = (
  entry: Entry,
  read: Date | undefined,
  cgroup: CgroupV1Stats,
  host: { readonly systemCpuUsage: bigint; readonly onlineCpus: number },
  networks: Record<string, NetworkJson> | undefined
): StatsJson => {
  const { blkio, cpu, memory, pids } = cgroup
  const machineMemory = BigInt(os.totalmem())
  const limit = memory === undefined
    ? undefined
    : memory.hierarchicalMemoryLimit > machineMemory ? machineMemory : memory.hierarchicalMemoryLimit
  const cpuStats: CpuStatsJson = {
    cpu_usage: {
      total_usage: cpu?.usage?.total ?? 0n,
      percpu_usage: cpu?.usage?.perCpu.length ? cpu.usage.perCpu : undefined,
      usage_in_kernelmode: cpu?.usage?.kernel ?? 0n,
      usage_in_usermode: cpu?.usage?.user ?? 0n
    },
    system_cpu_usage: nonZero(host.systemCpuUsage),
    online_cpus: host.onlineCpus === 0 ? undefined : host.onlineCpus,
    throttling_data: {
      periods: cpu?.throttling?.periods ?? 0n,
      throttled_periods: cpu?.throttling?.throttledPeriods ?? 0n,
      throttled_time: cpu?.throttling?.throttledTime ?? 0n
    }
  }
  const empty = emptyFrame(entry)
  return {
    ...empty,
    read: read === undefined ? ZERO_TIME : rfc3339(read),
    pids_stats: { current: nonZero(pids?.current), limit: nonZero(pids?.limit) },
    blkio_stats: blkio === undefined
      ? empty.blkio_stats
      : Object.fromEntries(BLKIO_FIELDS.map(([name, field]) => [name, blkioList(blkio[field])])) as StatsJson["blkio_stats"],
    cpu_stats: cpuStats,
    memory_stats: memory === undefined ? {} : {
      usage: nonZero(memory.usage?.usage),
      max_usage: nonZero(memory.usage?.max),
      // Go writes a map's keys sorted.
      stats: Object.fromEntries(MEMORY_FIELDS.map(([name, field]) => [name, memory[field]] as const).sort(([a], [b]) => a < b ? -1 : 1)),
      failcnt: nonZero(memory.usage?.failcnt),
      limit: nonZero(limit)
    },
    networks
  }
}

/** Its task while it runs (as dockerd, a restarting container does not). */
const runningTask = (env: Environment, entry: Entry) =>
  Effect.map(trackedOf(env, entry), (tracked) =>
    tracked?.task !== undefined && isRunning(tracked.state.status) && entry.phase._tag !== "Restarting"
      ? tracked.task
      : undefined)

/**
 * One sample of the container now: the empty frame when it does not run or its
 * task is gone before containerd could sample it; a cgroup v2 host fails 501.
 */
const sample = (env: Environment, entry: Entry): Effect.Effect<StatsJson, DockerError> =>
  Effect.gen(function*() {
    const task = yield* runningTask(env, entry)
    if (task === undefined) return emptyFrame(entry)
    const metrics = yield* lib(task.metrics.pipe(
      Effect.map(Option.some),
      Effect.catchIf((error) => error.reason._tag === "NotFound", () => Effect.succeed(Option.none()))
    ))
    if (Option.isNone(metrics)) return emptyFrame(entry)
    const host = yield* hostCpu
    return frameOf(entry, metrics.value.timestamp, metrics.value.cgroup, host, yield* networksOf(entry, task.pid))
  })

/** A frame with the one before it as its `precpu_stats` and `preread`, as dockerd chains them. */
const after = (frame: StatsJson, previous: StatsJson): StatsJson => ({
  ...frame,
  preread: previous.read,
  precpu_stats: previous.cpu_stats
})

/**
 * The frames the client asked for. What the answer without a stream needs is
 * sampled here, as is a stream's first frame, before any header goes out, so a
 * failure is the answer's status. A stream samples again a second after each
 * frame, until the container is removed (or a sample fails: its status is sent).
 */
export const stats = (
  env: Environment,
  entry: Entry,
  options: StatsOptions
): Effect.Effect<Stream.Stream<StatsJson, DockerError>, DockerError, Scope.Scope> =>
  Effect.gen(function*() {
    if (options.stream && options.oneShot) return yield* badRequest("cannot have stream=true and one-shot=true")
    if (!options.stream) {
      // A container that does not run answers its empty frame at once, as dockerd's.
      if (options.oneShot || (yield* runningTask(env, entry)) === undefined) return Stream.make(yield* sample(env, entry))
      // Two samples a second apart, so the CPU counters have something to be compared with.
      const first = yield* sample(env, entry)
      return Stream.make(after(yield* Effect.delay(sample(env, entry), INTERVAL), first))
    }
    // Subscribed before the first sample, so a removal in between still ends the stream.
    const subscription = yield* PubSub.subscribe(env.notices)
    const removed = Stream.fromSubscription(subscription).pipe(
      Stream.filter((notice: Notice) => notice.id === entry.id && notice._tag === "Removed"),
      Stream.runHead
    )
    const first = yield* sample(env, entry)
    const later = Stream.unfold(first, (previous) =>
      Effect.map(Effect.delay(sample(env, entry), INTERVAL), (next) => [after(next, previous), next] as const))
    return Stream.concat(Stream.make(first), later).pipe(Stream.interruptWhen(removed))
  })
