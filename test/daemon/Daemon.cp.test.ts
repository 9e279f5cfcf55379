/**
 * `docker cp` (`GET|HEAD|PUT /containers/{id}/archive`) through the docker CLI,
 * dockerode and raw HTTP, on running and stopped containers: the refusals as
 * dockerd 20.10 answers them (beside ours when it is installed), files,
 * directories and links both ways, and escape attempts through links that must
 * stay inside the container's root.
 */
import { assert, layer } from "@effect/vitest"
import Docker from "dockerode"
import { Effect, Stream } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { type TarMember, tarStream } from "../../src/internal/TarWriter.ts"
import { bothEngines, type Engine, engines, Engines, eventually, ok } from "../support/Engines.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"

const API = "/v1.41"

const refusal = (engine: Engine, method: string, urlPath: string, body?: Uint8Array) =>
  Effect.map(engine.request(method, `${API}${urlPath}`, body, "application/x-tar"), (r) => ({
    status: r.status,
    message: r.body === "" ? "" : (JSON.parse(r.body) as { message: string }).message
  }))

/** An archive of `members`, as bytes. */
const tarOf = (members: ReadonlyArray<TarMember<never>>) =>
  Effect.map(Stream.runCollect(tarStream(Stream.fromIterable(members))), (chunks) => Buffer.concat(Array.from(chunks)))

const fileMember = (name: string, text: string): TarMember<never> => ({
  _tag: "File",
  name,
  size: Buffer.byteLength(text),
  data: Stream.succeed(new TextEncoder().encode(text))
})

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-cp-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

/** A host tree: a file (0640), a subdirectory with a file, and a relative link to the first file. */
const hostTree = (dir: string) => {
  const tree = path.join(dir, "tree")
  fs.mkdirSync(path.join(tree, "sub"), { recursive: true })
  fs.writeFileSync(path.join(tree, "a.txt"), "alpha\n")
  fs.chmodSync(path.join(tree, "a.txt"), 0o640)
  fs.writeFileSync(path.join(tree, "sub", "b.txt"), "beta\n")
  fs.symlinkSync("a.txt", path.join(tree, "link"))
  return tree
}

/** That a copied-out tree is the host tree: contents, mode and the link kept as a link. */
const assertTree = (tree: string) => {
  assert.strictEqual(fs.readFileSync(path.join(tree, "a.txt"), "utf8"), "alpha\n")
  assert.strictEqual(fs.statSync(path.join(tree, "a.txt")).mode & 0o777, 0o640)
  assert.strictEqual(fs.readFileSync(path.join(tree, "sub", "b.txt"), "utf8"), "beta\n")
  assert.strictEqual(fs.readlinkSync(path.join(tree, "link")), "a.txt")
}

