/**
 * How a process ended. `Exited` is a real exit reported by containerd.
 * `ExitUnknown` is what we report when the process is gone and containerd can no
 * longer say how it ended (its task was deleted while we were not listening):
 * its code is 255, as Docker and containerd's `Task.Wait` report, but it is a
 * different case so that nobody mistakes it for a real exit code.
 */
import { Effect, Schema } from "effect"

/** The exit code engines report for a process whose real status is unknown. */
export const UNKNOWN_EXIT_CODE = 255

/** A process exited with `code` at `exitedAt`. */
export class Exited extends Schema.TaggedClass<Exited>()("Exited", {
  code: Schema.Int,
  exitedAt: Schema.Date,
  pid: Schema.Int,
  /**
   * The container's cgroup ran out of memory while this (init) process ran, so the
   * kernel's OOM killer is the likely cause (Docker's State.OOMKilled).
   */
  oomKilled: Schema.Boolean.pipe(Schema.optionalKey, Schema.withConstructorDefault(Effect.succeed(false)))
}) {}

/** The process is gone and its real exit status cannot be known. */
export class ExitUnknown extends Schema.TaggedClass<ExitUnknown>()("ExitUnknown", {
  /** Always `UNKNOWN_EXIT_CODE` (255), the code engines report for an unknown exit. */
  code: Schema.Literal(UNKNOWN_EXIT_CODE),
  pid: Schema.Int,
  /** Why the status is unknown. */
  reason: Schema.String
}) {}

/** How a process ended. */
export const ExitStatus = Schema.Union([Exited, ExitUnknown])

/** How a process ended. */
export type ExitStatus = Exited | ExitUnknown

/**
 * The exit containerd reports for a stopped process (Tasks.Get, Tasks.Delete,
 * Tasks.List) or in a TaskExit/TaskDelete event; a missing time is the epoch.
 */
export const exitedOf = (process: {
  readonly exitStatus: number
  readonly exitedAt?: Date | undefined
  readonly pid: number
}): Exited => new Exited({ code: process.exitStatus, exitedAt: process.exitedAt ?? new Date(0), pid: process.pid })

/** A process that is gone without a known status, and why. */
export const exitUnknown = (pid: number, reason: string): ExitUnknown =>
  new ExitUnknown({ code: UNKNOWN_EXIT_CODE, pid, reason })
