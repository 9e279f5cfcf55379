/**
 * Containers, tasks and processes as handles, with the fewest RPCs there can be.
 *
 * moby's libcontainerd learned (in its 2022 overhaul) what containerd's Go client
 * always did: pass handles, not ids. `containers.create` returns a `Container`
 * that keeps its record, its image's config and its rootfs mounts; `newTask`
 * returns a `Task` that keeps its pid; `exec` a `Process`. Nothing is reloaded,
 * so a whole `run --rm` costs seven RPCs once the image has been used before:
 * Containers.Create, Snapshots.Prepare, Tasks.Create, Tasks.Start, Tasks.Delete,
 * Snapshots.Remove, Containers.Delete. The exit costs none — it comes from the
 * exit hub, registered before the start. An exec costs three: Exec, Start,
 * DeleteProcess.
 *
 * Ordering that matters:
 * - The container record is created before its snapshot is prepared, and the
 *   snapshot removed before the record is deleted: a record's snapshot key is a
 *   reference for containerd's garbage collector, so the snapshot is never
 *   unreferenced and no lease (two more RPCs) is needed.
 * - Everything checkable is checked before anything is created; if a later step
 *   fails, what was created is removed again.
 * - The user is resolved as Docker does, from the image's /etc/passwd and
 *   /etc/group, read from the prepared snapshot's layers and cached by image
 *   config digest. The first container of an image is created with the answer
 *   that needs no files (root, or the numeric ids) and updated only if the files
 *   say otherwise.
 *
 * Every handle works in the namespace it was made in, whatever the caller's
 * ambient namespace is later. A task or process owns a child of the caller's
 * scope holding its stdio and its exit registration; deleting it (or closing
 * that scope) releases them.
 */
import { Context, Duration, Effect, Exit, Layer, Option, Result, Scope, Semaphore, type Sink, type Stream } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { OciLinuxResourcesTypeUrl, OciProcessTypeUrl, OciSpecTypeUrl, packJson, unpackJson } from "../domain/Any.ts"
import { mergeWithImage, processEnv, replaceOrAppendEnv, resolveUser } from "../domain/ContainerConfig.ts"
import { type ContainerdError, failedPrecondition, invalidArgument, notFound } from "../domain/ContainerdError.ts"
import { exitedOf, exitUnknown, type ExitStatus } from "../domain/ExitStatus.ts"
import { validateIdentifier } from "../domain/Identifier.ts"
import { validateLabels } from "../domain/Labels.ts"
import * as Oci from "../domain/OciSpec.ts"
import { parseSignal, type Signal } from "../domain/Signal.ts"
import type { Container as ContainerRecord } from "../gen/containerd/services/containers/v1/containers.ts"
import type { Any } from "../gen/google/protobuf/any.ts"
import { Status } from "../gen/containerd/types/task/task.ts"
import type { Mount as SnapshotMount } from "../gen/containerd/types/mount.ts"
import { makeFifoPool, openProcessIo, type ProcessIo, Stdio } from "../internal/Fifo.ts"
import { compositeKey } from "../internal/Key.ts"
import { readRootfsFile } from "../internal/Rootfs.ts"
import { Containerd, withNamespace } from "./Containerd.ts"
import { ExitHub } from "./ExitHub.ts"
import { Images, type ResolvedImage } from "./Images.ts"

export { Stdio } from "../internal/Fifo.ts"

/** A host directory bound into the container. */
export interface BindMount {
  readonly type: "bind"
  readonly source: string
  readonly destination: string
  readonly readonly?: boolean | undefined
}

/** A tmpfs in the container. */
export interface TmpfsMount {
  readonly type: "tmpfs"
  readonly destination: string
  /** Size in bytes; the kernel's default (half the RAM) when absent. */
  readonly size?: number | undefined
  /** Permission bits, e.g. 0o1777. */
  readonly mode?: number | undefined
}

