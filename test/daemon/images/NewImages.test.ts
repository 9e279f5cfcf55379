import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import { importPlatform, importReference, importUrl, mergeCommitConfig } from "../../../src/daemon/images/NewImages.ts"

describe("docker import and commit: names, URLs and the commit's config", () => {
  it("merges a commit's config over the container's as moby's daemon/commit.go merge", () => {
    const container = {
      User: "app",
      Env: ["PATH=/bin", "A=container"],
      Cmd: ["sh"],
      Entrypoint: ["/init"],
      Labels: { from: "container", both: "container" },
      WorkingDir: "/c",
      ExposedPorts: { "80/tcp": {} },
      Volumes: { "/data": {} },
      StopSignal: "SIGINT",
      Healthcheck: { Test: ["CMD", "true"], Interval: 5e9, Retries: 3 }
    }
    // An empty config takes everything from the container's.
    assert.deepStrictEqual(mergeCommitConfig({}, container), {
      User: "app",
      ExposedPorts: { "80/tcp": {} },
      Env: ["PATH=/bin", "A=container"],
      Labels: { from: "container", both: "container" },
      Cmd: ["sh"],
      Entrypoint: ["/init"],
      Healthcheck: { Test: ["CMD", "true"], Interval: 5e9, Retries: 3 },
      WorkingDir: "/c",
      Volumes: { "/data": {} },
      StopSignal: "SIGINT"
    })
    const merged = mergeCommitConfig({
      Env: ["A=mine", "B=mine"],
      Cmd: ["echo"],
      Labels: { both: "mine" },
      ExposedPorts: { "90/udp": {} },
      Healthcheck: { Test: ["CMD", "false"] }
    }, container)
    // Own Env first, the container's other names after; own Cmd kept, the container's Entrypoint taken (none of its own).
    assert.deepStrictEqual(merged.Env, ["A=mine", "B=mine", "PATH=/bin"])
    assert.deepStrictEqual([merged.Cmd, merged.Entrypoint], [["echo"], ["/init"]])
    assert.deepStrictEqual(merged.Labels, { from: "container", both: "mine" })
    assert.deepStrictEqual(merged.ExposedPorts, { "80/tcp": {}, "90/udp": {} })
    // The healthcheck's unset fields come from the container's.
    assert.deepStrictEqual(merged.Healthcheck, { Test: ["CMD", "false"], Interval: 5e9, Retries: 3 })
    // An entrypoint of its own: the container's Cmd is not taken; an explicitly empty one stays empty.
    assert.deepStrictEqual(mergeCommitConfig({ Entrypoint: ["/own"] }, container).Cmd, null)
    assert.deepStrictEqual(mergeCommitConfig({ Entrypoint: [] }, container).Entrypoint, [])
  })

  it("names an import as dockerd: no repo is none; a digest is refused; a tag replaces the repo's", () => {
    assert.deepStrictEqual(importReference(undefined, "v1"), Result.succeed(undefined))
    assert.strictEqual(Result.getOrThrow(importReference("example.test/app", "v2"))!.toString(), "example.test/app:v2")
    assert.strictEqual(Result.getOrThrow(importReference("app", undefined))!.toString(), "docker.io/library/app:latest")
    assert.deepStrictEqual(importReference(`app@sha256:${"a".repeat(64)}`, undefined), Result.fail("cannot import digest reference"))
    assert.isTrue(Result.isFailure(importReference("app", "bad tag")))
    assert.deepStrictEqual(importPlatform({ os: "windows", architecture: "amd64" }), Result.fail("operating system is not supported"))
  })

  it("reads fromSrc as dockerd: http:// added without a scheme; any scheme but http(s) is Go's client error", () => {
    assert.strictEqual(Effect.runSync(importUrl("127.0.0.1:8080/a.tar")).toString(), "http://127.0.0.1:8080/a.tar")
    assert.strictEqual(Effect.runSync(importUrl("https://example.test/a.tar")).toString(), "https://example.test/a.tar")
    const ftp = Effect.runSync(Effect.flip(importUrl("ftp://example.test/a.tar")))
    assert.deepStrictEqual([ftp.status, ftp.message], [500, "Get \"ftp://example.test/a.tar\": unsupported protocol scheme \"ftp\""])
  })
})
