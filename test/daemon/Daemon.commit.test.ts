/**
 * `docker import` (`POST /images/create?fromSrc=`) and `docker commit` (`POST
 * /commit`) through the docker CLI and raw HTTP against the daemon as a real
 * process on the real containerd, and the same checks against dockerd 20.10
 * where it is installed: an imported busybox rootfs runs with its changes, from
 * the body or a loopback URL; a broken tar and a bad change are refused with
 * nothing stored; a commit of a running container is paused meanwhile and runs
 * with the file the container wrote and the commit's changes.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Schedule } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { type DaemonInstance, dockerCli, requestOver, startDaemon } from "../support/DaemonHarness.ts"
import { startDockerd } from "../support/Dockerd.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { importFixture, shared, uniqueNamespace } from "../support/SharedContainerd.ts"

const API = "/v1.41"

/** An engine under test: the docker CLI and raw HTTP on its socket. */
interface Engine {
  readonly name: string
  readonly socket: string
  readonly cli: DaemonInstance["docker"]
}

/** The docker CLI's stdout, trimmed; a failure fails the test with its stderr. */
const docker = (engine: Engine, ...args: ReadonlyArray<string>) =>
  Effect.flatMap(engine.cli(args), (r) =>
    r.code === 0
      ? Effect.succeed(r.stdout.trim())
      : Effect.die(new Error(`${engine.name}: docker ${args.join(" ")} exited with ${r.code}: ${r.stderr}`)))

/** A POST with a body over a unix socket: its status and raw body. */
const post = (socket: string, urlPath: string, body: Uint8Array | string = "", contentType = "application/x-tar") =>
  Effect.orDie(requestOver(socket)("POST", urlPath, body, contentType))

/** A busybox root filesystem tar (and its gzip), built from the host's static busybox. */
const rootfs = (dir: string) => {
  const root = path.join(dir, "rootfs")
  fs.mkdirSync(path.join(root, "bin"), { recursive: true })
  fs.copyFileSync("/bin/busybox", path.join(root, "bin", "busybox"))
  fs.chmodSync(path.join(root, "bin", "busybox"), 0o755)
  const tar = path.join(dir, "rootfs.tar")
  execFileSync("tar", ["-C", root, "-cf", tar, "bin"])
  execFileSync("gzip", ["-k", tar])
  return { tar, gzip: `${tar}.gz` }
}

