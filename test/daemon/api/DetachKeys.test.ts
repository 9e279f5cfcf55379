/**
 * Detach keys as Docker reads and scans them: moby/term's `ToBytes` format, and
 * a scanner that holds a partial match until it completes or breaks, across
 * chunk boundaries.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { DEFAULT_DETACH_KEYS, detachScanner, parseDetachKeys } from "../../../src/daemon/api/DetachKeys.ts"

describe("parseDetachKeys", () => {
  const cases: ReadonlyArray<readonly [string | undefined, ReadonlyArray<number> | string]> = [
    [undefined, [0x10, 0x11]],
    ["", [0x10, 0x11]],
    ["ctrl-p,ctrl-q", [0x10, 0x11]],
    ["ctrl-a", [0x01]],
    ["ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", [0, 27, 28, 29, 30, 31]],
    ["a,b", [0x61, 0x62]],
    ["ctrl-x,DEL", [0x18, 127]],
    [",", "Invalid detach keys (,) provided"],
    ["ctrl-P", "Invalid detach keys (ctrl-P) provided"],
    ["ctrl-1", "Invalid detach keys (ctrl-1) provided"],
    ["ab", "Invalid detach keys (ab) provided"],
    ["ctrl-p,,ctrl-q", "Invalid detach keys (ctrl-p,,ctrl-q) provided"],
    ["é", "Invalid detach keys (é) provided"]
  ]
  for (const [input, expected] of cases) {
    it(`${JSON.stringify(input)}`, () => {
      const result = parseDetachKeys(input)
      if (typeof expected === "string") assert.deepStrictEqual(result, Result.fail(expected))
      else assert.deepStrictEqual(Result.map(result, (bytes) => [...bytes]), Result.succeed([...expected]))
    })
  }
  it("the default is Ctrl-P Ctrl-Q", () => assert.deepStrictEqual([...DEFAULT_DETACH_KEYS], [0x10, 0x11]))
})

describe("detachScanner", () => {
  const text = (s: string) => new TextEncoder().encode(s)
  /** Feeds the chunks; what was forwarded and after which chunk (if any) it detached. */
  const scan = (keys: string, chunks: ReadonlyArray<string>) => {
    const scanner = detachScanner(text(keys))
    let forwarded = ""
    for (const [i, chunk] of chunks.entries()) {
      const { detached, forward } = scanner(text(chunk))
      forwarded += new TextDecoder().decode(forward)
      if (detached) return { forwarded, detachedAt: i }
    }
    return { forwarded, detachedAt: undefined }
  }
  const cases: ReadonlyArray<readonly [string, string, ReadonlyArray<string>, string, number | undefined]> = [
    ["no keys in the input: all forwarded", "\x10\x11", ["hello", " world"], "hello world", undefined],
    ["the sequence in one chunk detaches; what came before is forwarded", "\x10\x11", ["ls\x10\x11rest"], "ls", 0],
    ["the sequence split across chunks", "\x10\x11", ["a\x10", "\x11b"], "a", 1],
    ["a partial match held, then broken: forwarded as it came", "\x10\x11", ["a\x10", "b"], "a\x10b", undefined],
    ["a partial match at the end is held back", "\x10\x11", ["x\x10"], "x", undefined],
    ["Ctrl-P twice then Ctrl-Q: the first is forwarded, the rest detaches", "\x10\x11", ["\x10\x10\x11"], "\x10", 0],
    ["overlapping keys: a,a,b in aaab", "aab", ["aaab"], "a", 0],
    ["a one-key sequence", "q", ["abq"], "ab", 0],
    ["bytes in the chunk after the detach are dropped", "\x10\x11", ["\x10\x11", "more"], "", 0]
  ]
  for (const [name, keys, chunks, forwarded, detachedAt] of cases) {
    it(name, () => assert.deepStrictEqual(scan(keys, chunks), { forwarded, detachedAt }))
  }
})