/** Everything a container can be created with. */
export interface CreateContainerOptions {
  /** containerd's identifier rule: letters and digits joined by '.', '_' or '-'. */
  readonly id: string
  /** The name of an image already in containerd (and unpacked). */
  readonly image: string
  /** Replaces the image's Entrypoint (and then its Cmd); `[]` clears it. */
  readonly entrypoint?: ReadonlyArray<string> | undefined
  /** The command, i.e. Docker's Cmd: arguments after the entrypoint. */
  readonly command?: ReadonlyArray<string> | undefined
  /** Variables, "KEY=value"; they win over the image's. */
  readonly env?: ReadonlyArray<string> | undefined
  readonly workingDir?: string | undefined
  /** "user", "uid", "user:group", "uid:gid", ... resolved in the container's /etc/passwd. */
  readonly user?: string | undefined
  readonly labels?: Readonly<Record<string, string>> | undefined
  readonly mounts?: ReadonlyArray<BindMount | TmpfsMount> | undefined
  /** Defaults to the id (at most 63 characters). */
  readonly hostname?: string | undefined
  /** A terminal for the init process: one output stream, and `resize`. */
  readonly tty?: boolean | undefined
  /** "none" (default): an own network namespace with loopback only; "host": the host's. */
  readonly network?: "none" | "host" | undefined
  readonly readonlyRootfs?: boolean | undefined
  readonly resources?: {
    /** Bytes; at least 6 MiB, as Docker requires. */
    readonly memory?: number | undefined
    /** Relative CPU weight (1024 is the default), at least 2. */
    readonly cpuShares?: number | undefined
  } | undefined
  /** Defaults to the Runtime's (io.containerd.runc.v2). */
  readonly runtime?: string | undefined
  /** Further spec changes, applied last. */
  readonly spec?: ReadonlyArray<Oci.SpecOption> | undefined
  /**
   * The client's own data about the container, stored on the containerd record
   * (its `extensions`), written in the same call that creates it.
   */
  readonly extensions?: Readonly<Record<string, Any>> | undefined
}

/** What a container record says, decoded. */
export interface ContainerInfo {
  readonly id: string
  readonly namespace: string
  readonly image: string
  readonly labels: Readonly<Record<string, string>>
  readonly runtime: string
  readonly snapshotter: string
  readonly snapshotKey: string
  readonly createdAt: Date | undefined
  readonly updatedAt: Date | undefined
  /** The OCI spec as stored (JSON). */
  readonly spec: unknown
  /** The client data stored with the record (`CreateContainerOptions.extensions`). */
  readonly extensions: Readonly<Record<string, Any>>
}

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

/** A process of a task: its init, or an exec. */
export interface Process {
  readonly containerId: string
  /** The exec id; empty for a task's init. */
  readonly id: string
  /** Known once the process exists (the init at task creation, an exec at start); else 0. */
  readonly pid: number
  /** The process's output; empty unless created with `Stdio.pipe()`. Read it once. */
  readonly stdout: Stream.Stream<Uint8Array, ContainerdError>
  /** The process's error output; empty unless piped and without a terminal. */
  readonly stderr: Stream.Stream<Uint8Array, ContainerdError>
  /** Writes to the process's input (needs `Stdio.pipe({ stdin: true })`). */
  readonly stdin: Sink.Sink<void, Uint8Array, never, ContainerdError>
  /** Starts the process. Its exit is already being watched. */
  readonly start: Effect.Effect<void, ContainerdError>
  /** Sends a signal (default SIGTERM). */
  readonly kill: (signal?: Signal) => Effect.Effect<void, ContainerdError>
  /** Resizes the process's terminal. */
  readonly resize: (width: number, height: number) => Effect.Effect<void, ContainerdError>
  /** Closes the process's stdin: it reads end-of-file. */
  readonly closeStdin: Effect.Effect<void, ContainerdError>
  /** How the process ended; waits until it has. Costs no RPC. */
  readonly wait: Effect.Effect<ExitStatus>
  /** Removes the stopped process and releases its stdio; returns how it ended. */
  readonly delete: Effect.Effect<ExitStatus, ContainerdError>
  /** Whether this handle is spent: its process was deleted through it (or, for an exec, its task was). */
  readonly deleted: boolean
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
  /** The latest resource usage sample (cgroup statistics in `data`). */
  readonly metrics: Effect.Effect<{ readonly timestamp: Date | undefined; readonly data: unknown }, ContainerdError>
  readonly update: (resources: ResourceUpdate) => Effect.Effect<void, ContainerdError>
}

