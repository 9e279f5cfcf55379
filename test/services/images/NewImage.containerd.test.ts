import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Stream } from "effect"
import * as crypto from "node:crypto"
import * as zlib from "node:zlib"
import { ContainerdError } from "../../../src/domain/ContainerdError.ts"
import { untaggedName } from "../../../src/services/Images.ts"
import type { Container } from "../../../src/services/Runtime.ts"
import { busyboxLayer, FIXTURE_IMAGE } from "../../support/FixtureImage.ts"
import { importFixture } from "../../support/SharedContainerd.ts"
import { emptyLibrary, holdings, output, tempDir } from "../../support/RuntimeLayer.ts"

const setup = emptyLibrary("newimg")

/** Bytes as a stream of small chunks, as a request body arrives. */
const chunked = (bytes: Buffer, size = 64 * 1024) =>
  Stream.fromIterable(Array.from({ length: Math.ceil(bytes.length / size) }, (_, i) => bytes.subarray(i * size, (i + 1) * size)))

const failureOf = (exit: Exit.Exit<unknown, unknown>) => {
  assert.isTrue(Exit.isFailure(exit), "it failed")
  const error = Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail")?.error : undefined
  assert.instanceOf(error, ContainerdError)
  return error as ContainerdError
}

describe("new images (import, commit) against containerd", () => {
  it.live("imports a gzip root filesystem tar as a one-layer image that runs", () =>
    Effect.gen(function*() {
      const { client, dir, images, runtime } = yield* setup
      const tar = busyboxLayer(dir)
      const imported = yield* images.importRootfs(chunked(zlib.gzipSync(tar)), {
        name: "imported:v1",
        config: { Cmd: ["/bin/busybox", "echo", "hi"], Env: ["X=1"] },
        comment: "from a tar"
      })
      assert.strictEqual(imported.name, "docker.io/library/imported:v1")
      assert.deepStrictEqual(imported.config.rootfs.diff_ids, [`sha256:${crypto.createHash("sha256").update(tar).digest("hex")}`])
      assert.strictEqual(imported.layers.length, 1)
      assert.strictEqual(imported.layers[0]!.mediaType, "application/vnd.oci.image.layer.v1.tar+gzip")
      assert.strictEqual(imported.config.history?.[0]?.comment, "from a tar")
      const labels = (yield* client.content.info({ digest: imported.layers[0]!.digest })).info!.labels
      assert.strictEqual(labels["containerd.io/uncompressed"], imported.config.rootfs.diff_ids[0])
      yield* client.snapshots.stat({ snapshotter: "overlayfs", key: imported.chainId })
      assert.strictEqual(yield* output(runtime, "imported:v1"), "hi\n")
      assert.include(yield* output(runtime, "imported:v1", ["/bin/busybox", "env"]), "X=1\n")
      assert.deepStrictEqual((yield* holdings(client)).leases, [], "the lease is gone")

      // Without a name: an untagged record, named so that no reference parses as it.
      const untagged = yield* images.importRootfs(Stream.make(tar))
      assert.strictEqual(untagged.name, untaggedName(untagged.configDigest))
      assert.strictEqual(untagged.layers[0]!.mediaType, "application/vnd.oci.image.layer.v1.tar")
    }))

  it.live("refuses a broken tar, a broken gzip stream and another compression, leaving nothing behind", () =>
    Effect.gen(function*() {
      const { client, dir, images } = yield* setup
      const tar = busyboxLayer(dir)
      const cases: ReadonlyArray<readonly [string, Buffer, string]> = [
        ["truncated", tar.subarray(0, 3000), "unexpected EOF"],
        ["junk", crypto.randomBytes(4096), "invalid tar header"],
        ["truncated gzip", zlib.gzipSync(tar).subarray(0, 2000), "gzip"],
        ["bzip2", Buffer.concat([Buffer.from("BZh91AY&SY"), crypto.randomBytes(100)]), "bzip2 compression is not supported"]
      ]
      for (const [what, bytes, message] of cases) {
        const error = failureOf(yield* Effect.exit(images.importRootfs(chunked(bytes, 1000), { name: `broken:${what.replace(" ", "-")}` })))
        assert.strictEqual(error.reason._tag, "InvalidArgument", what)
        assert.include(error.reason.message, message, what)
      }
      assert.deepStrictEqual(yield* holdings(client), { images: [], leases: [], ingests: [], blobs: [] })
    }))

  it.live("commits a container's changes over its image as a new image that runs", () =>
    Effect.gen(function*() {
      const { client, images, namespace, runtime } = yield* setup
      yield* importFixture(namespace)
      const base = yield* images.resolve(FIXTURE_IMAGE)
      const container: Container = yield* runtime.containers.create({
        id: "to-commit",
        image: FIXTURE_IMAGE,
        command: ["sh", "-c", "echo data > /file"]
      })
      const task = yield* container.newTask()
      yield* task.start
      yield* task.wait
      yield* task.delete

      const committed = yield* images.commit(container.info, {
        name: "committed:v1",
        config: { ...base.config.config, Cmd: ["cat", "/file"] },
        comment: "a file",
        author: "tester",
        createdBy: "sh -c echo data > /file"
      })
      assert.strictEqual(committed.layers.length, 2)
      assert.deepStrictEqual(committed.layers[0], base.layers[0])
      assert.strictEqual(committed.config.rootfs.diff_ids[0], base.config.rootfs.diff_ids[0])
      assert.deepStrictEqual(committed.config.history?.at(-1), {
        created: committed.config.created,
        created_by: "sh -c echo data > /file",
        author: "tester",
        comment: "a file"
      })
      assert.strictEqual(committed.config.author, "tester")
      assert.strictEqual(yield* output(runtime, "committed:v1"), "data\n")
      assert.deepStrictEqual((yield* holdings(client)).leases, [], "the lease is gone")
      yield* container.delete()

      // A container whose snapshot is not over the image it names is refused, and nothing is stored.
      const other = yield* images.importRootfs(Stream.make(busyboxLayer(yield* tempDir, true)), { name: "other:v1" })
      const stranger = yield* runtime.containers.create({ id: "stranger", image: FIXTURE_IMAGE, command: ["true"] })
      const before = (yield* holdings(client)).images
      const error = failureOf(yield* Effect.exit(images.commit({ ...stranger.info, image: other.name }, { name: "never:v1" })))
      assert.strictEqual(error.reason._tag, "FailedPrecondition")
      assert.deepStrictEqual((yield* holdings(client)).images, before)
      yield* stranger.delete()
    }))
})
