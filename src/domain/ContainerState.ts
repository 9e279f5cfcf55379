/**
 * What the monitors say of a container: its state, and how one of its runs ended.
 * Plain data, shared by the monitors and their consumers (the daemon).
 */
import { Schema } from "effect"
import type { ExitStatus } from "./ExitStatus.ts"

/**
 * A container's state, as the consumer sees it. Plain data: it is rebuilt on
 * every change, so it is made directly rather than through a Schema constructor;
 * the Schema is its model and encoding.
 */
export const ContainerState = Schema.Struct({
  namespace: Schema.String,
  id: Schema.String,
  status: Schema.Literals(["created", "running", "paused", "exited", "deleted"]),
  pid: Schema.Int,
  startedAt: Schema.optional(Schema.Date),
  exitCode: Schema.optional(Schema.Int),
  exitedAt: Schema.optional(Schema.Date),
  /** The exit status could not be known (task gone while we were not watching). */
  exitUnknown: Schema.Boolean,
  oomKilled: Schema.Boolean
})

/** A container's state. */
export type ContainerState = typeof ContainerState.Type

/** What the consumer is told when a monitored task ends. */
export interface ContainerExit {
  readonly namespace: string
  readonly containerId: string
  readonly status: ExitStatus
  readonly oomKilled: boolean
  /** Whether it ended while we were not running (found at recovery). */
  readonly recovered: boolean
}

/** The state change of an exit. */
export const exitedPatch = (status: ExitStatus): Partial<ContainerState> => ({
  status: "exited",
  pid: status.pid,
  exitCode: status.code,
  exitedAt: status._tag === "Exited" ? status.exitedAt : undefined,
  exitUnknown: status._tag === "ExitUnknown",
  // The hub saw the OOM in stream order; our own mark may still be on its way.
  ...(status._tag === "Exited" && status.oomKilled ? { oomKilled: true } : {})
})
