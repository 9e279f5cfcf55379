/**
 * A process that containerd could not start, as dockerd reports it (moby's
 * `setExitCodeFromError`, daemon/errors.go): the exit code the process is
 * given (126 cannot be invoked, 127 not found, 128 anything else) and the
 * error its start answers (a 400 for the command's or the config's fault, a
 * 500 otherwise), with dockerd's hints appended to the runtime's message.
 */
import { badRequest, type DockerError, internal } from "../DockerError.ts"

/** How a failed start ends: the exit code recorded and the error answered. */
export interface StartFailure {
  readonly exitCode: 126 | 127 | 128
  readonly error: DockerError
}

/** The failure of a start whose runtime said `message` (e.g. "OCI runtime exec failed: …: unknown"). */
export const startFailure = (message: string): StartFailure => {
  const lower = message.toLowerCase()
  if (lower.includes("permission denied")) return { exitCode: 126, error: badRequest(message) }
  // Go 1.20 reports executing a directory as EISDIR; dockerd adds EACCES back, which the docker CLI looks for.
  if (lower.includes("is a directory")) return { exitCode: 126, error: badRequest(`${message}: permission denied`) }
  if (lower.includes("not a directory")) {
    return {
      exitCode: 127,
      error: badRequest(
        `${message}: Are you trying to mount a directory onto a file (or vice-versa)? Check if the specified host path exists and is the expected type`
      )
    }
  }
  if (["executable file not found", "no such file or directory", "failed to run runc create/exec call"].some((s) => lower.includes(s))) {
    return { exitCode: 127, error: badRequest(message) }
  }
  return { exitCode: 128, error: internal(message) }
}
