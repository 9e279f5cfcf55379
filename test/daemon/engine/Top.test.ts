import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { checkPsArgs, parsePsOutput } from "../../../src/daemon/engine/Top.ts"

describe("Top", () => {
  it("parsePsOutput keeps the container's pids, in ps's columns, the overhang joined into the last", () => {
    const output = [
      "UID          PID    PPID  C STIME TTY          TIME CMD",
      "root           1       0  0 08:00 ?        00:00:01 /sbin/init splash",
      "root        4767    4747  0 08:34 ?        00:00:00 sleep 600",
      "root        4800    4767  0 08:34 ?        00:00:00 sh -c echo  a   b",
      ""
    ].join("\n")
    assert.deepStrictEqual(parsePsOutput(output, [4767, 4800]), Result.succeed({
      Processes: [
        ["root", "4767", "4747", "0", "08:34", "?", "00:00:00", "sleep 600"],
        ["root", "4800", "4767", "0", "08:34", "?", "00:00:00", "sh -c echo a b"]
      ],
      Titles: ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    }))
  })

  it("parsePsOutput keeps thread lines (-m) after a kept process only; a bad pid or no PID column fails", () => {
    const threads = ["PID TTY TIME CMD", "7 ? 00:00:00 app", "- - 00:00:00 -", "8 ? 00:00:00 other", "- - 00:00:00 -"].join("\n")
    assert.deepStrictEqual(
      Result.map(parsePsOutput(threads, [7]), (top) => top.Processes),
      Result.succeed([["7", "?", "00:00:00", "app"], ["-", "-", "00:00:00", "-"]])
    )
    assert.deepStrictEqual(parsePsOutput("USER\nroot\n", [1]), Result.fail("Couldn't find PID field in ps output"))
    assert.deepStrictEqual(
      parsePsOutput("PID CMD\nabc x\n", [1]),
      Result.fail("Unexpected pid 'abc': strconv.Atoi: parsing \"abc\": invalid syntax")
    )
  })

  it("checkPsArgs refuses renaming another column to PID, as dockerd", () => {
    assert.deepStrictEqual(checkPsArgs("-ef"), Result.void)
    assert.deepStrictEqual(checkPsArgs("-o pid=PID,comm"), Result.void)
    assert.deepStrictEqual(checkPsArgs("-ef x=PID"), Result.fail("specifying \"x=PID\" is not allowed"))
    assert.deepStrictEqual(checkPsArgs("-o user= PIDX"), Result.fail("specifying \"user=PIDX\" is not allowed"))
  })
})
