/**
 * A container's streams, as moby's `daemon/attach.go` and `daemon/logs.go`: the
 * output pump that drains each run into the json-file log and to attachers (so
 * a container never blocks on its stdout), the stdin attachers write to, and the
 * readers of the log (`logs`, `logs -f`, `attach --logs`). A shim-logged
 * container's output is written by the shim's logger instead; its log file is
 * then the only source, followed to the end of the run.
 */
import { type Cause, Clock, Deferred, Effect, Latch, PubSub, Queue, Result, Stream } from "effect"
import type { ContainerdError } from "../../domain/ContainerdError.ts"
import type { Process, Task } from "../../services/Runtime.ts"
import { retryWhile } from "../../internal/Retry.ts"
import { type DockerError, internal } from "../DockerError.ts"
import { makeWriter } from "../JsonLog.ts"
import { type LogEntry, readLogs } from "../JsonLogReader.ts"
import type { LogConfig } from "../LogFiles.ts"
import type { AttachOptions, AttachSession, LogsOptions } from "./Shape.ts"

/** What attachers receive: output of a stream, or the end of a run's output. */
export type OutputEvent =
  | { readonly _tag: "Output"; readonly stream: "stdout" | "stderr"; readonly data: Uint8Array }
  | { readonly _tag: "End" }

/** One container's live streams, across its runs. */
export interface ContainerOutput {
  /** The output of every run, for attachers; `End` after each run's last byte. */
  readonly events: PubSub.PubSub<OutputEvent>
  /** The current run's stdin (containers with `OpenStdin`), written by attachers. */
  input: Queue.Queue<Uint8Array, Cause.Done> | undefined
  /** A run's output is being pumped (or shim-logged): it has not ended yet. */
  streaming: boolean
  /** Readers following the log file; its removal waits for them to finish. */
  followers: number
  /** Open while no reader follows the log file. */
  readonly unfollowed: Latch.Latch
}

/** A container's streams before its first run. */
export const makeOutput: Effect.Effect<ContainerOutput> = Effect.map(PubSub.unbounded<OutputEvent>(), (events) => ({
  events,
  input: undefined,
  streaming: false,
  followers: 0,
  unfollowed: Latch.makeUnsafe(true)
}))

/** What the streams need to know of their container. */
export interface StreamTarget {
  readonly id: string
  readonly output: ContainerOutput
  readonly logPath: string
  readonly logConfig: LogConfig
  readonly tty: boolean
  readonly openStdin: boolean
  readonly stdinOnce: boolean
  readonly shimLogged: boolean
}

/** The stdin queue of the container's next (or current) run; attachers may write before it starts. */
export const inputOf = (output: ContainerOutput) =>
  Effect.gen(function*() {
    if (output.input === undefined) output.input = yield* Queue.unbounded<Uint8Array, Cause.Done>()
    return output.input
  })

/** Feeds a process's stdin from `input` until the input ends, then closes it (a container's run, an exec). */
export const feedStdin = (process: Process, input: Queue.Dequeue<Uint8Array, Cause.Done>) =>
  Stream.fromQueue(input).pipe(
    Stream.run(process.stdin),
    // A write that fails means the process is gone or its stdin is closed: nothing more can reach it.
    Effect.ignore,
    // The end of the input must reach the process (one reading stdin waits for it): retried while
    // containerd is away; a failure that is not retryable means the process is gone. The fiber ends
    // with the process's scope.
    Effect.andThen(retryWhile("Process.closeStdin", process.closeStdin, (error) => error.isRetryable)),
    Effect.ignore
  )

/** A run's output has ended (its last byte pumped, or its shim logger done): attachers and followers stop. */
export const endRun = (output: ContainerOutput) =>
  Effect.suspend(() => {
    output.streaming = false
    return PubSub.publish(output.events, { _tag: "End" })
  })

/**
 * A run that never started, as moby's `Reset` after a failed start closes the
 * container's streams: its attachers and log followers stop (releasing their
 * connections and the log file), and the stdin they wrote is dropped.
 */
export const abandonRun = (output: ContainerOutput) =>
  Effect.gen(function*() {
    const input = output.input
    output.input = undefined
    if (input !== undefined) yield* Queue.end(input)
    yield* endRun(output)
  })

/**
 * Drains one run's output into the json-file log and to the attachers, and
 * feeds attachers' input to its stdin. Output is read whether or not anyone
 * attaches, so a container never blocks on its stdout.
 */
