/**
 * What every container, task and process handle of one `Runtime` shares: the
 * client, the exit hub, the FIFO pool, the runtime's settings, its cache of
 * image user files and the networks service (if provided). The handles are
 * built by plain functions over it, so that each kind of handle has its own
 * module while they share one of each.
 */
import type { Option } from "effect"
import type { FifoPool } from "../../internal/Fifo.ts"
import type { Containerd } from "../Containerd.ts"
import type { ExitHub } from "../ExitHub.ts"
import type { NetworksShape } from "../Networks.ts"
import type { UserFiles } from "./ContainerOptions.ts"

/** The runtime's shared parts, as the handles use them. */
export interface RuntimeEnv {
  readonly client: Containerd["Service"]
  readonly hub: ExitHub["Service"]
  /** FIFOs made ahead, and the directory each process's are moved to (per namespace). */
  readonly fifos: FifoPool
  readonly fifoDir: string
  /** How many exec starts of one task may be in flight at once (`RuntimeOptions.execConcurrency`). */
  readonly execConcurrency: number
  readonly userFiles: UserFiles
  /** The networks containers join, when the program provides them. */
  readonly networks: Option.Option<NetworksShape>
}
