/**
 * The pure parts of the daemon's images: names as `POST /images/create` and
 * `POST /images/{name}/tag` compose them, and pull progress as dockerd writes
 * it (the docker CLI draws its bars from these lines). Pulls against a registry
 * and containerd are tested with the real daemon.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result, Stream } from "effect"
import {
  familiarName,
  humanSize,
  type JsonMessage,
  progressBar,
  pullFailure,
  pullReference,
  tagReference,
  toPullMessages
} from "../../src/daemon/Images.ts"
import { parseReference, type Reference } from "../../src/domain/Reference.ts"
import { NotFound, registryError, Unauthorized, Unavailable } from "../../src/domain/RegistryError.ts"
import type { PullProgress, ResolvedImage } from "../../src/services/Images.ts"

const MANIFEST = `sha256:${"a".repeat(64)}`
const OTHER = `sha256:${"b".repeat(64)}`

const pulled = (digest: string): PullProgress => ({
  _tag: "Pulled",
  image: {
    name: "docker.io/library/busybox:latest",
    target: { mediaType: "application/vnd.oci.image.manifest.v1+json", digest, size: 100 },
    manifestDigest: digest,
    configDigest: OTHER,
    configSize: 0,
    config: { architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } },
    layers: [],
    chainId: ""
  } satisfies ResolvedImage
})

const messages = (reference: Reference, previous: string | undefined, events: ReadonlyArray<PullProgress>) =>
  Stream.fromIterable(events).pipe(toPullMessages(reference, previous), Stream.runCollect)

const statuses = (lines: ReadonlyArray<JsonMessage>) => lines.map((line) => line.id === undefined ? line.status : `${line.id}: ${line.status}`)

describe("Images names", () => {
  it("pullReference: fromImage with tag, a digest as tag, or its own tag", () => {
    const familiar = (result: Result.Result<Reference, string>) => Result.map(result, (r) => r.familiar)
    assert.deepStrictEqual(familiar(pullReference("docker.io/library/busybox", "latest")), Result.succeed("busybox:latest"))
    assert.deepStrictEqual(familiar(pullReference("busybox:1.36", undefined)), Result.succeed("busybox:1.36"))
    assert.deepStrictEqual(familiar(pullReference("busybox", "")), Result.succeed("busybox:latest"))
    assert.deepStrictEqual(familiar(pullReference("localhost:5000/a/b", MANIFEST)), Result.succeed(`localhost:5000/a/b@${MANIFEST}`))
    assert.isTrue(Result.isFailure(pullReference("Busybox", undefined)))
    assert.isTrue(Result.isFailure(pullReference("busybox", "-bad")))
  })

  it("tagReference: repo and tag; a digest cannot be a tag", () => {
    assert.deepStrictEqual(Result.map(tagReference("mine", "v2"), (r) => r.toString()), Result.succeed("docker.io/library/mine:v2"))
    assert.deepStrictEqual(Result.map(tagReference("reg:5000/x", undefined), (r) => r.familiar), Result.succeed("reg:5000/x:latest"))
    assert.deepStrictEqual(tagReference(`x@${MANIFEST}`, undefined), Result.fail("refusing to create a tag with a digest reference"))
  })

  it.effect("familiarName drops the tag and docker.io/library", () =>
    Effect.gen(function*() {
      assert.strictEqual(familiarName(yield* parseReference("busybox:1")), "busybox")
      assert.strictEqual(familiarName(yield* parseReference("127.0.0.1:5000/x/y:v1")), "127.0.0.1:5000/x/y")
    }))
})

describe("Images pull progress", () => {
  it("humanSize and progressBar are go-units' and JSONProgress's", () => {
    assert.strictEqual(humanSize(0), "0B")
    assert.strictEqual(humanSize(999), "999B")
    assert.strictEqual(humanSize(1000), "1kB")
    assert.strictEqual(humanSize(759_900), "759.9kB")
    assert.strictEqual(humanSize(1_108_710), "1.109MB")
    assert.strictEqual(humanSize(2_150_000), "2.15MB")
    assert.strictEqual(progressBar(0, 1_108_710), `[>${" ".repeat(50)}]       0B/1.109MB`)
    assert.strictEqual(progressBar(596_992, 1_108_710), `[${"=".repeat(26)}>${" ".repeat(24)}]    597kB/1.109MB`)
    assert.strictEqual(progressBar(1_108_710, 1_108_710), `[${"=".repeat(50)}>]  1.109MB/1.109MB`)
  })

  it.effect("a fresh pull: every layer's lines, then the digest and 'Downloaded newer image'", () =>
    Effect.gen(function*() {
      const reference = yield* parseReference("busybox")
      const lines = yield* messages(reference, undefined, [
        { _tag: "Resolving", reference: reference.toString() },
        { _tag: "Resolved", reference: reference.toString(), digest: MANIFEST },
        { _tag: "Waiting", id: "1cc92b13c923", size: 1000 },
        { _tag: "Downloading", id: "1cc92b13c923", current: 500, total: 1000 },
        { _tag: "Verifying", id: "1cc92b13c923" },
        { _tag: "DownloadComplete", id: "1cc92b13c923" },
        { _tag: "Extracting", id: "1cc92b13c923" },
        { _tag: "PullComplete", id: "1cc92b13c923" },
        pulled(MANIFEST)
      ])
      assert.deepStrictEqual(statuses(lines), [
        "latest: Pulling from library/busybox",
        "1cc92b13c923: Pulling fs layer",
        "1cc92b13c923: Downloading",
        "1cc92b13c923: Verifying Checksum",
        "1cc92b13c923: Download complete",
        "1cc92b13c923: Extracting",
        "1cc92b13c923: Pull complete",
        `Digest: ${MANIFEST}`,
        "Status: Downloaded newer image for busybox:latest"
      ])
      assert.deepStrictEqual(lines[2], {
        status: "Downloading",
        progressDetail: { current: 500, total: 1000 },
        id: "1cc92b13c923",
        progress: `[${"=".repeat(25)}>${" ".repeat(25)}]     500B/1kB`
      })
    }))

  it.effect("a name already at the resolved digest: no layer lines, 'Image is up to date'", () =>
    Effect.gen(function*() {
      const reference = yield* parseReference("localhost:5000/team/app:v1")
      const lines = yield* messages(reference, MANIFEST, [
        { _tag: "Resolved", reference: reference.toString(), digest: MANIFEST },
        { _tag: "Waiting", id: "1cc92b13c923", size: 1000 },
        { _tag: "AlreadyExists", id: "1cc92b13c923" },
        pulled(MANIFEST)
      ])
      assert.deepStrictEqual(statuses(lines), [
        "v1: Pulling from team/app",
        `Digest: ${MANIFEST}`,
        "Status: Image is up to date for localhost:5000/team/app:v1"
      ])
    }))

  it.effect("a name moved to content already here: 'Already exists' per layer, and the name is newer", () =>
    Effect.gen(function*() {
      const reference = yield* parseReference("busybox:1.36")
      const lines = yield* messages(reference, OTHER, [
        { _tag: "Resolved", reference: reference.toString(), digest: MANIFEST },
        { _tag: "Waiting", id: "1cc92b13c923", size: 1000 },
        { _tag: "AlreadyExists", id: "1cc92b13c923" },
        pulled(MANIFEST)
      ])
      assert.deepStrictEqual(statuses(lines), [
        "1.36: Pulling from library/busybox",
        "1cc92b13c923: Pulling fs layer",
        "1cc92b13c923: Already exists",
        `Digest: ${MANIFEST}`,
        "Status: Downloaded newer image for busybox:1.36"
      ])
    }))

  it.effect("failures: a repository nobody may pull is dockerd's 'pull access denied'; others keep their class", () =>
    Effect.gen(function*() {
      const reference = yield* parseReference("nosuch/repo:1")
      const fail = pullFailure(reference)
      const denied = fail(registryError(Unauthorized, reference.toString(), "resolving 1: docker.io answered 401"))
      assert.strictEqual(denied.status, 404)
      assert.match(denied.message, /^pull access denied for nosuch\/repo, repository does not exist or may require 'docker login'/)
      const missingTag = fail(registryError(NotFound, reference.toString(), "resolving 1: answered 404 (MANIFEST_UNKNOWN)"))
      assert.strictEqual(missingTag.status, 404)
      assert.match(missingTag.message, /^manifest for nosuch\/repo:1 not found/)
      assert.strictEqual(fail(registryError(Unavailable, reference.toString(), "down")).status, 503)
    }))
})