/** A loopback HTTP server of `files` (by name; anything else is a 404) for the scope. */
const serveFiles = (files: Readonly<Record<string, string>>) =>
  Effect.acquireRelease(
    Effect.callback<http.Server>((resume) => {
      const server = http.createServer((req, res) => {
        const file = files[(req.url ?? "").slice(1)]
        if (file === undefined) {
          res.writeHead(404).end("no such file\n")
          return
        }
        res.writeHead(200, { "content-length": fs.statSync(file).size })
        fs.createReadStream(file).pipe(res)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
  ).pipe(Effect.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`))

/** The tag and import events since `since` (seconds): `action:name`. */
const imageActionsSince = (engine: Engine, since: number) =>
  Effect.gen(function*() {
    const until = Math.ceil(Date.now() / 1000) + 1
    const filters = encodeURIComponent(JSON.stringify({ type: ["image"] }))
    const answer = yield* requestOver(engine.socket)("GET", `${API}/events?since=${since}&until=${until}&filters=${filters}`).pipe(Effect.orDie)
    return answer.body.trim().split("\n").filter((line) => line !== "").flatMap((line) => {
      const event = JSON.parse(line) as { Action: string; Actor: { Attributes: { name: string } } }
      return ["tag", "import"].includes(event.Action) ? [`${event.Action}:${event.Actor.Attributes.name}`] : []
    })
  })

/** What an engine answers for the import checks, to compare between ours and dockerd. */
const importChecks = (engine: Engine, dir: string) =>
  Effect.gen(function*() {
    const { tar, gzip } = rootfs(dir)
    const since = Math.floor(Date.now() / 1000)
    const id = yield* docker(engine, "import", "--change", "CMD [\"/bin/busybox\",\"echo\",\"hi\"]", "--change", "ENV X=1", tar, "example.test/imported:v1")
    assert.match(id, /^sha256:[0-9a-f]{64}$/, engine.name)
    assert.deepStrictEqual(yield* imageActionsSince(engine, since), ["tag:example.test/imported:v1", `import:${id}`], engine.name)
    assert.strictEqual(yield* docker(engine, "run", "--rm", "example.test/imported:v1"), "hi", engine.name)
    assert.include((yield* docker(engine, "run", "--rm", "example.test/imported:v1", "/bin/busybox", "env")).split("\n"), "X=1")
    const inspected = JSON.parse(yield* docker(engine, "image", "inspect", "example.test/imported:v1"))[0]
    assert.deepStrictEqual(
      [inspected.Id, inspected.Comment, inspected.Parent, inspected.Config.Cmd, inspected.Config.Env, inspected.RootFS.Layers.length],
      [id, "Imported from -", "", ["/bin/busybox", "echo", "hi"], ["X=1"], 1],
      engine.name
    )

    const junk = path.join(dir, "junk.tar")
    fs.writeFileSync(junk, Buffer.alloc(3000, "junk"))
    const base = yield* serveFiles({ "rootfs.tar.gz": gzip, "junk.tar": junk })
    const fromUrl = yield* post(engine.socket, `${API}/images/create?fromSrc=${encodeURIComponent(`${base}/rootfs.tar.gz`)}&repo=example.test/from-url&tag=v1&message=by+url`)
    assert.strictEqual(fromUrl.status, 200, `${engine.name}: ${fromUrl.body}`)
    const lines = fromUrl.body.trim().split("\r\n").map((line) => JSON.parse(line) as { status: string; progressDetail?: { current: number; total: number } })
    const size = fs.statSync(gzip).size
    assert.deepStrictEqual(lines[0], { status: `Downloading from ${base}/rootfs.tar.gz` }, engine.name)
    assert.deepStrictEqual(lines.at(-2)?.progressDetail, { current: size, total: size }, `${engine.name}: the import's progress ends complete`)
    assert.isTrue(lines.slice(1, -1).every((line) => line.status === "Importing"), engine.name)
    assert.match(lines.at(-1)!.status, /^sha256:[0-9a-f]{64}$/, engine.name)
    assert.strictEqual(yield* docker(engine, "run", "--rm", "example.test/from-url:v1", "/bin/busybox", "echo", "from url"), "from url")
    assert.strictEqual(yield* docker(engine, "image", "inspect", "--format", "{{.Comment}}", "example.test/from-url:v1"), "by url")

    // Refusals, with nothing stored.
    const before = yield* docker(engine, "images", "-q", "--no-trunc")
    const broken = yield* post(engine.socket, `${API}/images/create?fromSrc=-&repo=example.test/broken`, Buffer.alloc(3000, "junk"))
    const truncated = yield* post(engine.socket, `${API}/images/create?fromSrc=-&repo=example.test/broken`, fs.readFileSync(tar).subarray(0, 1000))
    const badChange = yield* post(engine.socket, `${API}/images/create?fromSrc=-&repo=example.test/broken&changes=RUN+x`, fs.readFileSync(tar))
    const brokenUrl = yield* post(engine.socket, `${API}/images/create?fromSrc=${encodeURIComponent(`${base}/junk.tar`)}&repo=example.test/broken`)
    const missing = yield* post(engine.socket, `${API}/images/create?fromSrc=${encodeURIComponent(`${base}/nosuch.tar`)}`)
    const refused = yield* post(engine.socket, `${API}/images/create?fromSrc=${encodeURIComponent("http://127.0.0.1:1/x.tar")}`)
    const ftp = yield* post(engine.socket, `${API}/images/create?fromSrc=${encodeURIComponent("ftp://127.0.0.1/x.tar")}`)
    const refusedAsDockerd: ReadonlyArray<readonly [string, string]> = [
      [`repo=busybox@sha256:${"a".repeat(64)}`, "cannot import digest reference"],
      ["platform=windows/amd64", "operating system is not supported"],
      ["changes=", "file with no instructions"]
    ]
    for (const [query, message] of refusedAsDockerd) {
      const answer = yield* post(engine.socket, `${API}/images/create?fromSrc=-&${query}`, fs.readFileSync(tar))
      assert.deepStrictEqual([answer.status, JSON.parse(answer.body)], [400, { message }], `${engine.name}: ${query}`)
    }
    const badName = yield* post(engine.socket, `${API}/images/create?fromSrc=-&repo=UPPER`, fs.readFileSync(tar))
    assert.deepStrictEqual([badName.status, JSON.parse(badName.body).message.startsWith("invalid reference format: ")], [400, true], badName.body)
    assert.strictEqual(yield* docker(engine, "images", "-q", "--no-trunc"), before, `${engine.name}: nothing stored by the refusals`)
    return {
      broken,
      truncated,
      badChange,
      brokenUrl: { status: brokenUrl.status, last: JSON.parse(brokenUrl.body.trim().split("\r\n").at(-1)!) as unknown },
      missing: { status: missing.status, message: JSON.parse(missing.body).message as string },
      refused,
      ftp
    }
  })

/** Polls `check` every 50 ms until it holds, for up to 10 s. */
const eventually = <A>(what: string, effect: Effect.Effect<A>, check: (value: A) => boolean) =>
  effect.pipe(
    Effect.filterOrFail(check, () => new Error(`${what}: not yet`)),
    Effect.retry({ schedule: Schedule.spaced("50 millis"), times: 200 }),
    Effect.orDie
  )

/** The container's pause, unpause and commit events between `since` and now (seconds), in order. */
const actionsSince = (engine: Engine, container: string, since: number) =>
  Effect.gen(function*() {
    const until = Math.ceil(Date.now() / 1000) + 1
    const filters = encodeURIComponent(JSON.stringify({ container: [container] }))
    const answer = yield* requestOver(engine.socket)("GET", `${API}/events?since=${since}&until=${until}&filters=${filters}`).pipe(Effect.orDie)
    return answer.body.trim().split("\n").filter((line) => line !== "")
      .map((line) => (JSON.parse(line) as { Action: string }).Action)
      .filter((action) => ["pause", "unpause", "commit"].includes(action))
  })

/** What an engine answers for the commit checks. */
const commitChecks = (engine: Engine) =>
  Effect.gen(function*() {
    const name = `src-${engine.name}`
    yield* docker(engine, "run", "-d", "--name", name, "--label", "from=container", FIXTURE_IMAGE, "sh", "-c", "echo committed > /made.txt && exec sleep 600")
    yield* eventually("the file", engine.cli(["exec", name, "cat", "/made.txt"]), (r) => r.stdout.trim() === "committed")
    const since = Math.floor(Date.now() / 1000)
    const id = yield* docker(engine, "commit", "--change", "ENV C=1", "--change", "CMD [\"cat\",\"/made.txt\"]", "-m", "a message", "-a", "me <me@example.test>", name, "example.test/committed:v1")
    assert.match(id, /^sha256:[0-9a-f]{64}$/, engine.name)
    // Paused during the commit, running again after.
    assert.deepStrictEqual(yield* actionsSince(engine, name, since), ["pause", "commit", "unpause"], engine.name)
    assert.strictEqual(yield* docker(engine, "inspect", "--format", "{{.State.Status}} {{.State.Paused}}", name), "running false")

    assert.strictEqual(yield* docker(engine, "run", "--rm", "example.test/committed:v1"), "committed", engine.name)
    assert.include((yield* docker(engine, "run", "--rm", "example.test/committed:v1", "env")).split("\n"), "C=1")
    const inspected = JSON.parse(yield* docker(engine, "image", "inspect", "example.test/committed:v1"))[0]
    const base = JSON.parse(yield* docker(engine, "image", "inspect", FIXTURE_IMAGE))[0]
    assert.deepStrictEqual(
      [inspected.Author, inspected.Comment, inspected.Config.Cmd, inspected.Config.Labels, inspected.RootFS.Layers.length],
      ["me <me@example.test>", "a message", ["cat", "/made.txt"], { from: "container" }, base.RootFS.Layers.length + 1],
      engine.name
    )
    const history = (yield* docker(engine, "history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", "example.test/committed:v1")).split("\n")
    assert.strictEqual(history[0], "sh -c echo committed > /made.txt && exec sleep 600|a message", engine.name)
    assert.strictEqual(history.length, base.RootFS.Layers.length + 1, engine.name)

    // Not paused when asked not to; a bad change is refused before anything happens.
    const unpausedSince = Math.floor(Date.now() / 1000)
    const unpaused = yield* post(engine.socket, `${API}/commit?container=${name}&pause=false`, "", "application/json")
    assert.strictEqual(unpaused.status, 201, `${engine.name}: ${unpaused.body}`)
    assert.match(unpaused.body, /^\{"Id":"sha256:[0-9a-f]{64}"\}\n$/)
    const bad = yield* post(engine.socket, `${API}/commit?container=${name}&changes=RUN+x`, "", "application/json")
    const afterUnpaused = yield* actionsSince(engine, name, unpausedSince)
    const missing = yield* post(engine.socket, `${API}/commit?container=nosuch&repo=UPPER`, "", "application/json")
    const unnamed = yield* post(engine.socket, `${API}/commit`, "", "application/json")
    assert.deepStrictEqual(unnamed, { status: 400, body: "{\"message\":\"invalid name or ID supplied: \\\"\\\"\"}\n" }, engine.name)
    // A config in the body, with a change, merged over the container's as dockerd's `merge`.
    const withBody = yield* post(
      engine.socket,
      `${API}/commit?container=${name}&repo=example.test/body&tag=v1&changes=${encodeURIComponent("ENV C=3")}`,
      JSON.stringify({ Cmd: ["echo", "body"], Env: ["B=2"], Labels: { l: "2" }, WorkingDir: "/w" }),
      "application/json"
    )
    assert.strictEqual(withBody.status, 201, withBody.body)
    const merged = JSON.parse(yield* docker(engine, "image", "inspect", "--format", "{{json .Config}}", "example.test/body:v1"))
    assert.deepStrictEqual(
      // The CLI 28 leaves an unset Entrypoint out.
      [merged.Cmd, merged.Entrypoint ?? null, merged.Env, merged.Labels, merged.WorkingDir],
      [["echo", "body"], null, ["B=2", "C=3", ...base.Config.Env], { l: "2", from: "container" }, "/w"],
      engine.name
    )

    // A stopped container commits too (nothing to pause).
    yield* docker(engine, "kill", name)
    yield* eventually("the stop", engine.cli(["inspect", "--format", "{{.State.Running}}", name]), (r) => r.stdout.trim() === "false")
    yield* docker(engine, "commit", name, "example.test/stopped:v1")
    assert.strictEqual(yield* docker(engine, "run", "--rm", "example.test/stopped:v1", "cat", "/made.txt"), "committed", engine.name)
    yield* docker(engine, "rm", "-f", name)
    return { bad, missing, afterUnpaused }
  })

/** The daemon over the shared containerd with the fixture image. */
const ours = Effect.gen(function*() {
  const namespace = uniqueNamespace("commit")
  yield* importFixture(namespace)
  const daemon = yield* startDaemon({ containerd: shared().address, namespace })
  return { engine: { name: "ours", socket: daemon.socket, cli: daemon.docker } satisfies Engine, dir: daemon.dir }
})

/** What both engines answer, word for word, for a URL that is missing, refused or not http. */
const assertDownloadRefusals = (answers: {
  readonly missing: { readonly status: number; readonly message: string }
  readonly refused: { readonly status: number; readonly body: string }
  readonly ftp: { readonly status: number; readonly body: string }
}) => {
  assert.strictEqual(answers.missing.status, 404)
  assert.match(answers.missing.message, /^failed to GET http:\/\/127\.0\.0\.1:\d+\/nosuch\.tar with status 404 Not Found: no such file$/)
  assert.deepStrictEqual(answers.refused, {
    status: 500,
    body: "{\"message\":\"Get \\\"http://127.0.0.1:1/x.tar\\\": dial tcp 127.0.0.1:1: connect: connection refused\"}\n"
  })
  assert.deepStrictEqual(answers.ftp, {
    status: 500,
    body: "{\"message\":\"Get \\\"ftp://127.0.0.1/x.tar\\\": unsupported protocol scheme \\\"ftp\\\"\"}\n"
  })
}

describe("docker import and docker commit", () => {
  it.live("import from the body and from a URL runs with its changes; a broken tar, a bad change, a bad URL are refused, nothing stored", () =>
    Effect.gen(function*() {
      const { engine, dir } = yield* ours
      const answers = yield* importChecks(engine, dir)
      assert.deepStrictEqual(answers.broken, {
        status: 400,
        body: "{\"message\":\"Error processing tar file: archive/tar: invalid tar header (at byte 0)\"}\n"
      })
      assert.strictEqual(answers.truncated.status, 400, answers.truncated.body)
      assert.deepStrictEqual(answers.badChange, { status: 400, body: "{\"message\":\"run is not a valid change command\"}\n" })
      // Everything is stored before the answer, so a broken download is a 400 too (dockerd: 200 and an errorDetail line).
      assert.deepStrictEqual(answers.brokenUrl, {
        status: 400,
        last: { message: "Error processing tar file: archive/tar: invalid tar header (at byte 0)" }
      })
      assertDownloadRefusals(answers)
    }).pipe(Effect.scoped), 60_000)

  it.live("commit of a running container: paused meanwhile, running after; the image runs with its file and the changes; 404 and 400", () =>
    Effect.gen(function*() {
      const { engine } = yield* ours
      const answers = yield* commitChecks(engine)
      assert.deepStrictEqual(answers.bad, { status: 400, body: "{\"message\":\"run is not a valid change command\"}\n" })
      assert.deepStrictEqual(answers.missing, { status: 404, body: "{\"message\":\"No such container: nosuch\"}\n" })
      // No pause for pause=false; the bad change is refused before the container is touched.
      assert.deepStrictEqual(answers.afterUnpaused, ["commit"])
    }).pipe(Effect.scoped), 60_000)

  it.live("with dockerd 20.10 (when installed): the same import and commit checks answer the same", () =>
    Effect.gen(function*() {
      const { dir } = yield* ours
      const dockerd = yield* startDockerd(shared().address, { archive: shared().fixtureArchive, name: FIXTURE_IMAGE }).pipe(Effect.orDie)
      if (Option.isNone(dockerd)) {
        yield* Effect.logWarning("dockerd 20.10 is not installed: the dockerd half of this test did not run")
        return
      }
      const engine: Engine = { name: "dockerd", socket: dockerd.value.socket, cli: dockerCli(dockerd.value.socket, path.join(dir, "docker-config")) }
      const dockerdDir = path.join(dir, "dockerd")
      fs.mkdirSync(dockerdDir)
      const imports = yield* importChecks(engine, dockerdDir)
      // dockerd refuses a broken tar with a 500 (we answer 400: the input is bad) and words tar errors as Go does.
      assert.deepStrictEqual(imports.broken, {
        status: 500,
        body: "{\"message\":\"Error processing tar file(exit status 1): archive/tar: invalid tar header\"}\n"
      })
      assert.deepStrictEqual(imports.badChange, { status: 400, body: "{\"message\":\"run is not a valid change command\"}\n" })
      const tarError = "Error processing tar file(exit status 1): archive/tar: invalid tar header"
      assert.deepStrictEqual(imports.brokenUrl, { status: 200, last: { errorDetail: { message: tarError }, error: tarError } })
      assertDownloadRefusals(imports)
      const commits = yield* commitChecks(engine)
      assert.deepStrictEqual(commits.bad, { status: 400, body: "{\"message\":\"run is not a valid change command\"}\n" })
      assert.deepStrictEqual(commits.missing, { status: 404, body: "{\"message\":\"No such container: nosuch\"}\n" })
      // dockerd pauses before it reads the changes: a bad one still pauses and unpauses the container (ours does not).
      // (dockerd 20.10 reported a second pause/unpause pair here in one run out of two: only the first three are compared.)
      assert.deepStrictEqual(commits.afterUnpaused.slice(0, 3), ["commit", "pause", "unpause"])
    }).pipe(Effect.scoped), 120_000)
})
