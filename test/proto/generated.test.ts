import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

const filesUnder = (dir: string): ReadonlyArray<string> =>
  fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)))
    .sort()

describe("src/gen", () => {
  it("is what `npm run proto` generates from proto/", () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-gen-"))
    try {
      execFileSync("npx", ["buf", "generate", "--output", out], { stdio: "pipe" })
      const fresh = path.join(out, "src", "gen")
      const committed = "src/gen"
      assert.deepStrictEqual(filesUnder(committed), filesUnder(fresh), "run `npm run proto`: the file set differs")
      const stale = filesUnder(fresh).filter((file) =>
        !fs.readFileSync(path.join(fresh, file)).equals(fs.readFileSync(path.join(committed, file)))
      )
      assert.deepStrictEqual(stale, [], "run `npm run proto`: these generated files are stale")
    } finally {
      fs.rmSync(out, { recursive: true, force: true })
    }
  })
})
