/**
 * A container's task, as containerd's Go client has it (`task.go`): the init
 * process plus what only a task can do — signal all its processes, pause and
 * resume, exec, list pids, sample metrics, update resources.
 *
 * Exec starts of one task are bounded (`RuntimeOptions.execConcurrency`): the
 * runc shim of containerd 1.6 slows to a crawl with many `runc exec`s at once.
 */
import { Effect, Exit, Result, Scope, Semaphore } from "effect"
import { OciLinuxResourcesTypeUrl, OciProcessTypeUrl, packJson } from "../../domain/Any.ts"
import { replaceOrAppendEnv, resolveUser } from "../../domain/ContainerConfig.ts"
import { type ContainerdError, invalidArgument } from "../../domain/ContainerdError.ts"
import type { ExitStatus } from "../../domain/ExitStatus.ts"
import { validateIdentifier } from "../../domain/Identifier.ts"
import { decodeTaskMetrics, type TaskMetrics } from "../../domain/TaskMetrics.ts"
import { parseSignal, type Signal } from "../../domain/Signal.ts"
import { Stdio } from "../../domain/Stdio.ts"
import type { Mount as SnapshotMount } from "../../gen/containerd/types/mount.ts"
import { Status } from "../../gen/containerd/types/task/task.ts"
import { withNamespace } from "../Containerd.ts"
import type { Attachment } from "../Networks.ts"
import { readUserFiles } from "./ContainerOptions.ts"
import type { RuntimeEnv } from "./Env.ts"
import type { HeldAttachment } from "./Network.ts"
import { makeProcess, prepareProcess, type PreparedProcess, type Process } from "./Process.ts"

/** What an exec runs; everything not given is inherited from the container's process. */
export interface ExecOptions {
  readonly args: ReadonlyArray<string>
  /** Added to (or replacing) the container's variables. */
  readonly env?: ReadonlyArray<string> | undefined
  readonly workingDir?: string | undefined
  /** Resolved like the container's user; default the container's. */
  readonly user?: string | undefined
  readonly tty?: boolean | undefined
  readonly stdio?: Stdio | undefined
}

/** Resource changes for a running task. */
export interface ResourceUpdate {
  readonly memory?: number | undefined
  readonly cpuShares?: number | undefined
}

/** A task's state as containerd reported it when its handle was made. */
export type TaskStatusSeen = "created" | "running" | "paused" | "stopped"

/** A container's task; it is also the init process. */
export interface Task extends Process {
  /** What containerd said of the task when this handle was made: "created" for a new one. */
  readonly statusSeen: TaskStatusSeen
  /** Sends a signal to the init, or with `all` to every process of the task. */
  readonly kill: (signal?: Signal, options?: { readonly all?: boolean }) => Effect.Effect<void, ContainerdError>
  readonly pause: Effect.Effect<void, ContainerdError>
  readonly resume: Effect.Effect<void, ContainerdError>
  /** Adds a process (not started yet) to the running task. */
  readonly exec: (execId: string, options: ExecOptions) => Effect.Effect<Process, ContainerdError, Scope.Scope>
  /** The PIDs of the task's processes. */
  readonly pids: Effect.Effect<ReadonlyArray<number>, ContainerdError>
  /**
   * The latest resource usage sample, one `Tasks.Metrics` call. Fails `Unimplemented` on a
   * cgroup v2 host (its payload is not decoded yet).
   */
  readonly metrics: Effect.Effect<TaskMetrics, ContainerdError>
  readonly update: (resources: ResourceUpdate) => Effect.Effect<void, ContainerdError>
  /** The task's network attachment (addresses, published ports), for a container on networks. */
  readonly attachment: Attachment | undefined
  /**
   * Lets the attachment outlive this handle's scope, for the program's next
   * start to adopt while the task runs on (`Networks.adopt`); deleting the task
   * through the handle still releases it.
   */
  readonly keepAttachment: Effect.Effect<void>
}

/** containerd's task status, as a handle reports it (an unknown one counts as running: it may exit). */
export const statusSeenOf = (status: Status): TaskStatusSeen =>
  status === Status.STOPPED
    ? "stopped"
    : status === Status.CREATED
    ? "created"
    : status === Status.PAUSED || status === Status.PAUSING
    ? "paused"
    : "running"

