/**
 * The hard edges of the API, through the docker CLI and raw HTTP against our
 * daemon on the real containerd, beside dockerd 20.10 when it is installed
 * (`test/support/Engines.ts`): a filter pattern cannot wedge the daemon, a huge
 * JSON body is refused without holding other requests or the daemon's memory,
 * label filters do not match inherited keys, and bad input at create is a 400
 * before anything is made.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Fiber, Option } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import { runDaemonCommand } from "../support/DaemonHarness.ts"
import { bothEngines, type Engine, engines, Engines, ok } from "../support/Engines.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"

const API = "/v1.41"

const listQuery = (filters: Record<string, ReadonlyArray<string>>) =>
  `${API}/containers/json?all=1&filters=${encodeURIComponent(JSON.stringify(filters))}`

/** The names `GET /containers/json` lists for `filters`, or the failed answer. */
const listed = (engine: Engine, filters: Record<string, ReadonlyArray<string>>) =>
  Effect.map(engine.request("GET", listQuery(filters)), (r) =>
    r.status === 200
      ? (JSON.parse(r.body) as ReadonlyArray<{ readonly Names: ReadonlyArray<string> }>).map((c) => c.Names[0] ?? "").sort() as ReadonlyArray<string>
      : `${r.status} ${r.body.trim()}`)

/** The daemon's resident memory, in bytes (`VmRSS` of /proc/<pid>/status). */
const rss = (pid: number): number => {
  const line = fs.readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:")) ?? "VmRSS: 0 kB"
  return Number(line.split(/\s+/)[1]) * 1024
}

/**
 * Sends about `size` bytes of body (`prefix`, `a`s, `suffix`) in 1 MiB writes as fast as
 * the socket takes them, with a Content-Length or chunked, and reads the
 * answer: its status and body, or a failure if the connection broke first.
 */
const sendBody = (
  socket: string,
  target: string,
  options: {
    readonly size: number
    readonly prefix: string
    readonly suffix: string
    readonly contentType: string
    readonly chunked: boolean
  }
) =>
  Effect.callback<{ readonly status: number; readonly body: string }, Error>((resume) => {
    const chunk = Buffer.alloc(1024 * 1024, 97)
    let sent = 0
    const request = http.request({
      socketPath: socket,
      method: "POST",
      path: target,
      headers: {
        "content-type": options.contentType,
        ...(options.chunked ? { "transfer-encoding": "chunked" } : {
          "content-length": String(options.prefix.length + Math.ceil(options.size / chunk.length) * chunk.length + options.suffix.length)
        })
      }
    }, (response) => {
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (text) => void (body += text))
      response.on("end", () => resume(Effect.succeed({ status: response.statusCode ?? 0, body })))
    })
    // The daemon may answer (and close) before the whole body is sent: the answer is what counts.
    request.on("error", (error) => resume(Effect.fail(new Error(`POST ${target} after ${sent} bytes: ${error.message}`))))
    const pump = () => {
      if (sent === 0) {
        request.write(options.prefix)
        sent = options.prefix.length
      }
      while (sent < options.size && !request.destroyed) {
        sent += chunk.length
        if (!request.write(chunk)) return void request.once("drain", pump)
      }
      request.end(options.suffix)
    }
    pump()
    return Effect.sync(() => request.destroy())
  })

/**
 * Runs `during` while `/_ping` is asked one at a time and the daemon's RSS is
 * sampled: what `during` gave, the slowest ping (ms) and the RSS growth (bytes).
 */
const whileWatching = <A, E>(engine: Engine, during: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const pid = engine.daemon!.pid()!
    const before = rss(pid)
    let peak = before
    let slowest = 0
    let pings = 0
    const watcher = yield* Effect.forkChild(Effect.forever(Effect.gen(function*() {
      const started = performance.now()
      const ping = yield* engine.request("GET", "/_ping")
      assert.strictEqual(ping.status, 200)
      slowest = Math.max(slowest, performance.now() - started)
      peak = Math.max(peak, rss(pid))
      pings++
      yield* Effect.sleep("20 millis")
    })))
    const result = yield* during
    yield* Fiber.interrupt(watcher)
    return { result, slowest, growth: peak - before, pings }
  })

const NAME_30A_B = `${"a".repeat(30)}b`

/** Our daemon's `--max-json-body` in these tests. */
const LIMIT = 1024 * 1024

