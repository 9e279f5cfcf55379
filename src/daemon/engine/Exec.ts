/**
 * Docker's exec instances, as moby's `daemon/exec.go`: created in a running
 * container, started once (detached, or attached with its own output and stdin),
 * inspectable until some minutes after they exit (dockerd's execCommandGC), and
 * forgotten with their container. Each running exec lives in a child of the
 * engine's scope, closed when its process is deleted.
 */
import * as crypto from "node:crypto"
import { type Cause, Clock, Deferred, Duration, Effect, Exit, Queue, Scope, Stream } from "effect"
import type { ContainerdError } from "../../domain/ContainerdError.ts"
import { type Process, Stdio } from "../../services/Runtime.ts"
import { badRequest, conflict, type DockerError, notFound } from "../DockerError.ts"
import type { ExecConfig, ExecInspectJson } from "../Model.ts"
import { type Environment, lib, publish, taskOf } from "./Environment.ts"
import type { AttachSession } from "./Shape.ts"
import { isPaused } from "./State.ts"
import type { Entry } from "./Store.ts"
import { startFailure } from "./StartFailure.ts"
import { feedStdin } from "./Streams.ts"
import { stateOf } from "./Views.ts"

/** How long an exited exec stays inspectable, and how often old ones are collected (dockerd: 5 min). */
const EXEC_RETENTION = Duration.minutes(5)

/** An exec instance: created, then started once; kept until its container goes. */
interface ExecEntry {
  readonly id: string
  readonly containerId: string
  readonly config: ExecConfig
  started: boolean
  exitCode: number | undefined
  pid: number
  /** The process while it runs (started, not yet exited). */
  process: Process | undefined
  readonly exited: Deferred.Deferred<number>
  /** When it exited (ms), for the collection of old execs. */
  exitedAt: number | undefined
}

const pausedMessage = (entry: Entry) => `Container ${entry.id} is paused, unpause the container before exec`