export const pump = (target: StreamTarget, task: Task) =>
  Effect.scoped(Effect.gen(function*() {
    const { output } = target
    // A log that cannot be written must not stop the output being read: the container would block.
    const writer = yield* makeWriter({ path: target.logPath, ...target.logConfig }).pipe(Effect.catch((error) =>
      Effect.as(Effect.logError(`container ${target.id}: its log cannot be written; output is dropped`, error), {
        write: () => Effect.void,
        close: Effect.void
      })
    ))
    const forward = (stream: "stdout" | "stderr", source: Stream.Stream<Uint8Array, ContainerdError>) =>
      Stream.runForEach(source, (data) =>
        Effect.andThen(writer.write(stream, data), PubSub.publish(output.events, { _tag: "Output", stream, data }))).pipe(
        Effect.catch((error) => Effect.logWarning(`container ${target.id}: reading ${stream} failed`, error))
      )
    const input = output.input
    if (input !== undefined) yield* Effect.forkScoped(feedStdin(task, input))
    yield* Effect.all([forward("stdout", task.stdout), forward("stderr", task.stderr)], { concurrency: 2, discard: true })
    yield* writer.close
    // The next run gets a fresh stdin.
    if (output.input === input) output.input = undefined
    yield* endRun(output)
  }))

/**
 * The container's log file, read; given a `subscription` to its output (which
 * the caller took before looking, so the end cannot slip past), followed until
 * its current or next run's output has ended: the `End` on it.
 */
const followLog = (
  target: StreamTarget,
  read: Omit<Parameters<typeof readLogs>[0], "path" | "done" | "follow">,
  subscription?: PubSub.Subscription<OutputEvent>
) =>
  Effect.gen(function*() {
    const end = yield* Deferred.make<void>()
    if (subscription !== undefined) {
      yield* Effect.forkScoped(
        Stream.fromSubscription(subscription).pipe(
          Stream.takeUntil((event) => event._tag === "End"),
          Stream.runDrain,
          Effect.andThen(Deferred.succeed(end, undefined))
        )
      )
    }
    const { output } = target
    // Counted while it runs, not before: a stream nobody runs must not hold up a removal.
    return Stream.unwrap(Effect.sync(() => {
      if (output.followers++ === 0) output.unfollowed.closeUnsafe()
      return readLogs({ ...read, follow: subscription !== undefined, path: target.logPath, done: Deferred.await(end) }).pipe(
        Stream.ensuring(Effect.sync(() => {
          if (--output.followers === 0) output.unfollowed.openUnsafe()
        }))
      )
    }))
  })

const chunks = (entries: Stream.Stream<LogEntry, unknown>) =>
  entries.pipe(Stream.map((e) => ({ stream: e.stream, data: e.log })), Stream.catch(() => Stream.empty))

/** Attaches to the container's output (and stdin): from now until the end of its next (or current) run. */
export const attach = (target: StreamTarget, options: AttachOptions) =>
  Effect.gen(function*() {
    const wanted = (stream: "stdout" | "stderr") => stream === "stdout" ? options.stdout : options.stderr
    // Subscribe first, so nothing between the replay and now is missed.
    const subscription = options.stream ? yield* PubSub.subscribe(target.output.events) : undefined
    const replay = options.logs
      ? chunks(readLogs({ path: target.logPath, stdout: options.stdout, stderr: options.stderr }))
      : Stream.empty
    // A shim-logged container's output is its log file: one reader, from now (or, with
    // `logs`, from the start), followed to the end of the run, so nothing comes twice.
    const output = subscription !== undefined && target.shimLogged
      ? Stream.unwrap(Effect.map(
        followLog(target, {
          stdout: options.stdout,
          stderr: options.stderr,
          since: options.logs ? undefined : yield* Clock.currentTimeMillis
        }, subscription),
        chunks
      ))
      : Stream.concat(
        replay,
        subscription === undefined ? Stream.empty : Stream.fromSubscription(subscription).pipe(
          Stream.takeWhile((event) => event._tag !== "End"),
          Stream.filterMap((event) =>
            event._tag === "Output" && wanted(event.stream)
              ? Result.succeed({ stream: event.stream, data: event.data })
              : Result.failVoid
          )
        )
      )
    const input = options.stdin && options.stream && target.openStdin ? yield* inputOf(target.output) : undefined
    return {
      tty: target.tty,
      output,
      write: input === undefined ? undefined : (data: Uint8Array) => Effect.asVoid(Queue.offer(input, data)),
      endInput: input !== undefined && target.stdinOnce ? Effect.asVoid(Queue.end(input)) : Effect.void
    } satisfies AttachSession
  })

/** The container's json-file log, filtered; with `follow`, until its current run's output has ended. */
export const logs = (target: StreamTarget, options: LogsOptions): Stream.Stream<LogEntry, DockerError> =>
  Stream.unwrap(Effect.gen(function*() {
    // Only a follower listens for the run's end; a plain read buffers nothing of the live output.
    const subscription = options.follow && target.output.streaming ? yield* PubSub.subscribe(target.output.events) : undefined
    const entries = yield* followLog(target, options, subscription)
    return Stream.mapError(entries, (error) => internal(`reading the log of ${target.id} failed: ${error.message}`, error))
  }))
