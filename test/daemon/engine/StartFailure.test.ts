import { assert, describe, it } from "@effect/vitest"
import { startFailure } from "../../../src/daemon/engine/StartFailure.ts"

describe("StartFailure", () => {
  it("gives a refused start moby's exit code and status", () => {
    const of = (message: string) => {
      const { error, exitCode } = startFailure(message)
      return [exitCode, error.status, error.message]
    }
    assert.deepStrictEqual(of("exec: \"/etc/passwd\": permission denied: unknown"), [126, 400, "exec: \"/etc/passwd\": permission denied: unknown"])
    assert.deepStrictEqual(of("exec: \"/bin\": is a directory: unknown"), [126, 400, "exec: \"/bin\": is a directory: unknown: permission denied"])
    assert.deepStrictEqual(of("exec: \"x\": executable file not found in $PATH: unknown"), [127, 400, "exec: \"x\": executable file not found in $PATH: unknown"])
    assert.deepStrictEqual(of("stat /nope: no such file or directory: unknown"), [127, 400, "stat /nope: no such file or directory: unknown"])
    const [code, status, message] = of("chdir to cwd (\"/etc/passwd\") set in config.json failed: not a directory: unknown")
    assert.deepStrictEqual([code, status], [127, 400])
    assert.include(message, "not a directory: unknown: Are you trying to mount a directory onto a file (or vice-versa)?")
    assert.deepStrictEqual(of("ttrpc: closed"), [128, 500, "ttrpc: closed"])
  })
})
