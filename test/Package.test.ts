import { assert, describe, it } from "@effect/vitest"
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

const root = path.join(import.meta.dirname, "..")
const bin = path.join(root, "bin", "effect-containerd.js")
/** Debian's Node.js (18 on bookworm, 20 on trixie): older than the 22.19 the package needs. */
const debianNode = "/usr/bin/node"

describe("the package", () => {
  it("on a Node.js older than the package needs, the command says so in one line and exits 1", () => {
    const version = execFileSync(debianNode, ["--version"], { encoding: "utf8" }).trim()
    const [major = 0, minor = 0] = version.slice(1).split(".").map(Number)
    assert.isTrue(major < 22 || (major === 22 && minor < 19), `this test needs Debian's older Node at ${debianNode}; it has ${version}`)
    const run = spawnSync(debianNode, [bin, "daemon"], { encoding: "utf8" })
    assert.strictEqual(run.status, 1)
    assert.strictEqual(run.stdout, "")
    assert.strictEqual(run.stderr, `effect-containerd needs Node.js >=22.19; this is Node.js ${version} (${debianNode})\n`)
  })

  it("npm pack builds a package whose bin and exports work, without scratchpad, bench or tests", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-pack-"))
    try {
      const packed = JSON.parse(execFileSync("npm", ["pack", "--json", "--pack-destination", dir], { cwd: root, encoding: "utf8" })) as
        ReadonlyArray<{ readonly filename: string; readonly files: ReadonlyArray<{ readonly path: string }> }>
      const files = packed[0]!.files.map((f) => f.path)
      assert.include(files, "bin/effect-containerd.js")
      assert.include(files, "dist/src/index.js")
      assert.include(files, "dist/src/index.d.ts")
      assert.include(files, "dist/src/daemon/main.js")
      assert.include(files, "src/daemon/logger.c")
      assert.deepStrictEqual(files.filter((f) => /^(dist\/)?(scratchpad|bench|test)\//.test(f)), [])

      // Installed as a dependency would be: the package, beside the dependencies it names.
      const modules = path.join(dir, "node_modules")
      fs.mkdirSync(modules)
      execFileSync("tar", ["-xzf", path.join(dir, packed[0]!.filename), "-C", dir])
      fs.renameSync(path.join(dir, "package"), path.join(modules, "effect-containerd"))
      const manifest = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { dependencies: Record<string, string> }
      for (const name of Object.keys(manifest.dependencies)) {
        fs.mkdirSync(path.dirname(path.join(modules, name)), { recursive: true })
        fs.symlinkSync(path.join(root, "node_modules", name), path.join(modules, name))
      }
      const version = execFileSync(process.execPath, [path.join(modules, "effect-containerd", "bin", "effect-containerd.js"), "--version"], {
        encoding: "utf8"
      })
      assert.strictEqual(version.trim(), `effect-containerd v${JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).version}`)
      fs.writeFileSync(path.join(dir, "use.mjs"), `import { Live, Runtime } from "effect-containerd"\nconsole.log(typeof Live.services, typeof Runtime.Runtime)\n`)
      assert.strictEqual(execFileSync(process.execPath, [path.join(dir, "use.mjs")], { cwd: dir, encoding: "utf8" }).trim(), "function function")
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
