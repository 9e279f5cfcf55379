import { assert, describe, it } from "@effect/vitest"
import { Exited, exitedOf, exitUnknown, ExitUnknown, UNKNOWN_EXIT_CODE } from "../../src/domain/ExitStatus.ts"

describe("exitedOf", () => {
  const at = new Date(1_700_000_000_000)
  // containerd's process status (Tasks.Get/Delete or a TaskExit event) → the exit
  const cases: ReadonlyArray<readonly [Parameters<typeof exitedOf>[0], Exited]> = [
    [{ exitStatus: 0, exitedAt: at, pid: 10 }, new Exited({ code: 0, exitedAt: at, pid: 10 })],
    [{ exitStatus: 137, exitedAt: at, pid: 11 }, new Exited({ code: 137, exitedAt: at, pid: 11 })],
    [{ exitStatus: 1, exitedAt: undefined, pid: 12 }, new Exited({ code: 1, exitedAt: new Date(0), pid: 12 })]
  ]
  for (const [process, exited] of cases) {
    it(`code ${process.exitStatus}, pid ${process.pid}`, () => assert.deepStrictEqual(exitedOf(process), exited))
  }
})

describe("exitUnknown", () => {
  it("reports the engines' unknown exit code", () => {
    assert.deepStrictEqual(exitUnknown(7, "gone"), new ExitUnknown({ code: UNKNOWN_EXIT_CODE, pid: 7, reason: "gone" }))
    assert.strictEqual(exitUnknown(0, "gone").code, 255)
  })
})
