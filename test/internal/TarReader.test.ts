import { assert, describe, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { readTar, type TarEntry } from "../../src/internal/TarReader.ts"

/** What readTar hands over of `archive` fed in `chunkSize`-byte chunks: each header and its bytes. */
const read = (archive: Buffer, chunkSize: number) =>
  Effect.gen(function*() {
    const seen: Array<{ entry: TarEntry; data: string }> = []
    const chunks: Array<Uint8Array> = []
    for (let at = 0; at < archive.length; at += chunkSize) chunks.push(archive.subarray(at, at + chunkSize))
    yield* readTar(Stream.fromIterable(chunks), (entry) =>
      Effect.sync(() => {
        const record = { entry, data: "" }
        seen.push(record)
        return { write: (chunk: Uint8Array) => Effect.sync(() => void (record.data += Buffer.from(chunk).toString())), end: Effect.void }
      }))
    return seen
  })

// Archives GNU tar writes (pax long names, links, modes, owners), read back in chunks of every alignment.
describe("readTar", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-tarreader-"))
  const long = "n".repeat(150)
  fs.mkdirSync(path.join(dir, "d"))
  fs.writeFileSync(path.join(dir, "d", long), "hello")
  fs.chmodSync(path.join(dir, "d", long), 0o4750)
  fs.symlinkSync("../etc/passwd", path.join(dir, "d", "link"))
  const archive = execFileSync("tar", ["-C", dir, "--format=pax", "--owner=1234", "--group=567", "--mtime=@1700000000", "-cf", "-", "d"])

  for (const chunkSize of [1, 7, 512, 100_000]) {
    it.effect(`reads names over 100 bytes, links, modes, owners and bytes in ${chunkSize}-byte chunks`, () =>
      Effect.gen(function*() {
        const seen = yield* read(archive, chunkSize)
        const byName = new Map(seen.map((s) => [s.entry.name.replace(/\/$/, ""), s]))
        assert.strictEqual(byName.get("d")?.entry.kind, "Directory")
        const file = byName.get(`d/${long}`)!
        assert.deepStrictEqual([file.entry.kind, file.entry.mode, file.entry.uid, file.entry.gid, file.entry.mtime, file.data], [
          "File", 0o4750, 1234, 567, 1_700_000_000, "hello"
        ])
        assert.deepStrictEqual([byName.get("d/link")?.entry.kind, byName.get("d/link")?.entry.linkname], ["Symlink", "../etc/passwd"])
      }))
  }

  it.effect("fails on an archive cut off in a member, and on a bad header", () =>
    Effect.gen(function*() {
      const cut = yield* Effect.flip(read(archive.subarray(0, 1024 + 100), 512))
      assert.strictEqual(cut._tag, "TarFormatError")
      const bad = yield* Effect.flip(read(Buffer.alloc(1024, 7), 512))
      assert.deepStrictEqual([bad._tag, bad.message], ["TarFormatError", "archive/tar: invalid tar header"])
    }))
})