/** What a task handle is made from. */
export interface TaskParams extends PreparedProcess {
  readonly namespace: string
  readonly containerId: string
  readonly pid: number
  readonly started: boolean
  readonly status?: ExitStatus | undefined
  readonly statusSeen: TaskStatusSeen
  /** The container's OCI spec (JSON): an exec inherits its process. */
  readonly spec: unknown
  /** The container's rootfs mounts, for reading its user files. */
  readonly mounts: Effect.Effect<ReadonlyArray<SnapshotMount>, ContainerdError>
  readonly imageConfigDigest: string | undefined
  /** The task's network attachment, released with the task (unless kept). */
  readonly network?: HeldAttachment | undefined
}

/** The handle of a task (its init process already created by containerd). */
export const makeTask = Effect.fnUntraced(function*(env: RuntimeEnv, params: TaskParams) {
  const { client } = env
  const { containerId, namespace } = params
  const rpc = withNamespace(namespace)
  // The shim opened the init's FIFOs during Tasks.Create.
  const { process: init, live, traced } = yield* makeProcess(env, { ...params, execId: "", afterStart: Effect.void })
  const startPermit = Semaphore.makeUnsafe(env.execConcurrency).withPermits(1)

  const exec = Effect.fn("Task.exec")(function*(execId: string, options: ExecOptions) {
    yield* validateIdentifier("Task.exec", "exec id", execId)
    if (options.args.length === 0) return yield* Effect.fail(invalidArgument("Task.exec", "an exec needs a command"))
    const base = (params.spec as { process?: Record<string, unknown> } | undefined)?.process ?? {}
    const baseEnv = Array.isArray(base.env) ? (base.env as ReadonlyArray<string>) : []
    let user = base.user
    if (options.user !== undefined && options.user !== "") {
      const files = env.userFiles.get(namespace, params.imageConfigDigest) ?? (yield* readUserFiles(yield* params.mounts))
      const resolved = resolveUser(options.user, files)
      if (Result.isFailure(resolved)) return yield* Effect.fail(invalidArgument("Task.exec", resolved.failure))
      user = resolved.success
    }
    const processSpec = {
      ...base,
      args: options.args,
      env: replaceOrAppendEnv(baseEnv, options.env ?? []),
      cwd: options.workingDir ?? base.cwd ?? "/",
      terminal: options.tty ?? false,
      user
    }
    const prepared = yield* prepareProcess(env, namespace, containerId, execId, options.stdio ?? Stdio.null, options.tty ?? false)
    yield* live("exec", rpc(client.tasks.exec({
      containerId,
      execId,
      terminal: options.tty ?? false,
      ...prepared.io.request,
      spec: packJson(OciProcessTypeUrl, processSpec)
    }))).pipe(Effect.onError((cause) => Scope.close(prepared.scope, Exit.failCause(cause))))
    // An exec's FIFOs are opened by the shim in Start, not in Exec.
    const { process } = yield* makeProcess(env, {
      ...prepared,
      namespace,
      containerId,
      execId,
      pid: 0,
      started: false,
      afterStart: prepared.io.connected,
      startPermit,
      task: init
    })
    return process
  })

  const task: Task = {
    ...init,
    statusSeen: params.statusSeen,
    get pid() {
      return init.pid
    },
    get deleted() {
      return init.deleted
    },
    // A delete through the handle is the task's end: a kept attachment goes with it too.
    delete: Effect.andThen(params.network?.unkeep ?? Effect.void, init.delete),
    attachment: params.network?.attachment,
    keepAttachment: params.network?.keep ?? Effect.void,
    kill: (signal = "SIGTERM", options) =>
      traced(
        "kill",
        Effect.flatMap(parseSignal("Task.kill", signal), (n) =>
          live("kill", rpc(client.tasks.kill({ containerId, signal: n, all: options?.all ?? false }))))
      ),
    pause: traced("pause", live("pause", rpc(client.tasks.pause({ containerId })))),
    resume: traced("resume", live("resume", rpc(client.tasks.resume({ containerId })))),
    exec,
    pids: traced("pids", live("pids", rpc(Effect.map(client.tasks.listPids({ containerId }), (r) => r.processes.map((p) => p.pid))))),
    metrics: traced(
      "metrics",
      live("metrics", rpc(Effect.flatMap(client.tasks.metrics({ filters: [`id==${containerId}`] }), (r) =>
        decodeTaskMetrics("Task.metrics", r.metrics[0]?.timestamp, r.metrics[0]?.data))))
    ),
    update: (resources) =>
      traced(
        "update",
        live("update", rpc(client.tasks.update({
          containerId,
          resources: packJson(OciLinuxResourcesTypeUrl, {
            ...(resources.memory === undefined ? {} : { memory: { limit: resources.memory } }),
            ...(resources.cpuShares === undefined ? {} : { cpu: { shares: resources.cpuShares } })
          })
        })))
      )
  }
  return task
})
