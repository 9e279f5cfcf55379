/**
 * `Images.save` and the import of Docker archives, against the real
 * containerd: a saved archive is read by independent tools (GNU tar, skopeo)
 * as both a Docker archive and an OCI layout, imports back to the same
 * digests, and a broken archive leaves no image behind. Also the layer sizes
 * Docker's history shows.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Result, Stream } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { ContainerdError } from "../../../src/domain/ContainerdError.ts"
import { parseReferenceResult, type Reference } from "../../../src/domain/Reference.ts"
import { buildLayeredImage, FIXTURE_IMAGE } from "../../support/FixtureImage.ts"
import { shared } from "../../support/SharedContainerd.ts"
import { emptyLibrary } from "../../support/RuntimeLayer.ts"

const setup = emptyLibrary("archive")

const reference = (name: string): Reference => Result.getOrThrow(parseReferenceResult(name))

/** Writes a stream to a file. */
const writeTo = (file: string, stream: Stream.Stream<Uint8Array, ContainerdError>) =>
  Effect.gen(function*() {
    const fd = fs.openSync(file, "w")
    yield* Stream.runForEach(stream, (chunk) => Effect.sync(() => fs.writeSync(fd, chunk)))
    fs.closeSync(fd)
  })

/** A member of a tar, read by GNU tar. */
const member = (archive: string, name: string): string => execFileSync("tar", ["-xOf", archive, name], { encoding: "utf8" })
const members = (archive: string): ReadonlyArray<string> =>
  execFileSync("tar", ["-tf", archive], { encoding: "utf8" }).split("\n").filter((line) => line !== "")

const reasonOf = (exit: Exit.Exit<unknown, unknown>) => {
  if (Exit.isSuccess(exit)) return "success"
  const error = exit.cause.reasons.find((r) => r._tag === "Fail")?.error
  return error instanceof ContainerdError ? `${error.reason._tag}: ${error.message}` : String(error)
}

