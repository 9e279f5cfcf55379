import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

const root = path.join(import.meta.dirname, "..")

describe("README", () => {
  it("every TypeScript sample is a whole module that type-checks against the library", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
    const samples = [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!)
    assert.isAtLeast(samples.length, 4)
    // Inside the repository, so that the dependencies resolve; `effect-containerd` is mapped to the sources.
    const dir = fs.mkdtempSync(path.join(root, "test", ".readme-"))
    try {
      samples.forEach((sample, i) => fs.writeFileSync(path.join(dir, `sample${i}.ts`), sample))
      fs.writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify({
        extends: "../../tsconfig.json",
        compilerOptions: { noEmit: true, rootDir: "../..", paths: { "effect-containerd": ["../../src/index.ts"] } },
        include: ["*.ts"]
      }))
      const tsc = spawnSync(path.join(root, "node_modules", ".bin", "tsc"), ["-p", dir], { encoding: "utf8" })
      assert.strictEqual(tsc.stdout + tsc.stderr, "", "the samples type-check")
      assert.strictEqual(tsc.status, 0)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
