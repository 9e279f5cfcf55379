/**
 * `docker update`, as moby's `daemon/update.go` and `container.UpdateContainer`:
 * the restart policy and the memory, CPU, cpuset and pids limits of a container
 * change for its running (or paused) task and for its next starts.
 *
 * The update is merged into what the container has (a field not set keeps its
 * value, and a CPU limit set one way cannot be changed the other way, in
 * dockerd's words), then the whole result is checked by the create's rules
 * (`Resources.limitsOf`), so a container never holds limits its create would
 * have refused. Any other field set is a 400 naming it, before anything changes.
 *
 * Order: check, then the task (`Tasks.Update`), then the record (one
 * `Containers.Update` of the spec and the stored config, which the next start
 * and inspect read). dockerd stores first and restores on failure; updating the
 * task first means a refused `runc update` (a limit under the current use, say)
 * leaves nothing to undo, and the one write after it is undone on the task if it
 * fails, so what is stored and what runs agree either way.
 */
import { Effect, Result } from "effect"
import { replaceLimits } from "../../domain/OciResources.ts"
import type { Task } from "../../services/Runtime.ts"
import { badRequest, conflict, internal } from "../DockerError.ts"
import { type HostConfig, UPDATE_HONOURED, type UpdateBody } from "../Model.ts"
import { isSet } from "./CreateFields.ts"
import { type Environment, inNamespace, lib, publish, trackedOf } from "./Environment.ts"
import { parsePolicy } from "./HostConfig.ts"
import { type HostFacts, type Limits, limitsOf, readHostFacts } from "./Resources.ts"
import { isRunning } from "./State.ts"
import { storedExtensions } from "./Store.ts"

/** The `docker update` flag of a refused field, where the CLI has one. */
const FLAGS: Partial<Record<keyof UpdateBody, string>> = {
  BlkioWeight: "--blkio-weight",
  KernelMemory: "--kernel-memory",
  CpuRealtimePeriod: "--cpu-rt-period",
  CpuRealtimeRuntime: "--cpu-rt-runtime"
}

const HONOURED: ReadonlySet<string> = new Set([...UPDATE_HONOURED, "RestartPolicy"])

/** The first field set that an update does not change here, as its 400. */
const refusedField = (body: UpdateBody): string | undefined => {
  const field = Object.entries(body).find(([key, value]) =>
    !HONOURED.has(key) && isSet(value) && !(key === "MemorySwappiness" && value === -1)
  )?.[0] as keyof UpdateBody | undefined
  if (field === undefined) return undefined
  const flag = FLAGS[field]
  return `${field}${flag === undefined ? "" : ` (${flag})`} cannot be updated by effect-containerd: ` +
    "only the restart policy and the memory, CPU, cpuset and pids limits can"
}

type Fail = Result.Result<never, string>
const fail = (message: string): Fail => Result.fail(message)

/** The container's resources with the update's set fields over them, as `UpdateContainer` merges them. */
const merge = (current: HostConfig, update: UpdateBody): Result.Result<HostConfig, string> => {
  const set = (n: number | null | undefined) => (n ?? 0) !== 0
  if (set(update.NanoCpus) && set(current.CpuPeriod)) {
    return fail("Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set")
  }
  if (set(update.NanoCpus) && set(current.CpuQuota)) {
    return fail("Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set")
  }
  if (set(update.CpuPeriod) && set(current.NanoCpus)) {
    return fail("Conflicting options: CPU Period cannot be updated as NanoCpus has already been set")
  }
  if (set(update.CpuQuota) && set(current.NanoCpus)) {
    return fail("Conflicting options: CPU Quota cannot be updated as NanoCpus has already been set")
  }
  // The swap the container has: the create's default (twice the memory) made explicit, as dockerd stores it.
  const memory = current.Memory ?? 0
  const swap = memory > 0 && !current.MemorySwap ? memory * 2 : current.MemorySwap ?? 0
  if (set(update.Memory) && !set(update.MemorySwap) && swap > 0 && update.Memory! > swap) {
    return fail("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time")
  }
  const changed = Object.fromEntries(
    UPDATE_HONOURED.flatMap((key): Array<readonly [string, unknown]> => {
      const value = update[key]
      // PidsLimit is the one field whose 0 means something (no limit): the CLI sends it only with the flag.
      const given = key === "PidsLimit" ? value !== undefined && value !== null : isSet(value)
      return given ? [[key, value]] : []
    })
  ) as Partial<HostConfig>
  return Result.succeed({ ...current, ...(swap !== 0 ? { MemorySwap: swap } : {}), ...changed })
}

