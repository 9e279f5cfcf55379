/**
 * How a process's stdio is connected, as a caller chooses it: nothing, pipes
 * read and written through the handle, a log file or a logging program the shim
 * runs itself (containerd's `file://` and `binary://` log URIs). The FIFOs
 * behind pipes are internal (`internal/Fifo.ts`); this is only the choice.
 */

/** How a process's stdio is connected. */
export type Stdio =
  /** Nothing: the shim connects the process to /dev/null. */
  | { readonly _tag: "Null" }
  /** FIFOs: stdout and stderr as Streams, stdin as a Sink when asked for. */
  | { readonly _tag: "Pipe"; readonly stdin: boolean }
  /**
   * The shim appends stdout and stderr to this file itself, so output outlives
   * us. containerd 1.6's shim can drop stderr written just before the process
   * exits on a loaded machine (seen with `ctr --log-uri file://` too): for a
   * complete record use `Binary` (as our daemon does) or `Pipe`.
   */
  | { readonly _tag: "LogFile"; readonly path: string }
  /**
   * The shim starts this program (containerd's `binary://` logging) with the
   * process's stdout and stderr as fds 3 and 4; it runs as long as the process,
   * whether or not we do. Its arguments are `argument ""`: containerd passes the
   * URI's query pairs as `key value`, in no fixed order when there are several.
   */
  | { readonly _tag: "Binary"; readonly path: string; readonly argument?: string | undefined }

/** Stdio constructors. */
export const Stdio = {
  null: { _tag: "Null" } as Stdio,
  pipe: (options?: { readonly stdin?: boolean }): Stdio => ({ _tag: "Pipe", stdin: options?.stdin ?? false }),
  logFile: (file: string): Stdio => ({ _tag: "LogFile", path: file }),
  binary: (program: string, argument?: string): Stdio => ({ _tag: "Binary", path: program, argument })
}
