import { assert, describe, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { execFileSync } from "node:child_process"
import { type TarMember, tarStream } from "../../src/internal/TarWriter.ts"

// What GNU tar reads back of an archive we wrote: names (a pax header for the long one), links, modes, owners, times.
describe("tarStream", () => {
  it.effect("writes modes, owners, mtimes, links and names over 100 bytes that GNU tar reads back", () =>
    Effect.gen(function*() {
      const long = `dir/${"n".repeat(150)}`
      const meta = { mode: 0o4750, uid: 1234, gid: 567, mtime: 1_700_000_000 }
      const members: ReadonlyArray<TarMember<never>> = [
        { _tag: "Directory", name: "dir", meta: { ...meta, mode: 0o1777 } },
        { _tag: "File", name: long, size: 5, data: Stream.make(new TextEncoder().encode("hello")), meta },
        { _tag: "Symlink", name: "dir/link", target: "/etc/passwd" },
        { _tag: "Hardlink", name: "dir/hard", target: long }
      ]
      const chunks = yield* Stream.runCollect(tarStream(Stream.fromIterable(members)))
      const archive = Buffer.concat(chunks)
      const listing = execFileSync("tar", ["-tv", "--numeric-owner", "--full-time", "--utc"], { input: archive }).toString()
      const lines = listing.trim().split("\n")
      assert.match(lines[0]!, /^drwxrwxrwt 1234\/567 .* 2023-11-14 22:13:20 dir\/$/)
      assert.match(lines[1]!, new RegExp(`^-rwsr-x--- 1234/567 +5 2023-11-14 22:13:20 ${long}$`))
      assert.match(lines[2]!, /^lrw-r--r-- 0\/0 .* dir\/link -> \/etc\/passwd$/)
      assert.match(lines[3]!, new RegExp(`^hrw-r--r-- 0/0 .* dir/hard link to ${long}$`))
      const content = execFileSync("tar", ["-xO", long], { input: archive }).toString()
      assert.strictEqual(content, "hello")
    }))
})