describe("Images.save and importArchive of Docker archives", () => {
  it.live("saves two images as one Docker archive and OCI layout that import back to the same digests", () =>
    Effect.gen(function*() {
      const { client, dir, images } = yield* setup
      const layered = yield* buildLayeredImage(dir, { name: "example.test/layered:v1", layers: 2, layerSize: 64 * 1024 })
      const [fixture] = yield* images.importArchive(shared().fixtureArchive)
      const [second] = yield* images.importArchive(layered.archive)
      const archive = path.join(dir, "saved.tar")
      yield* writeTo(archive, yield* images.save([
        { image: fixture!, names: [reference(FIXTURE_IMAGE)] },
        { image: second!, names: [reference("example.test/layered:v1"), reference("example.test/layered:other")] }
      ]))

      // The Docker half, as dockerd 25 writes it: manifest.json's paths point into blobs/.
      const dockerManifest = JSON.parse(member(archive, "manifest.json")) as Array<{ Config: string; RepoTags: Array<string>; Layers: Array<string> }>
      assert.deepStrictEqual(dockerManifest.map((entry) => entry.RepoTags), [
        ["effect-containerd.test/busybox:latest"],
        ["example.test/layered:v1", "example.test/layered:other"]
      ])
      assert.strictEqual(dockerManifest[1]!.Config, `blobs/sha256/${second!.configDigest.slice(7)}`)
      assert.deepStrictEqual(dockerManifest[1]!.Layers, layered.layerDigests.map((d) => `blobs/sha256/${d.slice(7)}`))
      const repositories = JSON.parse(member(archive, "repositories")) as Record<string, Record<string, string>>
      assert.deepStrictEqual(Object.keys(repositories["example.test/layered"]!).sort(), ["other", "v1"])
      // The OCI half: every blob once, named by its digest.
      const names = members(archive)
      for (const digest of [fixture!.configDigest, fixture!.manifestDigest, ...layered.layerDigests, second!.manifestDigest]) {
        assert.strictEqual(names.filter((n) => n === `blobs/sha256/${digest.slice(7)}`).length, 1, digest)
      }
      const index = JSON.parse(member(archive, "index.json")) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> }
      assert.deepStrictEqual(index.manifests.map((m) => [m.digest, m.annotations["io.containerd.image.name"]]), [
        [fixture!.manifestDigest, FIXTURE_IMAGE],
        [second!.manifestDigest, "example.test/layered:v1"],
        [second!.manifestDigest, "example.test/layered:other"]
      ])
      // skopeo reads both halves.
      const viaOci = JSON.parse(execFileSync("skopeo", ["inspect", "--raw", `oci-archive:${archive}:v1`], { encoding: "utf8" })) as { config: { digest: string } }
      assert.strictEqual(viaOci.config.digest, second!.configDigest)
      const viaDocker = JSON.parse(execFileSync("skopeo", ["inspect", "--config", `docker-archive:${archive}:example.test/layered:other`], { encoding: "utf8" })) as { rootfs: { diff_ids: Array<string> } }
      assert.deepStrictEqual(viaDocker.rootfs.diff_ids, [...layered.diffIds])

      // Gone, then back from the archive: same manifests, same configs, unpacked.
      for (const name of [FIXTURE_IMAGE, "example.test/layered:v1"]) yield* images.remove(name)
      const loaded = yield* images.importArchive(archive)
      assert.deepStrictEqual(loaded.map((image) => [image.name, image.manifestDigest, image.configDigest]), [
        [fixture!.name, fixture!.manifestDigest, fixture!.configDigest],
        ["example.test/layered:v1", second!.manifestDigest, second!.configDigest],
        ["example.test/layered:other", second!.manifestDigest, second!.configDigest]
      ])
      yield* client.snapshots.stat({ snapshotter: "overlayfs", key: second!.chainId })
    }).pipe(Effect.scoped), 60_000)

  it.live("imports a Docker archive written by skopeo: the image ID is the archive's, the layers unpacked", () =>
    Effect.gen(function*() {
      const { client, dir, images } = yield* setup
      const layered = yield* buildLayeredImage(dir, { name: "example.test/skopeo:v1", layers: 1, layerSize: 64 * 1024 })
      const archive = path.join(dir, "skopeo.docker.tar")
      execFileSync("skopeo", ["copy", "-q", `oci-archive:${layered.archive}`, `docker-archive:${archive}:example.test/skopeo:v1`])
      assert.notInclude(members(archive), "index.json", "a Docker archive only")
      const [image] = yield* images.importArchive(archive)
      assert.strictEqual(image!.name, "example.test/skopeo:v1")
      assert.strictEqual(image!.configDigest, layered.configDigest)
      assert.deepStrictEqual(image!.config.rootfs.diff_ids, layered.diffIds)
      yield* client.snapshots.stat({ snapshotter: "overlayfs", key: image!.chainId })
      assert.strictEqual((yield* images.get("example.test/skopeo:v1")).target.digest, image!.manifestDigest)
    }).pipe(Effect.scoped), 60_000)

  it.live("a truncated archive, or one whose second image is broken, stores no image", () =>
    Effect.gen(function*() {
      const { client, dir, images } = yield* setup
      const docker = path.join(dir, "fixture.docker.tar")
      execFileSync("skopeo", ["copy", "-q", `oci-archive:${shared().fixtureArchive}`, `docker-archive:${docker}:${FIXTURE_IMAGE}`])
      const truncated = path.join(dir, "truncated.tar")
      fs.writeFileSync(truncated, fs.readFileSync(docker).subarray(0, 1_000_000))
      assert.match(reasonOf(yield* Effect.exit(images.importArchive(truncated))), /^InvalidArgument: .*is truncated/)

      // Two images; the second's config names a diff ID its layer does not have: found only as it unpacks.
      const tree = path.join(dir, "tree")
      fs.mkdirSync(tree)
      execFileSync("tar", ["-xf", docker, "-C", tree])
      const [entry] = JSON.parse(fs.readFileSync(path.join(tree, "manifest.json"), "utf8")) as Array<{ Config: string; Layers: Array<string> }>
      const config = JSON.parse(fs.readFileSync(path.join(tree, entry!.Config), "utf8")) as { rootfs: { diff_ids: Array<string> } }
      config.rootfs.diff_ids = [`sha256:${"0".repeat(64)}`]
      fs.writeFileSync(path.join(tree, "bad.json"), JSON.stringify(config))
      fs.writeFileSync(path.join(tree, "manifest.json"), JSON.stringify([
        { ...entry, RepoTags: ["example.test/good:v1"] },
        { Config: "bad.json", RepoTags: ["example.test/bad:v1"], Layers: entry!.Layers }
      ]))
      const broken = path.join(dir, "broken.tar")
      execFileSync("tar", ["-cf", broken, "-C", tree, "."])
      assert.match(reasonOf(yield* Effect.exit(images.importArchive(broken))), /unpacks to .* but the config says sha256:0{64}/)
      assert.deepStrictEqual((yield* images.list()).map((image) => image.name), [], "no name left, the good one's neither")
      assert.deepStrictEqual((yield* client.leases.list({})).leases, [], "no lease keeps what was written")
    }).pipe(Effect.scoped), 60_000)

  it.live("layer sizes are the layer's file bytes and link targets, as dockerd's DiffSize", () =>
    Effect.gen(function*() {
      const { dir, images } = yield* setup
      const layered = yield* buildLayeredImage(dir, { name: "example.test/sizes:v1", layers: 1, layerSize: 100_000 })
      const [image] = yield* images.importArchive(layered.archive)
      // What GNU tar lists: regular files' sizes, and each symlink's target.
      const expected = (blob: string, gzip: boolean) => {
        const listing = execFileSync("tar", [gzip ? "-tvzf" : "-tvf", blob], { encoding: "utf8" })
        return listing.split("\n").reduce((sum, line) => {
          const fields = line.split(/\s+/)
          if (line.startsWith("-")) return sum + Number(fields[2])
          if (line.startsWith("l")) return sum + Buffer.byteLength(line.slice(line.indexOf(" -> ") + 4))
          return sum
        }, 0)
      }
      const blobs = path.join(dir, "blobs")
      fs.mkdirSync(blobs)
      execFileSync("tar", ["-xf", layered.archive, "-C", blobs])
      const want = layered.layerDigests.map((digest) => expected(path.join(blobs, "blobs", "sha256", digest.slice(7)), true))
      assert.deepStrictEqual(yield* images.layerSizes(image!), want)
      assert.strictEqual(want[1], 100_000, "the data layer: one file of 100000 bytes")
      assert.isAbove(want[0]!, 1_000_000, "the busybox layer")
    }).pipe(Effect.scoped), 60_000)
})
