import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Result } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { resolveInScope, type ScopedRoot } from "../../src/internal/ScopedPath.ts"

// A container root with links of every kind, and a bind mount whose source lies outside it.
let dir: string
let scope: ScopedRoot

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-scoped-"))
  const root = path.join(dir, "root")
  const volume = path.join(dir, "volume")
  fs.mkdirSync(path.join(root, "etc"), { recursive: true })
  fs.mkdirSync(path.join(root, "data"), { recursive: true })
  fs.mkdirSync(path.join(root, "a", "b"), { recursive: true })
  fs.mkdirSync(volume)
  fs.writeFileSync(path.join(root, "etc", "passwd"), "container\n")
  fs.symlinkSync("/etc", path.join(root, "escape"))
  fs.symlinkSync("../../../../../../etc", path.join(root, "a", "up"))
  fs.symlinkSync("b", path.join(root, "a", "rel"))
  fs.symlinkSync("/loop2", path.join(root, "loop1"))
  fs.symlinkSync("/loop1", path.join(root, "loop2"))
  fs.symlinkSync("/etc/passwd", path.join(root, "last"))
  fs.symlinkSync("/etc", path.join(volume, "inside"))
  scope = { root, binds: [{ destination: "/data", source: volume, readOnly: false }] }
})

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

const resolve = (p: string, followLast = true) => Result.getOrThrow(resolveInScope(scope, p, followLast))

describe("resolveInScope", () => {
  it("clamps .. at the container's root", () => {
    assert.strictEqual(resolve("../../../etc/passwd").path, "/etc/passwd")
    assert.strictEqual(resolve("../../../etc/passwd").hostPath, path.join(scope.root, "etc", "passwd"))
    assert.strictEqual(resolve("/a/b/../../..").path, "/")
  })

  it("evaluates an absolute link as if the root were /", () => {
    const resolved = resolve("/escape/passwd")
    assert.strictEqual(resolved.path, "/etc/passwd")
    assert.strictEqual(resolved.hostPath, path.join(scope.root, "etc", "passwd"))
  })

  it("clamps a relative link climbing out at the root", () => {
    assert.strictEqual(resolve("/a/up/passwd").path, "/etc/passwd")
    assert.strictEqual(resolve("a/rel").path, "/a/b")
  })

  it("keeps the last link unless asked to follow it", () => {
    assert.strictEqual(resolve("/last", false).path, "/last")
    assert.strictEqual(resolve("/last", true).path, "/etc/passwd")
    // A link before the last component is followed either way.
    assert.strictEqual(resolve("/escape/passwd", false).path, "/etc/passwd")
  })

  it("maps a path under a bind mount to its source, and a link in it back into the container", () => {
    const file = resolve("/data/file")
    assert.strictEqual(file.hostPath, path.join(dir, "volume", "file"))
    assert.strictEqual(file.bind?.destination, "/data")
    const through = resolve("/data/inside/passwd")
    assert.strictEqual(through.path, "/etc/passwd")
    assert.strictEqual(through.hostPath, path.join(scope.root, "etc", "passwd"))
    assert.strictEqual(through.bind, undefined)
  })

  it("takes a missing path as written", () => {
    assert.strictEqual(resolve("/nothing/here/../there").path, "/nothing/there")
  })

  it("refuses a loop of links", () => {
    const result = resolveInScope(scope, "/loop1/x", true)
    assert.isTrue(Result.isFailure(result))
  })
})