/** The exec instances of the engine's containers; old exited ones are collected in the caller's scope. */
export const makeExecs = Effect.fnUntraced(function*(env: Environment) {
  const execs = new Map<string, ExecEntry>()
  // As dockerd's execCommandGC: an exec that exited more than the retention ago is
  // forgotten, so a long-lived container's execs do not pile up.
  const retention = Duration.toMillis(Duration.fromInputUnsafe(env.options.execRetention ?? EXEC_RETENTION))
  yield* Effect.forkScoped(Effect.forever(Effect.gen(function*() {
    yield* Effect.sleep(Duration.millis(retention / 5))
    const now = yield* Clock.currentTimeMillis
    for (const exec of execs.values()) {
      if (exec.exitedAt !== undefined && now - exec.exitedAt > retention) execs.delete(exec.id)
    }
  })))
  const engineScope = yield* Effect.scope

  const find = (execId: string) =>
    Effect.suspend(() => {
      const exec = execs.get(execId)
      return exec === undefined ? Effect.fail(notFound(`No such exec instance: ${execId}`)) : Effect.succeed(exec)
    })

  /** Creates an exec in a running, unpaused container. */
  const create = Effect.fnUntraced(function*(entry: Entry, config: ExecConfig) {
    const state = yield* stateOf(env, entry)
    if (!state.Running) return yield* Effect.fail(conflict(`Container ${entry.id} is not running`))
    if (state.Paused) return yield* Effect.fail(conflict(pausedMessage(entry)))
    if (config.Cmd === undefined || config.Cmd === null || config.Cmd.length === 0) {
      return yield* Effect.fail(badRequest("No exec command specified"))
    }
    if (config.Privileged === true) return yield* Effect.fail(badRequest("privileged execs are not supported"))
    const id = crypto.randomBytes(32).toString("hex")
    execs.set(id, {
      id,
      containerId: entry.id,
      config,
      started: false,
      exitCode: undefined,
      exitedAt: undefined,
      pid: 0,
      process: undefined,
      exited: yield* Deferred.make<number>()
    })
    yield* publish(env, entry, `exec_create: ${config.Cmd.join(" ")}`, { execID: id })
    return { Id: id }
  })

  /**
   * What dockerd checks before it answers an attached start (its `ExecExists`):
   * the exec exists, its container runs and is not paused. These fail the
   * request; whatever fails after them is written into the hijacked stream.
   */
  const checked = Effect.fnUntraced(function*(execId: string) {
    const exec = yield* find(execId)
    const entry = yield* env.store.find(exec.containerId)
    const tracked = yield* taskOf(env, entry)
    if (isPaused("running", entry.phase)) return yield* Effect.fail(conflict(pausedMessage(entry)))
    return { exec, entry, tracked }
  })

  // Harmless if it fails: delete closes the process's scope on every path, and containerd drops an
  // exec's record with its task's, so nothing of ours and nothing of containerd's is kept.
  const deleteProcess = (process: Process) => Effect.ignore(process.delete)

  /** A start that containerd refused: the exit code dockerd gives it (126/127/128), its process deleted. */
  const failed = (exec: ExecEntry, scope: Scope.Closeable, process: Process | undefined) =>
    (error: ContainerdError) =>
      Effect.gen(function*() {
        const { error: failure, exitCode } = startFailure(error.reason.message)
        exec.exitCode = exitCode
        exec.exitedAt = yield* Clock.currentTimeMillis
        yield* Deferred.succeed(exec.exited, exitCode)
        // Not waited for: the shim never opened the FIFOs, so nothing is left to drain, and the
        // answer need not wait for the RPC.
        yield* Effect.forkIn(
          Effect.andThen(Scope.close(scope, Exit.void), process === undefined ? Effect.void : deleteProcess(process)),
          engineScope
        )
        return yield* Effect.fail(failure)
      })

  /** Starts an exec once: detached with no stdio, or attached with a session ending with its output. */
  const start = Effect.fnUntraced(function*(execId: string, options: { readonly detach: boolean }) {
    const { entry, exec, tracked } = yield* checked(execId)
    if (exec.started) {
      return yield* Effect.fail(conflict(
        exec.exitCode === undefined ? `exec command ${execId} is already running` : `exec command ${execId} has already run`
      ))
    }
    exec.started = true
    const { config } = exec
    const attached = !options.detach
    const withStdin = attached && config.AttachStdin === true
    const tty = config.Tty === true
    const scope = yield* Scope.fork(engineScope)
    const process = yield* tracked.exec(execId, {
      args: config.Cmd ?? [],
      env: config.Env ?? undefined,
      workingDir: config.WorkingDir || undefined,
      user: config.User || undefined,
      tty,
      stdio: attached ? Stdio.pipe({ stdin: withStdin }) : Stdio.null
    }).pipe(Scope.provide(scope), Effect.catch(failed(exec, scope, undefined)))
    // One reader (the client), so a queue, ended with the output (or with the exec's scope).
    const output = yield* Queue.unbounded<{ readonly stream: "stdout" | "stderr"; readonly data: Uint8Array }, Cause.Done>()
    yield* Scope.addFinalizer(scope, Queue.end(output))
    const input = withStdin ? yield* Queue.unbounded<Uint8Array, Cause.Done>() : undefined
    if (attached) {
      const forward = (stream: "stdout" | "stderr", source: Stream.Stream<Uint8Array, ContainerdError>) =>
        // A FIFO read that fails ends this stream of the output early (logged: the client sees less
        // than the process wrote); the exit code still comes from the hub.
        Stream.runForEach(source, (data) => Queue.offer(output, { stream, data })).pipe(
          Effect.catch((error) => Effect.logWarning(`exec ${exec.id}: its ${stream} could not be read: ${error.message}`))
        )
      yield* Effect.forkIn(
        Effect.all([forward("stdout", process.stdout), forward("stderr", process.stderr)], { concurrency: 2, discard: true }).pipe(
          Effect.andThen(Queue.end(output))
        ),
        scope
      )
      if (input !== undefined) yield* Effect.forkIn(feedStdin(process, input), scope)
    }
    yield* process.start.pipe(Effect.catch(failed(exec, scope, process)))
    exec.process = process
    exec.pid = process.pid
    yield* publish(env, entry, `exec_start: ${(config.Cmd ?? []).join(" ")}`, { execID: execId })
    // The exit comes from the hub; then the process is deleted and its scope closed.
    yield* Effect.forkIn(
      Effect.gen(function*() {
        const status = yield* process.wait
        yield* deleteProcess(process)
        exec.exitCode = status.code
        exec.exitedAt = yield* Clock.currentTimeMillis
        exec.process = undefined
        yield* publish(env, entry, "exec_die", { execID: execId, exitCode: String(status.code) })
        yield* Deferred.succeed(exec.exited, status.code)
        yield* Scope.close(scope, Exit.void)
      }),
      engineScope
    )
    const session: AttachSession = {
      tty,
      output: attached ? Stream.fromQueue(output) : Stream.empty,
      write: input === undefined ? undefined : (data) => Effect.asVoid(Queue.offer(input, data)),
      endInput: input === undefined ? Effect.void : Effect.asVoid(Queue.end(input))
    }
    return { session, exited: Deferred.await(exec.exited) }
  })

  /** Resizes a running exec's terminal. */
  const resize = (execId: string, height: number, width: number): Effect.Effect<void, DockerError> =>
    Effect.gen(function*() {
      const exec = yield* find(execId)
      if (exec.process === undefined) return yield* Effect.fail(conflict(`exec ${execId} is not running`))
      yield* lib(exec.process.resize(width, height))
    })

  /** `GET /exec/{id}/json`. */
  const inspect = (execId: string): Effect.Effect<ExecInspectJson, DockerError> =>
    Effect.map(find(execId), (exec) => ({
      ID: exec.id,
      ContainerID: exec.containerId,
      Running: exec.process !== undefined,
      ExitCode: exec.exitCode ?? null,
      Pid: exec.pid,
      OpenStdin: exec.config.AttachStdin === true,
      OpenStdout: exec.config.AttachStdout === true,
      OpenStderr: exec.config.AttachStderr === true,
      CanRemove: false,
      DetachKeys: exec.config.DetachKeys ?? "",
      ProcessConfig: {
        tty: exec.config.Tty === true,
        entrypoint: exec.config.Cmd?.[0] ?? "",
        arguments: exec.config.Cmd?.slice(1) ?? [],
        privileged: false,
        user: exec.config.User ?? ""
      }
    }))

  /** Signals a running exec (a health probe past its timeout); nothing when it is not running. */
  const signal = (execId: string, name: string): Effect.Effect<void> =>
    Effect.suspend(() => {
      const process = execs.get(execId)?.process
      // A kill that fails finds the exec already gone (it ended between the lookup and the signal): nothing to stop.
      return process === undefined ? Effect.void : Effect.ignore(process.kill(name))
    })

  /** Forgets the execs of a removed container. */
  const forget = (containerId: string) =>
    Effect.sync(() => {
      for (const exec of execs.values()) if (exec.containerId === containerId) execs.delete(exec.id)
    })

  /** `checked`, for the API: whether an attached start may answer its 101. */
  const startable = (execId: string): Effect.Effect<void, DockerError> => Effect.asVoid(checked(execId))

  return { create, startable, start, resize, inspect, signal, forget }
})

/** The engine's exec instances. */
export type Execs = Effect.Success<ReturnType<typeof makeExecs>>
