/**
 * proto/ is ours, but its names and numbers are containerd's wire protocol. This
 * compares them with containerd 1.6's own API definitions (unpacked into .cache/
 * by scripts/ensure-system-deps) using buf's PACKAGE breaking-change rules.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

const upstream = ".cache/containerd-api/api"

/** Where containerd's file lands in our layout (import paths are not part of the wire). */
const ourPath = (file: string): string =>
  file === "events/image.proto" ? "containerd/services/images/v1/events.proto" : `containerd/${file}`

/** containerd's files without the gogoproto options, which change no wire name or number. */
const stripGogo = (source: string): string =>
  source
    .replace(/\s*\[\(gogoproto[^\]]*\]/g, "")
    .split("\n")
    .filter((line) => !/gogoproto|fieldpath|go_package/.test(line))
    .join("\n")
    .replaceAll("github.com/containerd/containerd/api/types/", "containerd/types/")

/** What proto/ deliberately leaves out of containerd's API. */
const omitted = [`Previously present message "TaskCheckpointed" was deleted from package "containerd.events".`]

describe("proto/", () => {
  it("is wire-identical to containerd's API for everything it defines", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-wire-"))
    try {
      const files = fs.readdirSync(upstream, { recursive: true, encoding: "utf8" })
        .filter((file) => file.endsWith(".proto") && !file.includes("ttrpc"))
        .filter((file) => fs.existsSync(path.join("proto", ourPath(file))))
      assert.isAbove(files.length, 20)
      for (const file of files) {
        const target = path.join(dir, "against", ourPath(file))
        fs.mkdirSync(path.dirname(target), { recursive: true })
        fs.writeFileSync(target, stripGogo(fs.readFileSync(path.join(upstream, file), "utf8")))
      }
      fs.mkdirSync(path.join(dir, "against", "google", "rpc"), { recursive: true })
      fs.copyFileSync("proto/google/rpc/status.proto", path.join(dir, "against", "google", "rpc", "status.proto"))
      fs.writeFileSync(path.join(dir, "against", "buf.yaml"), "version: v2\n")

      const result = spawnSync("npx", ["buf", "breaking", "--against", path.join(dir, "against"), "--error-format", "json"], {
        encoding: "utf8"
      })
      const findings = result.stdout.split("\n").filter((line) => line.trim() !== "")
        .map((line) => (JSON.parse(line) as { message: string }).message)
      assert.deepStrictEqual(findings, omitted, result.stderr)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
