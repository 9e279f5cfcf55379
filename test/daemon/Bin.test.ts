import { assert, describe, it } from "@effect/vitest"
import { execFileSync, spawnSync } from "node:child_process"
import * as path from "node:path"

const bin = path.join(import.meta.dirname, "..", "..", "bin", "effect-containerd.js")
/** Debian's Node.js (18 on bookworm, 20 on trixie): older than the 22.19 the package needs. */
const debianNode = "/usr/bin/node"

describe("the effect-containerd command", () => {
  it("on a Node.js older than the package needs, says so in one line and exits 1", () => {
    const version = execFileSync(debianNode, ["--version"], { encoding: "utf8" }).trim()
    const [major = 0, minor = 0] = version.slice(1).split(".").map(Number)
    assert.isTrue(major < 22 || (major === 22 && minor < 19), `this test needs Debian's older Node at ${debianNode}; it has ${version}`)
    const run = spawnSync(debianNode, [bin, "daemon"], { encoding: "utf8" })
    assert.strictEqual(run.status, 1)
    assert.strictEqual(run.stdout, "")
    assert.strictEqual(run.stderr, `effect-containerd needs Node.js >=22.19; this is Node.js ${version} (${debianNode})\n`)
  })
})
