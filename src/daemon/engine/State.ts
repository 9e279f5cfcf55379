/**
 * A container's state as Docker shows it (created, running, paused, restarting,
 * removing, exited, dead), as moby's `daemon/container/state.go`: one source of
 * truth. The task's side (created, running, exited, ...) is the monitors'; what
 * only the engine knows (a pause it asked for, a policy restart pending, a removal
 * under way) is the `Phase` here, changed only by the pure transitions below, so
 * an illegal step (pausing a paused container, removing twice) is refused in one
 * place with Docker's message.
 */
import { Result } from "effect"
import type { ContainerStateJson } from "../Model.ts"

/** What the monitors say of the task: `undefined` when they do not know the container. */
export type TaskStatus = "created" | "running" | "paused" | "exited" | "deleted" | undefined

/** Docker's `State.Status`. */
export type Status = ContainerStateJson["Status"]

/** What the engine knows beyond the task. */
export type Phase =
  | { readonly _tag: "Idle" }
  | { readonly _tag: "Paused" }
  /** A policy restart is pending (Docker's `Restarting`). */
  | { readonly _tag: "Restarting" }
  /** A removal is under way; `before` is what it falls back to if the removal fails. */
  | { readonly _tag: "Removing"; readonly before: Phase }

/** The phase of a container the engine has done nothing to. */
export const idle: Phase = { _tag: "Idle" }
const paused: Phase = { _tag: "Paused" }
const restarting: Phase = { _tag: "Restarting" }

/** What happens to a container, as far as its state goes. */
export type Transition =
  | { readonly _tag: "Pause" }
  | { readonly _tag: "Unpause" }
  /** A run ended; `restart`: the policy restarts it. */
  | { readonly _tag: "Exit"; readonly restart: boolean }
  /** A run is being started (by hand, or the pending restart). */
  | { readonly _tag: "Start" }
  /** A pending restart is called off (a stop, a start by hand). */
  | { readonly _tag: "CancelRestart" }
  | { readonly _tag: "BeginRemove" }
  | { readonly _tag: "AbortRemove" }

/** Whether the task is up (running or frozen). */
export const isRunning = (task: TaskStatus): boolean => task === "running" || task === "paused"

/** Whether it is frozen: by the engine's pause (kept through a removal under way) or as containerd says. */
export const isPaused = (task: TaskStatus, phase: Phase): boolean =>
  isRunning(task) && (task === "paused" || phase._tag === "Paused" || (phase._tag === "Removing" && phase.before._tag === "Paused"))

/** Docker's status of a container: the engine's phase first, then the task's. */
export const status = (task: TaskStatus, phase: Phase): Status => {
  switch (phase._tag) {
    case "Removing":
      return "removing"
    case "Restarting":
      return "restarting"
    default:
      if (isRunning(task)) return isPaused(task, phase) ? "paused" : "running"
      if (task === "exited") return "exited"
      return task === undefined || task === "deleted" ? "dead" : "created"
  }
}

/** The phase after `transition`, or why it is not allowed (Docker's 409 messages, `{id}` for the container). */
export const transition = (task: TaskStatus, phase: Phase, step: Transition): Result.Result<Phase, string> => {
  const now = status(task, phase)
  switch (step._tag) {
    case "Pause":
      if (now === "paused") return Result.fail("Container {id} is already paused")
      if (now !== "running") return Result.fail(`Container {id} is not running`)
      return Result.succeed(paused)
    case "Unpause":
      return now === "paused" ? Result.succeed(idle) : Result.fail("Container {id} is not paused")
    case "Exit":
      // A removal under way stays so (it removes what exited); else the task's end ends a pause.
      if (phase._tag === "Removing") return Result.succeed({ _tag: "Removing", before: idle })
      return Result.succeed(step.restart ? restarting : idle)
    case "Start":
      // dockerd's words exactly (daemon/start.go): this one names no container.
      if (phase._tag === "Removing") return Result.fail("container is marked for removal and cannot be started")
      return Result.succeed(idle)
    case "CancelRestart":
      return Result.succeed(phase._tag === "Restarting" ? idle : phase)
    case "BeginRemove":
      if (phase._tag === "Removing") return Result.fail("removal of container {id} is already in progress")
      // The pending restart is called off by the removal: a failed removal does not bring it back.
      return Result.succeed({ _tag: "Removing", before: phase._tag === "Restarting" ? idle : phase })
    case "AbortRemove":
      return Result.succeed(phase._tag === "Removing" ? phase.before : phase)
  }
}