layer(engines("edges", ["--max-json-body", "1m"]), { excludeTestServices: true, timeout: 180_000 })("the daemon's hard edges, beside dockerd 20.10", (it) => {
  it.effect("name filters are Go regexps matched in linear time: ^(a+)+$ against 30 a's and a b answers at once", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        const id = (yield* ok(engine, ["create", "--name", NAME_30A_B, FIXTURE_IMAGE, "true"])).trim()
        const started = performance.now()
        // A backtracking engine takes about a minute here (doubling with each `a`): 5 s is already a failure.
        const answer = yield* listed(engine, { name: ["^(a+)+$"] }).pipe(Effect.timeoutOption("5 seconds"))
        const elapsed = performance.now() - started
        assert.isTrue(Option.isSome(answer), `${engine.name}: no answer within 5 s`)
        assert.deepStrictEqual(Option.getOrThrow(answer), [], engine.name)
        assert.isBelow(elapsed, 500, `${engine.name}: the filter took ${elapsed.toFixed(0)} ms`)
        // Matched against the name with its slash and without, in RE2's syntax, as dockerd.
        for (const pattern of ["^/a+b$", "^a+b$", "(?i)A{30}B", "a\\z|b\\z"]) {
          assert.deepStrictEqual(yield* listed(engine, { name: [pattern] }), [`/${NAME_30A_B}`], `${engine.name}: ${pattern}`)
        }
        // What is no Go regexp: dockerd skips the pattern (nothing matches); here it is the client's error.
        const malformed = yield* listed(engine, { name: ["(?=a)"] })
        if (engine.name === "ours") {
          assert.strictEqual(
            malformed,
            "400 {\"message\":\"invalid filter 'name=(?=a)': error parsing regexp: invalid or unsupported Perl syntax: `(?=`\"}"
          )
        } else assert.deepStrictEqual(malformed, [])
        yield* ok(engine, ["rm", "-f", id])
      })
    ))

  it.effect("label filters match own labels only, all of them: constructor and __proto__ match nothing", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        const labelled = (yield* ok(engine, ["create", "--name", "labelled", "--label", "app=web", "--label", "tier=", FIXTURE_IMAGE, "true"])).trim()
        const bare = (yield* ok(engine, ["create", "--name", "bare", FIXTURE_IMAGE, "true"])).trim()
        const cases: ReadonlyArray<readonly [ReadonlyArray<string>, ReadonlyArray<string>]> = [
          [["constructor"], []],
          [["__proto__"], []],
          [["toString"], []],
          [["hasOwnProperty=x"], []],
          [["app"], ["/labelled"]],
          [["app=web", "tier="], ["/labelled"]],
          // Every label filter must hold (moby's MatchKVList), not any one of them.
          [["app", "other"], []]
        ]
        for (const [label, expected] of cases) {
          assert.deepStrictEqual(yield* listed(engine, { label }), expected, `${engine.name}: label=${label.join(",")}`)
        }
        // The docker CLI's own flag, the same way.
        assert.strictEqual(yield* ok(engine, ["ps", "-a", "--filter", "label=constructor", "--format", "{{.Names}}"]), "")
        yield* ok(engine, ["rm", "-f", labelled, bare])
      })
    ))

  it.effect("image filters: reference= is Go's path.Match (a RegExp's syntax is literal), label= sees own labels only", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        const images = (filter: string) => ok(engine, ["images", "--filter", filter, "--format", "{{.Repository}}:{{.Tag}}"])
        const cases: ReadonlyArray<readonly [string, string]> = [
          ["reference=effect-containerd.test/*:lat*", `${FIXTURE_IMAGE}\n`],
          ["reference=effect-containerd.test/busy[a-z]ox", `${FIXTURE_IMAGE}\n`],
          ["reference=effect-containerd.test/bus?box:latest", `${FIXTURE_IMAGE}\n`],
          ["reference=^effect-containerd.test/busybox$", ""],
          ["reference=effect-containerd.test/.*", ""],
          ["reference=*", ""],
          ["label=constructor", ""],
          ["label=__proto__", ""]
        ]
        for (const [filter, expected] of cases) assert.strictEqual(yield* images(filter), expected, `${engine.name}: ${filter}`)
      })
    ))

  it.effect("a 100 MB JSON body is a 413 while /_ping keeps answering, and the daemon's memory stays bounded; so is a 100 MB load", () =>
    Effect.gen(function*() {
      // dockerd has no limit (it reads the whole body): ours only.
      const { ours } = yield* Engines
      const size = 100 * 1024 * 1024
      for (const chunked of [false, true]) {
        const { result, slowest, growth, pings } = yield* whileWatching(
          ours,
          sendBody(ours.socket, `${API}/containers/create`, {
            size,
            // Valid JSON: without a cap it would be read, parsed and decoded whole.
            prefix: `{"Image":"${FIXTURE_IMAGE}","Env":["A=`,
            suffix: "\"]}",
            contentType: "application/json",
            chunked
          })
        )
        const label = chunked ? "chunked" : "with a Content-Length"
        yield* Effect.log(`${label}: ${result.status}, slowest of ${pings} pings ${slowest.toFixed(1)} ms, RSS +${(growth / 2 ** 20).toFixed(1)} MiB`)
        assert.strictEqual(result.status, 413, `${label}: ${result.body}`)
        assert.include(result.body, "--max-json-body", label)
        assert.isBelow(slowest, 1000, `${label}: a /_ping took ${slowest.toFixed(0)} ms`)
        assert.isBelow(growth, 128 * 1024 * 1024, `${label}: the daemon grew by ${(growth / 2 ** 20).toFixed(0)} MiB`)
        assert.isAbove(pings, 0, label)
      }
      // A load's body is spooled to a file as it comes, not held.
      const load = yield* whileWatching(
        ours,
        sendBody(ours.socket, `${API}/images/load`, { size, prefix: "", suffix: "", contentType: "application/x-tar", chunked: true })
      )
      yield* Effect.log(`load: ${load.result.status}, slowest of ${load.pings} pings ${load.slowest.toFixed(1)} ms, RSS +${(load.growth / 2 ** 20).toFixed(1)} MiB`)
      assert.strictEqual(load.result.status, 400, load.result.body)
      assert.isBelow(load.growth, 128 * 1024 * 1024, `load: the daemon grew by ${(load.growth / 2 ** 20).toFixed(0)} MiB`)
      assert.isBelow(load.slowest, 1000, `load: a /_ping took ${load.slowest.toFixed(0)} ms`)
      // Nothing was created.
      assert.deepStrictEqual(yield* listed(ours, {}), [])
    }))

  it.effect("--max-json-body sets the limit (1m here): a body just under it is taken, one just over is a 413; a bad size is refused at start", () =>
    Effect.gen(function*() {
      const { ours } = yield* Engines
      const body = (size: number) => {
        const head = `{"Image":"${FIXTURE_IMAGE}","Cmd":["true"],"Env":["A=`
        return `${head}${"a".repeat(size - head.length - 3)}"]}`
      }
      const taken = yield* ours.request("POST", `${API}/containers/create`, body(LIMIT - 10))
      assert.strictEqual(taken.status, 201, taken.body)
      const refused = yield* ours.request("POST", `${API}/containers/create`, body(LIMIT + 1))
      assert.deepStrictEqual([refused.status, JSON.parse(refused.body).message], [
        413,
        `the request body is larger than ${LIMIT} bytes, the daemon's limit for JSON bodies (--max-json-body)`
      ])
      yield* ok(ours, ["rm", JSON.parse(taken.body).Id])
      const dir = ours.daemon!.dir
      const start = yield* runDaemonCommand(["--host", `${dir}/other.sock`, "--data-root", `${dir}/other`, "--max-json-body", "lots"])
      assert.notStrictEqual(start.code, 0)
      assert.include(start.output, `invalid --max-json-body "lots": use a size of at least 1k, such as 4m`)
    }))

  it.effect("a bind or tmpfs over / is a 400 at create with dockerd's message, and nothing is made", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
          [["-v", "/tmp:/"], "invalid volume specification: '/tmp:/': invalid mount config for type \"bind\": invalid specification: destination can't be '/'"],
          [["-v", "/tmp://"], "invalid volume specification: '/tmp://': invalid mount config for type \"bind\": invalid specification: destination can't be '/'"],
          [["-v", "/tmp:/."], "invalid volume specification: '/tmp:/.': invalid mount config for type \"bind\": invalid specification: destination can't be '/'"],
          [["--tmpfs", "/"], "invalid specification: destination can't be '/'"],
          [["--tmpfs", "//.:size=1m"], "invalid specification: destination can't be '/'"]
        ]
        for (const [args, message] of cases) {
          const r = yield* engine.docker(["create", ...args, FIXTURE_IMAGE, "true"])
          assert.strictEqual(r.code, 1, `${engine.name}: ${args.join(" ")}: ${r.stdout}`)
          assert.include(r.stderr, `Error response from daemon: ${message}`, `${engine.name}: ${args.join(" ")}`)
        }
        assert.deepStrictEqual(yield* listed(engine, {}), [], engine.name)
      })
    ))

  it.effect("a tmpfs is mounted with the uid=, gid=, mode= and flags asked, as dockerd mounts it", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        const run = (options: string) =>
          ok(engine, ["run", "--rm", "--network", "none", "--tmpfs", `/t:${options}`, FIXTURE_IMAGE, "sh", "-c", "stat -c '%u %g %a' /t; grep ' /t ' /proc/mounts"])
        assert.strictEqual(
          yield* run("uid=1000,gid=1001,mode=0700,size=1m"),
          "1000 1001 700\ntmpfs /t tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k,mode=700,uid=1000,gid=1001 0 0\n",
          engine.name
        )
        // Flags replace Docker's defaults (noexec, nosuid, nodev, rw) with their opposites.
        assert.strictEqual(yield* run("ro,exec,suid,dev"), "0 0 1777\ntmpfs /t tmpfs ro,relatime 0 0\n", engine.name)
        // A uid the kernel would refuse: dockerd lets runc fail at start (125); here it is a 400 at create.
        const bad = yield* engine.docker(["create", "--tmpfs", "/t:uid=abc", FIXTURE_IMAGE, "true"])
        if (engine.name === "ours") {
          assert.strictEqual(bad.code, 1, bad.stdout)
          assert.include(bad.stderr, "invalid tmpfs uid \"abc\" for /t: use a number from 0 to 4294967294")
        } else if (bad.code === 0) yield* ok(engine, ["rm", bad.stdout.trim()])
        assert.deepStrictEqual(yield* listed(engine, {}), [], engine.name)
      })
    ))

  it.effect("an Image that is no reference is a 400 'invalid reference format' at create, not a 404; a missing image stays a 404", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        for (const image of ["Busybox", "effect-containerd.test/BUSYBOX", "busybox:Tag!", "x@sha256:abc", "a:b:c", "foo bar", "x@constructor:" + "a".repeat(64)]) {
          const r = yield* engine.request("POST", `${API}/containers/create`, JSON.stringify({ Image: image }))
          assert.strictEqual(r.status, 400, `${engine.name}: ${image}: ${r.body}`)
          // dockerd's words, then what is wrong (dockerd says "unsupported digest algorithm" alone for the last).
          if (engine.name === "ours") assert.match(JSON.parse(r.body).message, /^invalid reference format: /, image)
        }
        const missing = yield* engine.request("POST", `${API}/containers/create`, JSON.stringify({ Image: "no-such-image:v1" }))
        assert.strictEqual(missing.status, 404, `${engine.name}: ${missing.body}`)
        assert.deepStrictEqual(yield* listed(engine, {}), [], engine.name)
      })
    ))

  it.effect("a path with an empty segment (an empty id) reaches no route: /containers//json is not the list", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        const id = (yield* ok(engine, ["create", FIXTURE_IMAGE, "true"])).trim()
        const paths: ReadonlyArray<readonly [string, string]> = [
          ["GET", "/containers//json"],
          ["GET", "/images//json"],
          ["GET", "/containers//logs?stdout=1"],
          ["POST", "/containers//start"],
          ["POST", "/containers//kill"],
          ["GET", "//containers/json"],
          ["GET", `/containers/${id}/./json`],
          ["GET", `/containers/x/../${id}/json`]
        ]
        for (const [method, target] of paths) {
          const r = yield* engine.request(method, `${API}${target}`)
          // dockerd's router redirects to the cleaned path (which a client following it takes for the answer).
          const expected = engine.name === "ours" ? [404, "{\"message\":\"page not found\"}\n"] : [301, ""]
          assert.deepStrictEqual([r.status, r.body], expected, `${engine.name}: ${method} ${target}`)
        }
        // A trailing slash: a 404 from both.
        for (const target of ["/containers/json/", "/images/json/", `/containers/${id}/json/`]) {
          const r = yield* engine.request("GET", `${API}${target}`)
          assert.deepStrictEqual([r.status, r.body], [404, "{\"message\":\"page not found\"}\n"], `${engine.name}: ${target}`)
        }
        // The clean path still answers.
        assert.strictEqual((yield* engine.request("GET", `${API}/containers/${id}/json`)).status, 200)
        yield* ok(engine, ["rm", id])
      })
    ))

  it.effect("create takes an image by its ID or a unique prefix of it, as dockerd's lookup does", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        const id = (yield* ok(engine, ["image", "inspect", "--format", "{{.Id}}", FIXTURE_IMAGE])).trim()
        for (const name of [id, id.slice(7), id.slice(7, 19)]) {
          assert.strictEqual(yield* ok(engine, ["run", "--rm", "--network", "none", name, "echo", "hi"]), "hi\n", `${engine.name}: ${name}`)
        }
        const missing = yield* engine.request("POST", `${API}/containers/create`, JSON.stringify({ Image: "0123456789ab" }))
        assert.strictEqual(missing.status, 404, engine.name)
        assert.include(missing.body, "No such image: 0123456789ab", engine.name)
      })
    ))
})