/** The limits the task is given: the merged ones, and "no limit" said as runc needs it (-1) for pids set to 0 or below. */
const taskLimits = (limits: Limits, update: UpdateBody): Limits =>
  update.PidsLimit !== undefined && update.PidsLimit !== null && update.PidsLimit <= 0 ? { ...limits, pids: { limit: -1 } } : limits

/** `POST /containers/{id}/update`. */
export const makeUpdate = (env: Environment, facts: HostFacts = readHostFacts()) =>
  Effect.fn("Engine.update")(function*(ref: string, body: UpdateBody) {
    // As dockerd: the container first (404), then the settings (400).
    const entry = yield* env.store.find(ref)
    const refused = refusedField(body)
    if (refused !== undefined) return yield* badRequest(refused)
    const policyName = body.RestartPolicy?.Name ?? ""
    const policy = policyName === "" ? undefined : yield* Result.match(parsePolicy(body.RestartPolicy), {
      onSuccess: Effect.succeed,
      onFailure: (message) => Effect.fail(badRequest(message))
    })
    const cannot = (message: string) => badRequest(`Cannot update container ${entry.id}: ${message}`)
    // As moby's container lock: no start or removal is half-way while the limits change.
    return yield* entry.lock.withPermits(1)(Effect.gen(function*() {
      if (entry.phase._tag === "Removing") {
        return yield* conflict(`Cannot update container ${entry.id}: container is marked for removal and cannot be "update"`)
      }
      const current = entry.stored.HostConfig
      if (policy !== undefined && policy.name !== "no" && current.AutoRemove === true) {
        return yield* cannot("Restart policy cannot be updated because AutoRemove is enabled for the container")
      }
      const merged = yield* Result.match(merge(current, body), { onSuccess: Effect.succeed, onFailure: (m) => Effect.fail(cannot(m)) })
      const limits = yield* Result.match(limitsOf(merged, facts), { onSuccess: Effect.succeed, onFailure: (m) => Effect.fail(badRequest(m)) })
      const host: HostConfig = policy === undefined ? merged : { ...merged, RestartPolicy: body.RestartPolicy }
      const stored = { ...entry.stored, HostConfig: host }
      const tracked = yield* trackedOf(env, entry)
      if (tracked?.container === undefined) return yield* internal(`container ${entry.id} is not tracked: it cannot be updated`)
      const limitsChanged = UPDATE_HONOURED.some((key) => body[key] !== undefined && body[key] !== null)
      // Restarting: no task to change; the next start reads the record, as dockerd's `IsRestarting` skip.
      const task: Task | undefined = limitsChanged && tracked.task !== undefined && isRunning(tracked.state.status)
        ? tracked.task
        : undefined
      const ns = inNamespace(env)
      if (task !== undefined) yield* lib(ns(task.update(taskLimits(limits, body))), `Cannot update container ${entry.id}`)
      yield* lib(ns(tracked.container.update({
        ...(limitsChanged ? { spec: replaceLimits(limits) } : {}),
        extensions: storedExtensions(stored)
      })), `Cannot update container ${entry.id}`).pipe(
        Effect.tapError(() =>
          task === undefined ? Effect.void : Result.match(limitsOf(current, facts), {
            onFailure: () => Effect.void,
            onSuccess: (before) =>
              ns(task.update(before)).pipe(
                Effect.catch((error) => Effect.logWarning(`container ${entry.id}: its limits could not be set back after a failed update`, error))
              )
          })
        )
      )
      entry.stored = stored
      if (policy !== undefined) entry.restarts.setPolicy(policy)
      yield* publish(env, entry, "update")
      return { Warnings: [] as ReadonlyArray<string> }
    }))
  })

