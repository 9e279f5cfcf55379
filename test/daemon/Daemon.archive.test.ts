/**
 * `docker save`, `docker load` and `docker history` through the docker CLI and
 * raw HTTP against the daemon as a real process on the real containerd, and
 * side by side with dockerd 20.10 where it is installed: archives go both
 * ways between the two engines, and history answers the same bytes.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { dockerCli, requestOver, startDaemon } from "../support/DaemonHarness.ts"
import { startDockerd } from "../support/Dockerd.ts"
import { buildLayeredImage, FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { importFixture, shared, uniqueNamespace } from "../support/SharedContainerd.ts"

/** The daemon over the shared containerd with the fixture image. */
const setup = Effect.gen(function*() {
  const namespace = uniqueNamespace("archive")
  yield* importFixture(namespace)
  const daemon = yield* startDaemon({ containerd: shared().address, namespace })
  const docker = (...args: ReadonlyArray<string>) =>
    Effect.flatMap(daemon.docker(args), (r) =>
      r.code === 0
        ? Effect.succeed(r.stdout.trim())
        : Effect.die(new Error(`docker ${args.join(" ")} exited with ${r.code}: ${r.stderr}\n${daemon.output()}`)))
  const imageFacts = (name: string) =>
    Effect.map(docker("image", "inspect", "--format", "{{.Id}} {{json .RepoDigests}}", name), (out) => out)
  return { daemon, docker, imageFacts }
})

/** A POST of a tar over a unix socket: its status and body. */
const post = (socket: string, urlPath: string, body: Uint8Array) =>
  Effect.orDie(requestOver(socket)("POST", urlPath, body, "application/x-tar"))

/** A GET's raw body over a unix socket. */
const get = (socket: string, urlPath: string) => Effect.orDie(requestOver(socket)("GET", urlPath))