layer(engines("cp"), { excludeTestServices: true, timeout: 120_000 })("docker cp", (it) => {
  it.effect("refuses a missing container, a missing path, a file as the target, a read-only rootfs and a bad tar, as dockerd", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        const name = `${engine.name}-cp-ref`
        yield* ok(engine, ["create", "--name", name, FIXTURE_IMAGE, "true"])
        yield* ok(engine, ["create", "--name", `${name}-ro`, "--read-only", FIXTURE_IMAGE, "true"])
        const tar = yield* tarOf([fileMember("x.txt", "x")])
        assert.deepStrictEqual(yield* refusal(engine, "GET", `/containers/${name}-nosuch/archive?path=/etc`), {
          status: 404,
          message: `No such container: ${name}-nosuch`
        })
        assert.deepStrictEqual(yield* refusal(engine, "GET", `/containers/${name}/archive?path=/nope`), {
          status: 404,
          message: `Could not find the file /nope in container ${name}`
        })
        assert.strictEqual((yield* refusal(engine, "HEAD", `/containers/${name}/archive?path=/nope`)).status, 404)
        // dockerd 20.10 answers a 500 (a plain error), though the request is at fault: ours a 400.
        assert.deepStrictEqual(yield* refusal(engine, "PUT", `/containers/${name}/archive?path=/etc/passwd`, tar), {
          status: engine.name === "ours" ? 400 : 500,
          message: "extraction point is not a directory"
        })
        // dockerd 20.10's is a 500 too (its errdefs don't classify it); ours the 403 that dockerd's later versions give.
        assert.deepStrictEqual(yield* refusal(engine, "PUT", `/containers/${name}-ro/archive?path=/`, tar), {
          status: engine.name === "ours" ? 403 : 500,
          message: "container rootfs is marked read-only"
        })
        if (engine.name === "ours") {
          const bad = yield* refusal(engine, "PUT", `/containers/${name}/archive?path=/`, new TextEncoder().encode("not a tar".repeat(100)))
          assert.strictEqual(bad.status, 400)
          const climbing = yield* refusal(engine, "PUT", `/containers/${name}/archive?path=/tmp`, yield* tarOf([fileMember("../../x.txt", "x")]))
          assert.strictEqual(climbing.status, 400)
        }
        yield* ok(engine, ["rm", name, `${name}-ro`])
      })))

  it.effect("docker cp both ways on a running container: a file, a directory, a symlink kept as a link", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const dir = yield* tempDir
      const tree = hostTree(dir)
      yield* ok(ours, ["run", "-d", "--name", "cp-run", FIXTURE_IMAGE, "sleep", "600"])
      yield* ok(ours, ["cp", tree, "cp-run:/tmp/"])
      assert.strictEqual(yield* ok(ours, ["exec", "cp-run", "cat", "/tmp/tree/sub/b.txt"]), "beta\n")
      assert.strictEqual((yield* ok(ours, ["exec", "cp-run", "busybox", "readlink", "/tmp/tree/link"])).trim(), "a.txt")
      yield* ok(ours, ["cp", "cp-run:/tmp/tree", path.join(dir, "out")])
      assertTree(path.join(dir, "out"))
      yield* ok(ours, ["cp", "cp-run:/tmp/tree/a.txt", path.join(dir, "one.txt")])
      assert.strictEqual(fs.readFileSync(path.join(dir, "one.txt"), "utf8"), "alpha\n")
      yield* ok(ours, ["rm", "-f", "cp-run"])
    }))

  it.effect("docker cp both ways on a stopped container (its snapshot mounted for the copy, then unmounted)", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const dir = yield* tempDir
      const tree = hostTree(dir)
      yield* ok(ours, ["create", "--name", "cp-stopped", FIXTURE_IMAGE, "sh", "-c", "cat /tmp/tree/a.txt; echo made > /tmp/tree/made.txt"])
      yield* ok(ours, ["cp", tree, "cp-stopped:/tmp/"])
      assert.strictEqual(yield* ok(ours, ["start", "-a", "cp-stopped"]), "alpha\n")
      yield* ok(ours, ["cp", "cp-stopped:/tmp/tree", path.join(dir, "out")])
      assertTree(path.join(dir, "out"))
      assert.strictEqual(fs.readFileSync(path.join(dir, "out", "made.txt"), "utf8"), "made\n")
      // Unmounted once the archive has ended, which the CLI may see first.
      const mounts = path.join(ours.daemon!.dataRoot, "mnt")
      yield* eventually("the copy mount to go", Effect.sync(() => !fs.existsSync(mounts) || fs.readdirSync(mounts).length === 0))
      yield* ok(ours, ["rm", "cp-stopped"])
    }))

  it.effect("dockerode putArchive, infoArchive and getArchive", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const dir = yield* tempDir
      const docker = new Docker({ socketPath: ours.socket })
      yield* ok(ours, ["run", "-d", "--name", "cp-ode", FIXTURE_IMAGE, "sleep", "600"])
      const container = docker.getContainer("cp-ode")
      const tar = yield* tarOf([
        { _tag: "Directory", name: "d", meta: { mode: 0o750, uid: 0, gid: 0, mtime: 1_600_000_000 } },
        fileMember("d/f.txt", "hello"),
        { _tag: "Symlink", name: "d/l", target: "f.txt" }
      ])
      yield* Effect.promise(() => container.putArchive(tar, { path: "/tmp" }))
      // dockerode answers a HEAD with the response itself: the stat is its header.
      const statOf = (p: string) =>
        Effect.map(
          Effect.promise(() => container.infoArchive({ path: p }) as Promise<{ headers: Record<string, string> }>),
          (response) => JSON.parse(Buffer.from(response.headers["x-docker-container-path-stat"]!, "base64").toString()) as Record<string, unknown>
        )
      const stat = yield* statOf("/tmp/d/f.txt")
      assert.deepStrictEqual({ name: stat.name, size: stat.size, mode: stat.mode, linkTarget: stat.linkTarget }, {
        name: "f.txt",
        size: 5,
        mode: 0o644,
        linkTarget: ""
      })
      const dirStat = yield* statOf("/tmp/d")
      assert.strictEqual(dirStat.mode, 2 ** 31 + 0o750)
      assert.strictEqual(dirStat.mtime, "2020-09-13T12:26:40Z")
      const linkStat = yield* statOf("/tmp/d/l")
      assert.deepStrictEqual([linkStat.mode, linkStat.linkTarget], [2 ** 27 + 0o777, "/tmp/d/f.txt"])
      const archive = yield* Effect.promise(async () => {
        const stream = await container.getArchive({ path: "/tmp/d" })
        const chunks: Array<Buffer> = []
        for await (const chunk of stream) chunks.push(chunk as Buffer)
        return Buffer.concat(chunks)
      })
      fs.writeFileSync(path.join(dir, "d.tar"), archive)
      const listing = execFileSync("tar", ["-tvf", path.join(dir, "d.tar")], { encoding: "utf8" })
      assert.match(listing, /^drwxr-x--- .* d\/$/m)
      assert.match(listing, / d\/f\.txt$/m)
      assert.match(listing, / d\/l -> f\.txt$/m)
      yield* ok(ours, ["rm", "-f", "cp-ode"])
    }))

  it.effect("links never lead out of the container: /escape -> /etc reads its /etc, a PUT through an absolute or ../ link writes inside", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const dir = yield* tempDir
      // A directory that exists on the host, made in the container too: a link to it must mean the container's.
      const hostOnly = path.join(dir, "target")
      fs.mkdirSync(hostOnly)
      yield* ok(ours, ["run", "-d", "--name", "cp-esc", "--hostname", "inside", FIXTURE_IMAGE, "sleep", "600"])
      yield* ok(ours, [
        "exec",
        "cp-esc",
        "sh",
        "-c",
        `busybox ln -s /etc /escape && mkdir -p ${hostOnly} && busybox ln -s ${hostOnly} /abs && busybox ln -s ../../../../../../..${hostOnly} /tmp/rel`
      ])
      yield* ok(ours, ["cp", "cp-esc:/escape/hostname", path.join(dir, "hostname")])
      assert.strictEqual(fs.readFileSync(path.join(dir, "hostname"), "utf8"), "inside\n")
      const request = (p: string, tar: Uint8Array) => ours.request("PUT", `${API}/containers/cp-esc/archive?path=${encodeURIComponent(p)}`, tar, "application/x-tar")
      assert.strictEqual((yield* request("/abs", yield* tarOf([fileMember("m1", "one")]))).status, 200)
      assert.strictEqual((yield* request("/tmp/rel", yield* tarOf([fileMember("m2", "two")]))).status, 200)
      // A link the archive makes, then a member under it.
      const viaArchive = yield* tarOf([{ _tag: "Symlink", name: "esc", target: hostOnly }, fileMember("esc/m3", "three")])
      assert.strictEqual((yield* request("/", viaArchive)).status, 200)
      assert.deepStrictEqual(fs.readdirSync(hostOnly), [])
      assert.strictEqual(yield* ok(ours, ["exec", "cp-esc", "sh", "-c", `cat ${hostOnly}/m1 ${hostOnly}/m2 ${hostOnly}/m3`]), "onetwothree")
      yield* ok(ours, ["rm", "-f", "cp-esc"])
    }))
})
