/**
 * Running a host tool (`unshare`, `umount`, `iptables-restore`, ...) to the end:
 * its output on success, a `ContainerdError` with its stderr otherwise, under a
 * deadline, killed if the caller is interrupted. For tools that take no
 * environment of their own; CNI plugins have theirs (`Cni.ts`).
 */
import { Effect } from "effect"
import { execFile } from "node:child_process"
import { type ContainerdError, GrpcCode, fromGrpcStatus } from "../domain/ContainerdError.ts"

/** The error of a tool that failed, as the library reports it (`Unknown`, its stderr as the message). */
export const commandFailure = (method: string, message: string, cause?: unknown): ContainerdError =>
  fromGrpcStatus({ code: GrpcCode.UNKNOWN, details: message }, { method, address: "", cause })

/** Runs `command args` (with `stdin` written to it), succeeding with its stdout. */
export const runCommand = (
  method: string,
  command: string,
  args: ReadonlyArray<string>,
  options?: { readonly stdin?: string | undefined; readonly timeoutMs?: number | undefined }
): Effect.Effect<string, ContainerdError> =>
  Effect.callback<string, ContainerdError>((resume) => {
    const child = execFile(
      command,
      args,
      { timeout: options?.timeoutMs ?? 10_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) =>
        resume(
          error
            ? Effect.fail(commandFailure(method, `${command} ${args.join(" ")}: ${(stderr || error.message).trim()}`, error))
            : Effect.succeed(stdout)
        )
    )
    child.stdin?.on("error", () => {})
    child.stdin?.end(options?.stdin ?? "")
    return Effect.sync(() => void child.kill("SIGKILL"))
  })