describe("docker save, load and history", () => {
  it.live("save of two images, rmi, load: same IDs and digests, and they run; OCI and skopeo archives load", () =>
    Effect.gen(function*() {
      const { daemon, docker, imageFacts } = yield* setup
      const layered = yield* buildLayeredImage(daemon.dir, { name: "example.test/layered:v1", layers: 2, layerSize: 64 * 1024 })
      assert.strictEqual(yield* docker("load", "-i", layered.archive), "Loaded image: example.test/layered:v1")
      const before = [yield* imageFacts(FIXTURE_IMAGE), yield* imageFacts("example.test/layered:v1")]
      assert.include(before[1]!, layered.configDigest)

      const saved = path.join(daemon.dir, "saved.tar")
      yield* docker("save", "-o", saved, FIXTURE_IMAGE, "example.test/layered:v1")
      yield* docker("rmi", FIXTURE_IMAGE, "example.test/layered:v1")
      assert.strictEqual(yield* docker("images", "-q"), "")
      assert.strictEqual(
        yield* docker("load", "-i", saved),
        `Loaded image: ${FIXTURE_IMAGE}\nLoaded image: example.test/layered:v1`
      )
      assert.deepStrictEqual([yield* imageFacts(FIXTURE_IMAGE), yield* imageFacts("example.test/layered:v1")], before)
      assert.strictEqual(yield* docker("run", "--rm", "example.test/layered:v1", "ls", "/data"), "layer-0.bin\nlayer-1.bin")

      // By short ID: the image without a name, as dockerd 20.10 (RepoTags null).
      const byId = path.join(daemon.dir, "by-id.tar")
      yield* docker("save", "-o", byId, layered.configDigest.slice(7, 19))
      assert.deepStrictEqual(JSON.parse(execFileSync("tar", ["-xOf", byId, "manifest.json"], { encoding: "utf8" })), [{
        Config: `blobs/sha256/${layered.configDigest.slice(7)}`,
        RepoTags: null,
        Layers: layered.layerDigests.map((digest) => `blobs/sha256/${digest.slice(7)}`)
      }])
      const skopeo = path.join(daemon.dir, "skopeo.docker.tar")
      execFileSync("skopeo", ["copy", "-q", `oci-archive:${layered.archive}`, `docker-archive:${skopeo}:example.test/skopeo:v1`])
      assert.strictEqual(yield* docker("load", "-i", skopeo), "Loaded image: example.test/skopeo:v1")
      assert.strictEqual(yield* docker("image", "inspect", "--format", "{{.Id}}", "example.test/skopeo:v1"), layered.configDigest)

      // The nameless archive loads as a nameless image, as dockerd 20.10 loads it.
      yield* docker("rmi", "example.test/layered:v1", "example.test/skopeo:v1")
      assert.strictEqual(yield* docker("load", "-i", byId), `Loaded image ID: ${layered.configDigest}`)
      const listed = yield* docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
      assert.include(listed.split("\n"), `<none>:<none> ${layered.configDigest.slice(7, 19)}`, listed)
      assert.strictEqual(yield* docker("rmi", layered.configDigest.slice(7, 19)), `Deleted: ${layered.configDigest}`)

      const missing = yield* get(daemon.socket, "/images/nosuch:v1/get")
      assert.deepStrictEqual([missing.status, missing.body], [404, "{\"message\":\"No such image: nosuch:v1\"}\n"])
    }).pipe(Effect.scoped), 90_000)

  it.live("a truncated or foreign archive is a 400, nothing is listed, and no spool file stays (nor one left by a crash)", () =>
    Effect.gen(function*() {
      const { daemon, docker } = yield* setup
      const saved = path.join(daemon.dir, "saved.tar")
      yield* docker("save", "-o", saved, FIXTURE_IMAGE)
      yield* docker("rmi", FIXTURE_IMAGE)
      const whole = fs.readFileSync(saved)
      const truncated = yield* post(daemon.socket, "/v1.41/images/load?quiet=1", whole.subarray(0, Math.floor(whole.length / 2)))
      assert.strictEqual(truncated.status, 400)
      assert.match(truncated.body, /the archive is truncated/)
      const foreign = yield* post(daemon.socket, "/v1.41/images/load", Buffer.from("not an archive\n"))
      assert.deepStrictEqual([foreign.status, foreign.body], [
        400,
        "{\"message\":\"the archive is neither an OCI image layout (index.json) nor a Docker image archive (manifest.json)\"}\n"
      ])
      const cli = yield* daemon.docker(["load", "-i", path.join(daemon.dir, "none.tar")])
      assert.strictEqual(cli.code, 1)
      assert.strictEqual(yield* docker("images", "-q"), "")
      const spool = path.join(daemon.dataRoot, "tmp")
      assert.deepStrictEqual(fs.readdirSync(spool), [])

      // Not quiet: each new layer's progress as it is written, up to its size, then the name.
      const layered = yield* buildLayeredImage(daemon.dir, { name: "example.test/progress:v1", layers: 1, layerSize: 2 * 1024 * 1024 })
      const loaded = yield* post(daemon.socket, "/v1.41/images/load", fs.readFileSync(layered.archive))
      assert.strictEqual(loaded.status, 200)
      const lines = loaded.body.trim().split("\n").map((line) =>
        JSON.parse(line) as { status?: string; id?: string; progressDetail?: { current: number; total: number }; stream?: string }
      )
      assert.deepStrictEqual(lines.at(-1), { stream: "Loaded image: example.test/progress:v1\n" })
      const ids = [...new Set(lines.flatMap((line) => line.id === undefined ? [] : [line.id]))]
      assert.deepStrictEqual(ids, layered.layerDigests.map((digest) => digest.slice(7, 19)), "each layer, in order")
      for (const id of ids) {
        const progress = lines.filter((line) => line.id === id)
        assert.isTrue(progress.every((line) => line.status === "Loading layer"))
        const last = progress.at(-1)!.progressDetail!
        assert.strictEqual(last.current, last.total, `${id} ends complete`)
      }
      assert.isAbove(lines.filter((line) => line.id === ids[1]).length, 1, "the 2 MiB layer in steps")
      assert.deepStrictEqual(fs.readdirSync(spool), [])

      // A load the daemon was killed in leaves its spool file: the next start removes it.
      yield* daemon.stop
      fs.writeFileSync(path.join(spool, "load-0123456789abcdef.tar"), "partial")
      yield* daemon.start
      assert.deepStrictEqual(fs.readdirSync(spool), [])
    }).pipe(Effect.scoped), 90_000)

  it.live("with dockerd 20.10 (when installed): our save loads and runs there, its save loads here, history is the same bytes", () =>
    Effect.gen(function*() {
      const { daemon, docker } = yield* setup
      const layered = yield* buildLayeredImage(daemon.dir, { name: "example.test/layered:v2", layers: 2, layerSize: 64 * 1024 })
      yield* docker("load", "-i", layered.archive)
      const history = (socket: string, name: string) => get(socket, `/v1.41/images/${name}/history`)

      const ours = yield* history(daemon.socket, "example.test/layered:v2")
      assert.strictEqual(ours.status, 200)
      const steps = JSON.parse(ours.body) as Array<{ Id: string; Size: number; Tags: Array<string> | null; CreatedBy: string }>
      assert.deepStrictEqual(steps.map((step) => step.Id), [layered.configDigest, "<missing>", "<missing>"])
      assert.deepStrictEqual(steps.map((step) => step.Tags), [["example.test/layered:v2"], null, null])
      assert.deepStrictEqual(steps.slice(0, 2).map((step) => step.Size), [64 * 1024, 64 * 1024], "newest first, each layer's file")
      assert.deepStrictEqual(
        [(yield* history(daemon.socket, "nosuch")).body],
        ["{\"message\":\"No such image: nosuch:latest\"}\n"]
      )

      const dockerd = yield* startDockerd(shared().address, { archive: shared().fixtureArchive, name: FIXTURE_IMAGE }).pipe(Effect.orDie)
      if (Option.isNone(dockerd)) {
        yield* Effect.logWarning("dockerd 20.10 is not installed: the dockerd half of this test did not run")
        return
      }
      const theirs = dockerCli(dockerd.value.socket, path.join(daemon.dir, "docker-config"))
      const check = (args: ReadonlyArray<string>) =>
        Effect.flatMap(theirs(args), (r) =>
          r.code === 0 ? Effect.succeed(r.stdout.trim()) : Effect.die(new Error(`dockerd: docker ${args.join(" ")}: ${r.stderr}`)))

      // Ours → dockerd: the layers stay gzip-compressed in the archive; 20.10 decompresses them as it loads.
      const saved = path.join(daemon.dir, "ours.tar")
      yield* docker("save", "-o", saved, "example.test/layered:v2")
      assert.strictEqual(yield* check(["load", "-i", saved]), "Loaded image: example.test/layered:v2")
      assert.strictEqual(yield* check(["image", "inspect", "--format", "{{.Id}}", "example.test/layered:v2"]), layered.configDigest)
      assert.strictEqual(yield* check(["run", "--rm", "example.test/layered:v2", "ls", "/data"]), "layer-0.bin\nlayer-1.bin")
      // The same bytes, to the newline Go's JSON encoder ends every answer with.
      for (const name of ["example.test/layered:v2", FIXTURE_IMAGE]) {
        assert.strictEqual((yield* history(daemon.socket, name)).body, (yield* history(dockerd.value.socket, name)).body, name)
      }

      // dockerd → ours.
      const exported = path.join(daemon.dir, "theirs.tar")
      yield* check(["tag", "example.test/layered:v2", "example.test/from-dockerd:v1"])
      yield* check(["save", "-o", exported, "example.test/from-dockerd:v1"])
      assert.strictEqual(yield* docker("load", "-i", exported), "Loaded image: example.test/from-dockerd:v1")
      assert.strictEqual(yield* docker("image", "inspect", "--format", "{{.Id}}", "example.test/from-dockerd:v1"), layered.configDigest)
      assert.strictEqual(yield* docker("run", "--rm", "example.test/from-dockerd:v1", "ls", "/data"), "layer-0.bin\nlayer-1.bin")
    }).pipe(Effect.scoped), 120_000)
})
