/**
 * A process of a task, as containerd's Go client has it (`process.go`): the
 * handle of a task's init or of an exec, with its stdio, start, signals,
 * terminal, wait and delete.
 *
 * Its exit costs no RPC: the handle is registered with the exit hub before the
 * process is created (wait before start), in a child of the caller's scope that
 * also holds its stdio, and it records the exit as soon as the hub delivers it.
 * Once deleted the handle is spent: containerd names a task by its container
 * alone, so an RPC through a stale handle would reach the container's next task.
 */
import { Duration, Effect, Exit, Scope, Semaphore, type Sink, type Stream } from "effect"
import * as path from "node:path"
import { type ContainerdError, failedPrecondition, invalidArgument, notFound } from "../../domain/ContainerdError.ts"
import { exitedOf, exitUnknown, type ExitStatus } from "../../domain/ExitStatus.ts"
import { parseSignal, type Signal } from "../../domain/Signal.ts"
import type { Stdio } from "../../domain/Stdio.ts"
import { openProcessIo, type ProcessIo } from "../../internal/Fifo.ts"
import { withNamespace } from "../Containerd.ts"
import { isPositiveInteger } from "./ContainerOptions.ts"
import type { RuntimeEnv } from "./Env.ts"

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

/** A process about to be created: its stdio, its exit registration, and the scope holding both. */
export interface PreparedProcess {
  readonly scope: Scope.Closeable
  readonly io: ProcessIo
  readonly exited: Effect.Effect<ExitStatus>
}

/** How long a delete waits for the output being read to be read to its end. */
const DRAIN_TIMEOUT = Duration.seconds(5)

/** Opens stdio and registers for the exit of a process about to be created, in a child scope. */
export const prepareProcess = Effect.fnUntraced(function*(
  env: RuntimeEnv,
  namespace: string,
  containerId: string,
  execId: string,
  stdio: Stdio,
  terminal: boolean
) {
  // A child of the caller's scope: closed with it, or earlier by `delete`.
  const scope = yield* Scope.fork(yield* Effect.scope)
  const root = path.join(env.fifoDir, namespace)
  const io = yield* openProcessIo(env.fifos, root, `${containerId}-${execId || "init"}`, stdio, terminal).pipe(
    Scope.provide(scope)
  )
  const exited = yield* env.hub.awaitExit(containerId, execId).pipe(
    withNamespace(namespace),
    Scope.provide(scope)
  )
  return { scope, io, exited } satisfies PreparedProcess
})

/** What a process handle is made from. */
export interface ProcessParams extends PreparedProcess {
  readonly namespace: string
  readonly containerId: string
  readonly execId: string
  readonly pid: number
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
}

/** Runs an operation only while the handle is not spent (failing with NotFound, checked right before its RPC). */
export type Live = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | ContainerdError, R>

/**
 * The handle of one process, and its `live` guard (which a task's own
 * operations use too). Deleting again answers the recorded status without an RPC.
 */
export const makeProcess = Effect.fnUntraced(function*(env: RuntimeEnv, params: ProcessParams) {
  const { client, hub } = env
  const { containerId, execId, namespace } = params
  const rpc = withNamespace(namespace)
  let pid = params.pid
  let started = params.started
  let status = params.status
  const method = (name: string) => `${execId === "" ? "Task" : "Process"}.${name}`
  const traced = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>) => Effect.withSpan(effect, method(name))
  yield* Effect.forkIn(Effect.tap(params.exited, (s) => Effect.sync(() => void (status ??= s))), params.scope)
  /** How the process ended, once this handle has deleted it. */
  let deleted: ExitStatus | undefined
  const deleting = Semaphore.makeUnsafe(1)
  const spent = () => deleted !== undefined || params.task?.deleted === true
  const gone = (name: string) => notFound(method(name), `process ${execId || containerId} was deleted: this handle is spent`)
  const live: Live = <A, E, R>(name: string, effect: Effect.Effect<A, E, R>) =>
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
          error.reason._tag === "NotFound" ? spend(status ?? exitUnknown(pid, "the process was deleted by someone else")) : Effect.void),
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
    start: traced("start", params.startPermit === undefined ? live("start", start) : params.startPermit(live("start", start))),
    kill: (signal = "SIGTERM") =>
      traced(
        "kill",
        Effect.flatMap(parseSignal(method("kill"), signal), (n) => live("kill", rpc(client.tasks.kill({ containerId, execId, signal: n }))))
      ),
    resize: (width, height) =>
      traced(
        "resize",
        isPositiveInteger(width) && isPositiveInteger(height) && width <= 65535 && height <= 65535
          ? live("resize", rpc(client.tasks.resizePty({ containerId, execId, width, height })))
          : Effect.fail(invalidArgument(method("resize"), `invalid terminal size ${width}x${height}`))
      ),
    closeStdin: traced(
      "closeStdin",
      live("closeStdin", Effect.andThen(params.io.endStdin, rpc(client.tasks.closeIO({ containerId, execId, stdin: true }))))
    ),
    // Records the status too, so whoever saw the exit can delete at once.
    wait: traced(
      "wait",
      Effect.suspend(() =>
        status !== undefined ? Effect.succeed(status) : Effect.tap(params.exited, (s) => Effect.sync(() => void (status ??= s)))
      )
    ),
    delete: traced("delete", remove)
  }
  return { process, live, traced }
})
