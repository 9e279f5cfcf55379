/**
 * A task's resource usage as containerd samples it (`Tasks.Metrics`).
 *
 * containerd answers with an `Any` whose type URL names the cgroup version of the host:
 * `io.containerd.cgroups.v1.Metrics` (containerd/cgroups stats/v1, decoded here into the
 * generated message, every counter a bigint so nothing loses precision) or
 * `io.containerd.cgroups.v2.Metrics`, which this library does not decode yet and reports as
 * `Unimplemented` rather than as an empty sample.
 */
import { Effect } from "effect"
import { type ContainerdError, notFound, unimplemented, unknown } from "./ContainerdError.ts"
import { messageName, unpackMessage } from "./Any.ts"
import { Metrics } from "../gen/io/containerd/cgroups/v1/metrics.ts"
import type { Any } from "../gen/google/protobuf/any.ts"

export type {
  BlkIOEntry,
  CPUStat,
  MemoryEntry,
  MemoryStat,
  Metrics as CgroupV1Stats,
  NetworkStat,
  PidsStat
} from "../gen/io/containerd/cgroups/v1/metrics.ts"

/** Type URL of cgroup v1 statistics. */
export const CgroupV1TypeUrl = "io.containerd.cgroups.v1.Metrics"
/** Type URL of cgroup v2 statistics (not decoded yet). */
export const CgroupV2TypeUrl = "io.containerd.cgroups.v2.Metrics"

/** One sample of a task's cgroup. */
export interface TaskMetrics {
  /** When containerd took the sample. */
  readonly timestamp: Date | undefined
  readonly cgroup: Metrics
}

/** Decodes the payload of one `Tasks.Metrics` answer; `method` names the caller in errors. */
export const decodeTaskMetrics = (
  method: string,
  timestamp: Date | undefined,
  data: Any | undefined
): Effect.Effect<TaskMetrics, ContainerdError> => {
  if (data === undefined) return Effect.fail(notFound(method, "containerd returned no metrics for the task"))
  const name = messageName(data.typeUrl)
  if (name === CgroupV2TypeUrl) {
    return Effect.fail(unimplemented(method, "cgroup v2 metrics are not supported yet (the host runs the unified hierarchy)"))
  }
  return unpackMessage(Metrics, data).pipe(
    Effect.map((cgroup): TaskMetrics => ({ timestamp, cgroup })),
    Effect.mapError((error) => unknown(method, `${error.message}: ${error.typeUrl}`, error))
  )
}