/** A container: a record and its rootfs snapshot, and the handle to its task. */
export interface Container {
  readonly id: string
  /** The record as last known to this handle. */
  readonly info: ContainerInfo
  /** The image as resolved at creation (absent for a loaded container). */
  readonly image: ResolvedImage | undefined
  /** The labels as last known to this handle. */
  readonly labels: Readonly<Record<string, string>>
  /** Sets (or, with an empty value, removes) the given labels; returns them all. */
  readonly setLabels: (labels: Readonly<Record<string, string>>) => Effect.Effect<Readonly<Record<string, string>>, ContainerdError>
  /** Creates the task (its init process, not started). */
  readonly newTask: (options?: { readonly stdio?: Stdio | undefined }) => Effect.Effect<Task, ContainerdError, Scope.Scope>
  /**
   * Attaches to the container's existing task (without stdio). It registers for
   * the task's exit before asking containerd about it, so an exit in between is
   * not lost.
   */
  readonly task: Effect.Effect<Task, ContainerdError, Scope.Scope>
  /** Deletes the container and (by default) its rootfs snapshot; its task must be deleted first. */
  readonly delete: (options?: { readonly snapshotCleanup?: boolean }) => Effect.Effect<void, ContainerdError>
}

/** The runtime service. */
export interface RuntimeShape {
  readonly containers: {
    readonly create: (options: CreateContainerOptions) => Effect.Effect<Container, ContainerdError>
    readonly load: (id: string) => Effect.Effect<Container, ContainerdError>
    /** containerd filters, e.g. `labels."app"==web`. */
    readonly list: (filters?: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Container>, ContainerdError>
  }
}

/** How the runtime behaves. */
export interface RuntimeOptions {
  /** Where process FIFOs are made; default /run/effect-containerd/fifo. */
  readonly fifoDir?: string | undefined
  /** Default overlayfs. */
  readonly snapshotter?: string | undefined
  /** Default io.containerd.runc.v2. */
  readonly runtime?: string | undefined
  /**
   * How many exec starts of one task may be in flight at once; more wait their
   * turn, unseen by callers. Default 8. Why: in containerd 1.6's runc shim every
   * child exit is broadcast to every running runc command through a 32-slot
   * buffer, and each notification may wait up to a second; past ~16 concurrent
   * `runc exec`s the buffers fill and execs crawl (50 at once: 63 s with ctr, and
   * Tasks.Start deadlines with us). Only Start runs runc; Exec does not.
   */
  readonly execConcurrency?: number | undefined
}

const MIN_MEMORY = 6 * 1024 * 1024

const isPositiveInteger = (n: number) => Number.isSafeInteger(n) && n > 0

/** Checks everything about the options that needs no RPC. */
const validateOptions = Effect.fnUntraced(function*(method: string, options: CreateContainerOptions) {
  yield* validateIdentifier(method, "container id", options.id)
  if (options.image === "") return yield* Effect.fail(invalidArgument(method, "an image is required"))
  yield* validateLabels(method, options.labels ?? {})
  for (const mount of options.mounts ?? []) {
    if (!path.isAbsolute(mount.destination)) {
      return yield* Effect.fail(invalidArgument(method, `mount destination ${JSON.stringify(mount.destination)} is not absolute`))
    }
    if (mount.type === "bind" && (!path.isAbsolute(mount.source) || !fs.existsSync(mount.source))) {
      return yield* Effect.fail(invalidArgument(method, `bind source ${JSON.stringify(mount.source)} does not exist`))
    }
    if (mount.type === "tmpfs" && mount.size !== undefined && !isPositiveInteger(mount.size)) {
      return yield* Effect.fail(invalidArgument(method, `tmpfs size ${mount.size} is not a positive number of bytes`))
    }
  }
  const memory = options.resources?.memory
  if (memory !== undefined && (!isPositiveInteger(memory) || memory < MIN_MEMORY)) {
    return yield* Effect.fail(invalidArgument(method, `memory limit ${memory} is invalid: the minimum is 6 MiB (${MIN_MEMORY} bytes)`))
  }
  const shares = options.resources?.cpuShares
  if (shares !== undefined && (!Number.isSafeInteger(shares) || shares < 2)) {
    return yield* Effect.fail(invalidArgument(method, `CPU shares ${shares} is invalid: use an integer of at least 2`))
  }
  const hostname = options.hostname
  if (hostname !== undefined && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$/.test(hostname)) {
    return yield* Effect.fail(invalidArgument(method, `invalid hostname ${JSON.stringify(hostname)}`))
  }
})

const toOciMount = (mount: BindMount | TmpfsMount): Oci.Mount =>
  mount.type === "bind"
    ? { destination: mount.destination, type: "bind", source: mount.source, options: ["rbind", mount.readonly ? "ro" : "rw"] }
    : {
      destination: mount.destination,
      type: "tmpfs",
      source: "tmpfs",
      options: [
        "nosuid",
        "nodev",
        "noexec",
        ...(mount.size === undefined ? [] : [`size=${mount.size}`]),
        ...(mount.mode === undefined ? [] : [`mode=${mount.mode.toString(8)}`])
      ]
    }

const sameUser = (a: Oci.User, b: Oci.User) => JSON.stringify(a) === JSON.stringify(b)

/** containerd's task status, as a handle reports it (an unknown one counts as running: it may exit). */
const statusSeenOf = (status: Status): TaskStatusSeen =>
  status === Status.STOPPED
    ? "stopped"
    : status === Status.CREATED
    ? "created"
    : status === Status.PAUSED || status === Status.PAUSING
    ? "paused"
    : "running"

/** How long a delete waits for the output being read to be read to its end. */
const DRAIN_TIMEOUT = Duration.seconds(5)

/** Builds the runtime; it needs the client, the exit hub and the image resolver. */
export const makeRuntime = Effect.fnUntraced(function*(options: RuntimeOptions = {}) {
  const client = yield* Containerd
  const hub = yield* ExitHub
  const images = yield* Images
  const fifoDir = options.fifoDir ?? "/run/effect-containerd/fifo"
  const fifos = yield* makeFifoPool(fifoDir)
  const snapshotter = options.snapshotter ?? "overlayfs"
  const defaultRuntime = options.runtime ?? "io.containerd.runc.v2"
  const execConcurrency = options.execConcurrency ?? 8
  /** /etc/passwd and /etc/group of images' root filesystems, by namespace and config digest. */
  const userFiles = new Map<string, { readonly passwd: string | undefined; readonly group: string | undefined }>()

  const infoOf = (namespace: string, record: ContainerRecord, spec: unknown): ContainerInfo => ({
    id: record.id,
    namespace,
    image: record.image,
    labels: record.labels,
    runtime: record.runtime?.name ?? "",
    snapshotter: record.snapshotter,
    snapshotKey: record.snapshotKey,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    spec,
    extensions: record.extensions
  })

  /**
   * The handle of one process. Its scope holds its stdio, its exit registration
   * and a fiber that records the exit as soon as the hub delivers it, so the
   * handle always knows whether its process is still running.
   *
   * Once deleted the handle is spent (an exec's also once its task's is).
   * containerd names a task by its container alone, so an RPC through a stale
   * handle would reach the container's next task: deleting again answers the
   * recorded status without an RPC, and every other operation (`live`, also
   * used by the task's own) fails with NotFound, checked right before its RPC.
   */
  const makeProcess = Effect.fnUntraced(function*(params: {
    readonly namespace: string
    readonly containerId: string
    readonly execId: string
    readonly pid: number
    readonly io: ProcessIo
    readonly scope: Scope.Closeable
    readonly exited: Effect.Effect<ExitStatus>
    /** Whether the process has been started already (an attached task). */
    readonly started: boolean
    /** Runs after a successful start: the shim opens an exec's FIFOs only then. */
    readonly afterStart: Effect.Effect<void>
    /** Bounds concurrent starts per task (execs only). */
    readonly startPermit?: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
    /** A status already known (an attached, stopped task). */
    readonly status?: ExitStatus | undefined
    /** The task an exec runs in. */
    readonly task?: { readonly deleted: boolean } | undefined
  }) {
    const { containerId, execId, namespace } = params
    const rpc = withNamespace(namespace)
    let pid = params.pid
    let started = params.started
    let status = params.status
    const method = (name: string) => `${execId === "" ? "Task" : "Process"}.${name}`
    yield* Effect.forkIn(Effect.tap(params.exited, (s) => Effect.sync(() => void (status ??= s))), params.scope)
    /** How the process ended, once this handle has deleted it. */
    let deleted: ExitStatus | undefined
    const deleting = Semaphore.makeUnsafe(1)
    const spent = () => deleted !== undefined || params.task?.deleted === true
    const gone = (name: string) => notFound(method(name), `process ${execId || containerId} was deleted: this handle is spent`)
    const live = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | ContainerdError, R> =>
      Effect.suspend((): Effect.Effect<A, E | ContainerdError, R> => spent() ? Effect.fail(gone(name)) : effect)

    const start = rpc(Effect.gen(function*() {
      // Exits wait for the answer; a failed start has the hub find out how the process is.
      pid = yield* hub.start(containerId, execId, client.tasks.start({ containerId, execId }))
      started = true
      yield* params.afterStart
    }))

    /** Records how the deleted process ended and lets readers take what is left in the FIFOs. */
    const spend = (ended: ExitStatus) =>
      Effect.suspend(() => {
        status = ended
        deleted = ended
        // The shim has closed its ends: let readers take what is left in the FIFOs first.
        return Effect.asVoid(params.io.drained.pipe(Effect.timeoutOption(DRAIN_TIMEOUT)))
      })

    const deleteRpc = execId === ""
      ? client.tasks.delete({ containerId })
      : client.tasks.deleteProcess({ containerId, execId })

    const remove = deleting.withPermit(Effect.suspend(() =>
      // Closing the scope again is a no-op, or ends a release an interruption cut short.
      deleted !== undefined
        ? Effect.as(Scope.close(params.scope, Exit.void), deleted)
        : params.task?.deleted === true
        // Deleting a task deletes its execs: only our ends are left to release.
        ? Effect.andThen(Scope.close(params.scope, Exit.void), status === undefined ? Effect.fail(gone("delete")) : Effect.succeed(status))
        : started && status === undefined
        ? Effect.fail(failedPrecondition(
          method("delete"),
          `process ${execId || containerId} is running: it must exit (wait for it, or kill it) before it can be deleted`
        ))
        : rpc(deleteRpc).pipe(
          Effect.tap((response) => spend(status ?? exitedOf(response))),
          Effect.map(() => deleted!),
          // Deleted by someone else: the handle is spent all the same, and says so.
          Effect.tapErrorTag("ContainerdError", (error) =>
            error.reason._tag === "NotFound"
              ? spend(status ?? exitUnknown(pid, "the process was deleted by someone else"))
              : Effect.void),
          // Stdio and the exit registration go on every path out: an exited
          // process needs neither, and a failed delete can be retried without them.
          Effect.ensuring(Scope.close(params.scope, Exit.void))
        )
    ))

    const process: Process = {
      containerId,
      id: execId,
      get pid() {
        return pid
      },
      stdout: params.io.stdout,
      stderr: params.io.stderr,
      stdin: params.io.stdin,
      get deleted() {
        return spent()
      },
      start: params.startPermit === undefined ? live("start", start) : params.startPermit(live("start", start)),
      kill: (signal = "SIGTERM") =>
        Effect.flatMap(parseSignal(method("kill"), signal), (n) => live("kill", rpc(client.tasks.kill({ containerId, execId, signal: n })))),
      resize: (width, height) =>
        isPositiveInteger(width) && isPositiveInteger(height) && width <= 65535 && height <= 65535
          ? live("resize", rpc(client.tasks.resizePty({ containerId, execId, width, height })))
          : Effect.fail(invalidArgument(method("resize"), `invalid terminal size ${width}x${height}`)),
      closeStdin: live("closeStdin", Effect.andThen(params.io.endStdin, rpc(client.tasks.closeIO({ containerId, execId, stdin: true })))),
      // Records the status too, so whoever saw the exit can delete at once.
      wait: Effect.suspend(() =>
        status !== undefined ? Effect.succeed(status) : Effect.tap(params.exited, (s) => Effect.sync(() => void (status ??= s)))
      ),
      delete: remove
    }
    return { process, live }
  })

  /** Opens stdio and registers for the exit of a process about to be created, in a child scope. */
  const prepareProcess = Effect.fnUntraced(function*(
    namespace: string,
    containerId: string,
    execId: string,
    stdio: Stdio,
    terminal: boolean
  ) {
    // A child of the caller's scope: closed with it, or earlier by `delete`.
    const scope = yield* Scope.fork(yield* Effect.scope)
    const io = yield* openProcessIo(fifos, path.join(fifoDir, namespace), `${containerId}-${execId || "init"}`, stdio, terminal).pipe(
      Scope.provide(scope)
    )
    const exited = yield* hub.awaitExit(containerId, execId).pipe(
      withNamespace(namespace),
      Scope.provide(scope)
    )
    return { scope, io, exited }
  })

  const makeTask = Effect.fnUntraced(function*(params: {
    readonly namespace: string
    readonly containerId: string
    readonly pid: number
    readonly io: ProcessIo
    readonly scope: Scope.Closeable
    readonly exited: Effect.Effect<ExitStatus>
    readonly started: boolean
    readonly status?: ExitStatus | undefined
    readonly statusSeen: TaskStatusSeen
    readonly spec: unknown
    readonly mounts: Effect.Effect<ReadonlyArray<SnapshotMount>, ContainerdError>
    readonly imageConfigDigest: string | undefined
  }) {
    const { containerId, namespace } = params
    const rpc = withNamespace(namespace)
    // The shim opened the init's FIFOs during Tasks.Create.
    const { process: init, live } = yield* makeProcess({ ...params, execId: "", afterStart: Effect.void })
    const startPermit = Semaphore.makeUnsafe(execConcurrency).withPermits(1)

    const execProcess = Effect.fnUntraced(function*(execId: string, exec: ExecOptions) {
      yield* validateIdentifier("Task.exec", "exec id", execId)
      if (exec.args.length === 0) return yield* Effect.fail(invalidArgument("Task.exec", "an exec needs a command"))
      const base = (params.spec as { process?: Record<string, unknown> } | undefined)?.process ?? {}
      const baseEnv = Array.isArray(base.env) ? (base.env as ReadonlyArray<string>) : []
      let user = base.user
      if (exec.user !== undefined && exec.user !== "") {
        const files = params.imageConfigDigest === undefined
          ? undefined
          : userFiles.get(compositeKey(namespace, params.imageConfigDigest))
        const mounts = files === undefined ? yield* params.mounts : []
        const resolved = resolveUser(exec.user, files ?? {
          passwd: yield* readRootfsFile(mounts, "/etc/passwd"),
          group: yield* readRootfsFile(mounts, "/etc/group")
        })
        if (Result.isFailure(resolved)) return yield* Effect.fail(invalidArgument("Task.exec", resolved.failure))
        user = resolved.success
      }
      const processSpec = {
        ...base,
        args: exec.args,
        env: replaceOrAppendEnv(baseEnv, exec.env ?? []),
        cwd: exec.workingDir ?? base.cwd ?? "/",
        terminal: exec.tty ?? false,
        user
      }
      const { exited, io, scope } = yield* prepareProcess(namespace, containerId, execId, exec.stdio ?? Stdio.null, exec.tty ?? false)
      yield* live("exec", rpc(client.tasks.exec({
        containerId,
        execId,
        terminal: exec.tty ?? false,
        ...io.request,
        spec: packJson(OciProcessTypeUrl, processSpec)
      }))).pipe(Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause))))
      // An exec's FIFOs are opened by the shim in Start, not in Exec.
      const { process } = yield* makeProcess({
        namespace,
        containerId,
        execId,
        pid: 0,
        io,
        scope,
        exited,
        started: false,
        afterStart: io.connected,
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
      kill: (signal = "SIGTERM", options) =>
        Effect.flatMap(parseSignal("Task.kill", signal), (n) =>
          live("kill", rpc(client.tasks.kill({ containerId, signal: n, all: options?.all ?? false })))),
      pause: live("pause", rpc(client.tasks.pause({ containerId }))),
      resume: live("resume", rpc(client.tasks.resume({ containerId }))),
      exec: execProcess,
      pids: live("pids", rpc(Effect.map(client.tasks.listPids({ containerId }), (r) => r.processes.map((p) => p.pid)))),
      metrics: live("metrics", rpc(Effect.map(client.tasks.metrics({ filters: [`id==${containerId}`] }), (r) => ({
        timestamp: r.metrics[0]?.timestamp,
        data: r.metrics[0]?.data
      })))),
      update: (resources) =>
        live("update", rpc(client.tasks.update({
          containerId,
          resources: packJson(OciLinuxResourcesTypeUrl, {
            ...(resources.memory === undefined ? {} : { memory: { limit: resources.memory } }),
            ...(resources.cpuShares === undefined ? {} : { cpu: { shares: resources.cpuShares } })
          })
        })))
    }
    return task
  })

  const makeContainer = (
    namespace: string,
    record: ContainerRecord,
    spec: unknown,
    learned: { readonly mounts?: ReadonlyArray<SnapshotMount>; readonly image?: ResolvedImage }
  ): Container => {
    const id = record.id
    const rpc = withNamespace(namespace)
    let info = infoOf(namespace, record, spec)
    let mountsLearned = learned.mounts
    /** Whether this handle created a task that it has not deleted. */
    let liveTask: Task | undefined
    const mounts = Effect.suspend(() =>
      mountsLearned !== undefined
        ? Effect.succeed(mountsLearned)
        : rpc(Effect.map(client.snapshots.mounts({ snapshotter: info.snapshotter, key: info.snapshotKey }), (r) => {
          mountsLearned = r.mounts
          return r.mounts
        }))
    )
    const terminal = (spec as { process?: { terminal?: boolean } } | undefined)?.process?.terminal === true

    const trackTask = (task: Task): Task => {
      liveTask = task
      return {
        ...task,
        get pid() {
          return task.pid
        },
        get deleted() {
          return task.deleted
        },
        // Deleted, or found gone (NotFound): either way the container has no task
        // (unless this handle is a stale one and the container has a newer task).
        delete: task.delete.pipe(
          Effect.onExit((exit) =>
            (Exit.isSuccess(exit) || Exit.findErrorOption(exit).pipe(Option.exists((e) => e.reason._tag === "NotFound"))) &&
              liveTask === task
              ? Effect.sync(() => void (liveTask = undefined))
              : Effect.void
          )
        )
      }
    }

    const newTask = Effect.fnUntraced(function*(taskOptions?: { readonly stdio?: Stdio | undefined }) {
      const rootfs = yield* mounts
      const { exited, io, scope } = yield* prepareProcess(namespace, id, "", taskOptions?.stdio ?? Stdio.null, terminal)
      const created = yield* rpc(client.tasks.create({ containerId: id, rootfs: [...rootfs], terminal, ...io.request })).pipe(
        Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
      )
      // Its init exists from now on: if it dies before a start, that is its exit.
      yield* rpc(hub.created(id, "", created.pid))
      yield* io.connected
      return trackTask(yield* makeTask({
        namespace,
        containerId: id,
        pid: created.pid,
        io,
        scope,
        exited,
        started: false,
        statusSeen: "created",
        spec,
        mounts,
        imageConfigDigest: learned.image?.configDigest
      }))
    })

    const attach = Effect.gen(function*() {
      // Register first, then read: an exit between the two is held for the pid read.
      const { exited, io, scope } = yield* prepareProcess(namespace, id, "", Stdio.null, false)
      const { process } = yield* rpc(client.tasks.get({ containerId: id })).pipe(
        Effect.flatMap(({ process }) =>
          process === undefined
            ? Effect.fail(notFound("Container.task", `container ${id} has no task`))
            : Effect.succeed({ process })
        ),
        Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
      )
      const seen = statusSeenOf(process.status)
      if (seen === "created") yield* rpc(hub.created(id, "", process.pid))
      else if (seen !== "stopped") yield* rpc(hub.started(id, "", process.pid))
      return trackTask(yield* makeTask({
        namespace,
        containerId: id,
        pid: process.pid,
        io,
        scope,
        exited,
        started: seen !== "created",
        status: seen === "stopped" ? exitedOf(process) : undefined,
        statusSeen: seen,
        spec,
        mounts,
        imageConfigDigest: learned.image?.configDigest
      }))
    })

    return {
      id,
      get info() {
        return info
      },
      image: learned.image,
      get labels() {
        return info.labels
      },
      setLabels: (labels) =>
        Effect.gen(function*() {
          yield* validateLabels("Container.setLabels", labels)
          const { container } = yield* rpc(client.containers.update({
            container: { id, labels },
            updateMask: Object.keys(labels).map((key) => `labels.${key}`)
          }))
          if (container !== undefined) info = infoOf(namespace, container, spec)
          return info.labels
        }),
      newTask,
      task: attach,
      delete: (deleteOptions) =>
        Effect.gen(function*() {
          if (liveTask !== undefined) {
            return yield* Effect.fail(failedPrecondition("Container.delete", `container ${id} has a task: delete it first`))
          }
          if ((deleteOptions?.snapshotCleanup ?? true) && info.snapshotKey !== "") {
            yield* rpc(client.snapshots.remove({ snapshotter: info.snapshotter, key: info.snapshotKey })).pipe(
              Effect.catchReason("ContainerdError", "NotFound", () => Effect.void)
            )
          }
          yield* rpc(client.containers.delete({ id }))
        })
    }
  }

  const create = Effect.fn("Runtime.containers.create")(function*(options: CreateContainerOptions) {
    const method = "Runtime.containers.create"
    yield* validateOptions(method, options)
    const namespace = yield* client.currentNamespace
    const rpc = withNamespace(namespace)
    const image = yield* images.resolve(options.image)
    const merged = mergeWithImage(image.config.config, {
      entrypoint: options.entrypoint,
      cmd: options.command,
      env: options.env,
      workingDir: options.workingDir,
      user: options.user
    })
    if (Result.isFailure(merged)) return yield* Effect.fail(invalidArgument(method, merged.failure))
    const filesKey = compositeKey(namespace, image.configDigest)
    const knownFiles = userFiles.get(filesKey)
    // Without the image's files, the answer that needs none; corrected below if they disagree.
    const firstUser = resolveUser(merged.success.user, knownFiles ?? {})
    if (knownFiles !== undefined && Result.isFailure(firstUser)) {
      return yield* Effect.fail(invalidArgument(method, firstUser.failure))
    }
    const provisional = Result.getOrElse(firstUser, () => ({ uid: 0, gid: 0, additionalGids: [0] }))
    const hostname = options.hostname ?? options.id.slice(0, 63)
    const tty = options.tty ?? false
    const specOf = (user: Oci.User) =>
      Oci.applyOptions(Oci.defaultSpec({ namespace, id: options.id }), [
        Oci.withArgs(merged.success.args),
        Oci.withEnv(processEnv(merged.success.env, { hostname, tty })),
        Oci.withCwd(merged.success.workingDir),
        Oci.withUser(user),
        Oci.withTerminal(tty),
        Oci.withHostname(hostname),
        Oci.withNetwork(options.network ?? "none"),
        Oci.withReadonlyRootfs(options.readonlyRootfs ?? false),
        Oci.withMounts((options.mounts ?? []).map(toOciMount)),
        ...(options.resources?.memory === undefined ? [] : [Oci.withMemoryLimit(options.resources.memory)]),
        ...(options.resources?.cpuShares === undefined ? [] : [Oci.withCpuShares(options.resources.cpuShares)]),
        ...(options.spec ?? [])
      ])
    let spec = specOf(provisional)
    const created = yield* rpc(client.containers.create({
      container: {
        id: options.id,
        labels: options.labels ?? {},
        image: options.image,
        runtime: { name: options.runtime ?? defaultRuntime },
        spec: packJson(OciSpecTypeUrl, spec),
        snapshotter,
        snapshotKey: options.id,
        extensions: { ...options.extensions }
      }
    }))
    let record = created.container!
    const removeAll = (removeSnapshot: boolean) =>
      rpc(Effect.gen(function*() {
        if (removeSnapshot) yield* client.snapshots.remove({ snapshotter, key: options.id })
        yield* client.containers.delete({ id: options.id })
      })).pipe(Effect.ignore)
    const { mounts } = yield* rpc(client.snapshots.prepare({
      snapshotter,
      key: options.id,
      parent: image.chainId
    })).pipe(Effect.onError(() => removeAll(false)))

    if (knownFiles === undefined) {
      const files = { passwd: yield* readRootfsFile(mounts, "/etc/passwd"), group: yield* readRootfsFile(mounts, "/etc/group") }
      userFiles.set(filesKey, files)
      const exact = resolveUser(merged.success.user, files)
      if (Result.isFailure(exact)) {
        yield* removeAll(true)
        return yield* Effect.fail(invalidArgument(method, exact.failure))
      }
      if (!sameUser(exact.success, provisional)) {
        spec = specOf(exact.success)
        const updated = yield* rpc(client.containers.update({
          container: { id: options.id, spec: packJson(OciSpecTypeUrl, spec) },
          updateMask: ["spec"]
        })).pipe(Effect.onError(() => removeAll(true)))
        record = updated.container ?? record
      }
    }
    return makeContainer(namespace, record, spec, { mounts, image })
  })

  const fromRecord = (namespace: string, record: ContainerRecord) =>
    Effect.map(
      record.spec === undefined ? Effect.succeed(undefined) : Effect.orElseSucceed(unpackJson(OciSpecTypeUrl, record.spec), () => undefined),
      (spec) => makeContainer(namespace, record, spec, {})
    )

  const load = Effect.fn("Runtime.containers.load")(function*(id: string) {
    yield* validateIdentifier("Runtime.containers.load", "container id", id)
    const namespace = yield* client.currentNamespace
    const { container } = yield* withNamespace(client.containers.get({ id }), namespace)
    return yield* fromRecord(namespace, container!)
  })

  const list = Effect.fn("Runtime.containers.list")(function*(filters?: ReadonlyArray<string>) {
    const namespace = yield* client.currentNamespace
    const { containers } = yield* withNamespace(client.containers.list({ filters: [...(filters ?? [])] }), namespace)
    return yield* Effect.forEach(containers, (record) => fromRecord(namespace, record))
  })

  return Runtime.of({ containers: { create, load, list } })
})

/** The runtime service. */
export class Runtime extends Context.Service<Runtime, RuntimeShape>()("effect-containerd/Runtime") {
  /** The runtime over the client, the exit hub and the image resolver. */
  static readonly layer = (options?: RuntimeOptions): Layer.Layer<Runtime, never, Containerd | ExitHub | Images> =>
    Layer.effect(Runtime, makeRuntime(options))
}
