/**
 * exec and top as dockerd serves them, over the daemon's socket and, where
 * dockerd 20.10 is installed, over dockerd's on the same containerd, with the
 * same assertions: an exec's output is never in the read that carries its 101
 * (a client that parses the headers through a buffered reader and then reads
 * the raw socket, as the Python SDK, sees all of it); the start request's
 * `Tty` decides the framing; a start that fails answers 101 with the runtime's
 * message in the stream and gives the exec its exit code; `top` runs `ps` as
 * dockerd does and never lists `runc init`. Without dockerd its half is left
 * out (the test's log says so). dockerode drives the same execs, hijacked
 * and not.
 */
import { assert, layer } from "@effect/vitest"
import Docker from "dockerode"
import { Context, Effect, Fiber, Latch, Layer, Option } from "effect"
import * as net from "node:net"
import { PassThrough, type Readable } from "node:stream"
import { requestOver, startDaemon } from "../support/DaemonHarness.ts"
import { startDockerd } from "../support/Dockerd.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { importFixture, shared, uniqueNamespace } from "../support/SharedContainerd.ts"

/** An engine speaking the Docker API on a socket: ours, or dockerd. */
interface EngineUnderTest {
  readonly name: "ours" | "dockerd"
  readonly socket: string
}

/** The engines every test runs its assertions against. */
class Engines extends Context.Service<Engines, ReadonlyArray<EngineUnderTest>>()("test/daemon/Engines") {}

/** Our daemon and, when it starts, dockerd 20.10, on the shared containerd: one of each for the file. */
const EnginesLive = Layer.effect(Engines, Effect.gen(function*() {
  const namespace = uniqueNamespace("exec")
  yield* importFixture(namespace)
  const ours = yield* startDaemon({ containerd: shared().address, namespace })
  const dockerd = yield* startDockerd(shared().address, { archive: shared().fixtureArchive, name: FIXTURE_IMAGE }).pipe(Effect.orDie)
  if (Option.isNone(dockerd)) yield* Effect.logWarning("dockerd (or skopeo) is not installed: only our daemon's half runs")
  const all: Array<EngineUnderTest> = [{ name: "ours", socket: ours.socket }]
  if (Option.isSome(dockerd)) all.push({ name: "dockerd", socket: dockerd.value.socket })
  yield* Effect.log(`engines under test: ${all.map((engine) => engine.name).join(", ")}`)
  return all
}))

/** An answer read from a raw connection until the engine closed it. */
interface RawAnswer {
  /** The status line and headers, without the blank line. */
  readonly head: string
  /** Every byte after the head. */
  readonly body: Buffer
  /** The bytes after the head that came in the same read as its end (what a buffered reader would swallow). */
  readonly withHead: number
}

/**
 * Sends one request on a new connection (as an `Upgrade: tcp` when asked) and
 * reads until the engine closes it (10 s at most); `headed` opens once the
 * head has come.
 */
const exchange = (socket: string, method: string, path: string, body: unknown, upgrade: boolean, headed?: Latch.Latch) =>
  Effect.callback<RawAnswer, Error>((resume) => {
    const connection = net.connect(socket)
    let raw = Buffer.alloc(0)
    let headEnd = -1
    let withHead = 0
    const timer = setTimeout(() => {
      connection.destroy()
      resume(Effect.fail(new Error(`${method} ${path}: the engine did not close the connection; got ${JSON.stringify(raw.toString("latin1"))}`)))
    }, 10_000)
    connection.on("data", (chunk) => {
      raw = Buffer.concat([raw, chunk])
      if (headEnd < 0) {
        headEnd = raw.indexOf("\r\n\r\n")
        if (headEnd >= 0) {
          withHead = raw.length - headEnd - 4
          headed?.openUnsafe()
        }
      }
    })
    const done = () => {
      clearTimeout(timer)
      resume(headEnd < 0
        ? Effect.fail(new Error(`${method} ${path}: no head in ${JSON.stringify(raw.toString("latin1"))}`))
        : Effect.succeed({ head: raw.subarray(0, headEnd).toString("latin1"), body: raw.subarray(headEnd + 4), withHead }))
    }
    connection.on("close", done)
    // A plain answer (an error before the hijack) is whole at its Content-Length: the connection may be kept alive.
    connection.on("data", () => {
      const length = headEnd < 0 ? null : /\r\ncontent-length: *(\d+)/i.exec(raw.subarray(0, headEnd).toString("latin1"))
      if (length !== null && raw.length - headEnd - 4 >= Number(length[1])) connection.destroy()
    })
    connection.on("error", () => {})
    const text = body === undefined ? "" : JSON.stringify(body)
    connection.write(
      `${method} ${path} HTTP/1.1\r\nHost: docker\r\n${upgrade ? "Connection: Upgrade\r\nUpgrade: tcp\r\n" : ""}` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`
    )
    return Effect.sync(() => {
      clearTimeout(timer)
      connection.destroy()
    })
  })

/** The body of a plain answer, as JSON. */
const jsonOf = (answer: { readonly body: string }) => JSON.parse(answer.body)

/** A frame of Docker's multiplexed stream. */
const frame = (stream: 1 | 2, text: string) => {
  const payload = Buffer.from(text, "latin1")
  const header = Buffer.alloc(8)
  header[0] = stream
  header.writeUInt32BE(payload.length, 4)
  return Buffer.concat([header, payload])
}

/** Docker's multiplexed frames unwrapped: the stdout payloads, in order (fails on anything that is not a whole frame). */
const stdoutOf = (bytes: Buffer): string => {
  let text = ""
  let rest = bytes
  while (rest.length > 0) {
    assert.isAtLeast(rest.length, 8, `a whole frame header in ${JSON.stringify(bytes.toString("latin1"))}`)
    const size = rest.readUInt32BE(4)
    assert.strictEqual(rest[0], 1, `a stdout frame in ${JSON.stringify(bytes.toString("latin1"))}`)
    text += rest.subarray(8, 8 + size).toString("latin1")
    rest = rest.subarray(8 + size)
  }
  return text
}

/** The headers of a head, by lower-cased name. */
const headersOf = (head: string): Record<string, string> =>
  Object.fromEntries(head.split("\r\n").slice(1).map((line) => {
    const colon = line.indexOf(":")
    return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()]
  }))

/** The engine's API, and a running `sleep` container on it (removed with the scope). */
const withContainer = (engine: EngineUnderTest) =>
  Effect.gen(function*() {
    const request = requestOver(engine.socket)
    const created = yield* request("POST", "/v1.41/containers/create", JSON.stringify({ Image: FIXTURE_IMAGE, Cmd: ["sleep", "600"] }))
    assert.strictEqual(created.status, 201, `${engine.name}: ${created.body}`)
    const id = jsonOf(created).Id as string
    yield* Effect.addFinalizer(() => Effect.ignore(request("DELETE", `/v1.41/containers/${id}?force=1`)))
    const started = yield* request("POST", `/v1.41/containers/${id}/start`)
    assert.strictEqual(started.status, 204, `${engine.name}: ${started.body}`)
    const exec = (config: Record<string, unknown>) =>
      Effect.map(request("POST", `/v1.41/containers/${id}/exec`, JSON.stringify({ AttachStdout: true, AttachStderr: true, ...config })), (r) => {
        assert.strictEqual(r.status, 201, `${engine.name}: ${r.body}`)
        return jsonOf(r).Id as string
      })
    const inspectExec = (execId: string) => Effect.map(request("GET", `/v1.41/exec/${execId}/json`), jsonOf)
    return { id, request, exec, inspectExec }
  })

layer(EnginesLive, { timeout: 120_000, excludeTestServices: true })("exec and top, as dockerd serves them", (it) => {
  it.effect("50 of 50 execs' output reaches a client that drops what came with the 101's head, as the Python SDK does", () =>
    Effect.gen(function*() {
      for (const engine of yield* Engines) {
        const { exec } = yield* withContainer(engine)
        let lost = 0
        for (let i = 0; i < 50; i++) {
          const execId = yield* exec({ Cmd: ["echo", "hello", "world"] })
          const answer = yield* exchange(engine.socket, "POST", `/v1.41/exec/${execId}/start`, { Detach: false, Tty: false }, true)
          assert.match(answer.head, /^HTTP\/1\.1 101 /, engine.name)
          // What a buffered reader swallowed with the head is lost to a client reading the raw socket after it.
          if (answer.withHead > 0 || stdoutOf(answer.body) !== "hello world\n") lost++
        }
        assert.strictEqual(lost, 0, `${engine.name}: execs whose output came with the head, or not at all`)
      }
    }).pipe(Effect.scoped), 180_000)

  it.effect("the start request's Tty, not the exec's, decides the framing; the 101 says raw-stream before API 1.42, as dockerd", () =>
    Effect.gen(function*() {
      const heads = new Map<string, Record<string, string>>()
      for (const engine of yield* Engines) {
        const { exec } = yield* withContainer(engine)
        for (const created of [false, true]) {
          for (const started of [false, true]) {
            const execId = yield* exec({ Cmd: ["echo", "hi"], Tty: created })
            const answer = yield* exchange(engine.socket, "POST", `/v1.41/exec/${execId}/start`, { Detach: false, Tty: started }, true)
            const line = created ? "hi\r\n" : "hi\n"
            const what = `${engine.name}: exec Tty ${created}, start Tty ${started}`
            assert.strictEqual(answer.body.toString("latin1"), (started ? Buffer.from(line) : frame(1, line)).toString("latin1"), what)
            const headers = headersOf(answer.head)
            assert.strictEqual(headers["content-type"], "application/vnd.docker.raw-stream", what)
            heads.set(engine.name, headers)
          }
        }
        const stderr = yield* exec({ Cmd: ["sh", "-c", "echo oops >&2"] })
        const framed = yield* exchange(engine.socket, "POST", `/v1.41/exec/${stderr}/start`, { Detach: false, Tty: false }, true)
        assert.strictEqual(framed.body.toString("latin1"), frame(2, "oops\n").toString("latin1"), `${engine.name}: stderr is stream 2`)
        if (engine.name === "ours") {
          // From API 1.42 a multiplexed stream says so (moby's MediaTypeMultiplexedStream).
          const newer = yield* exec({ Cmd: ["echo", "hi"], Tty: true })
          const answer = yield* exchange(engine.socket, "POST", `/v1.47/exec/${newer}/start`, { Detach: false, Tty: false }, true)
          assert.strictEqual(headersOf(answer.head)["content-type"], "application/vnd.docker.multiplexed-stream")
          assert.strictEqual(answer.body.toString("latin1"), frame(1, "hi\r\n").toString("latin1"))
        }
      }
      const ours = heads.get("ours")!
      assert.deepStrictEqual(
        { connection: ours["connection"], upgrade: ours["upgrade"], ostype: ours["ostype"], "api-version": ours["api-version"] !== undefined },
        { connection: "Upgrade", upgrade: "tcp", ostype: "linux", "api-version": true }
      )
      const dockerd = heads.get("dockerd")
      if (dockerd !== undefined) assert.deepStrictEqual(Object.keys(ours).sort(), Object.keys(dockerd).sort(), "the 101's header names")
    }).pipe(Effect.scoped), 120_000)

  it.effect("a start that fails answers 101 with the runtime's message in the stream, and the exec exits 126 or 127", () =>
    Effect.gen(function*() {
      // moby since 23 (daemon/errors.go setExitCodeFromError); dockerd 20.10 overwrites every one with 126.
      const cases = [
        { config: { Cmd: ["/nonexistent"] }, exitCode: 127, message: /exec: "\/nonexistent": stat \/nonexistent: no such file or directory/ },
        { config: { Cmd: ["nonexistent"] }, exitCode: 127, message: /executable file not found in \$PATH/ },
        { config: { Cmd: ["/etc/passwd"] }, exitCode: 126, message: /exec: "\/etc\/passwd": permission denied/ },
        { config: { Cmd: ["true"], WorkingDir: "/nonexistent" }, exitCode: 127, message: /chdir to cwd \("\/nonexistent"\).*no such file or directory/ },
        {
          config: { Cmd: ["true"], WorkingDir: "/etc/passwd" },
          exitCode: 127,
          message: /not a directory: unknown: Are you trying to mount a directory onto a file \(or vice-versa\)\?/
        }
      ]
      const streams = new Map<string, Array<string>>()
      for (const engine of yield* Engines) {
        const { exec, inspectExec, request } = yield* withContainer(engine)
        const seen: Array<string> = []
        for (const { config, exitCode, message } of cases) {
          const what = `${engine.name}: ${JSON.stringify(config)}`
          const execId = yield* exec(config)
          const answer = yield* exchange(engine.socket, "POST", `/v1.41/exec/${execId}/start`, { Detach: false, Tty: false }, true)
          assert.match(answer.head, /^HTTP\/1\.1 101 /, what)
          const text = stdoutOf(answer.body)
          assert.match(text, /^OCI runtime exec failed: exec failed: unable to start container process: .*\r\n$/, what)
          assert.match(text, message, what)
          seen.push(text)
          const inspected = yield* inspectExec(execId)
          assert.deepStrictEqual(
            { ExitCode: inspected.ExitCode, Running: inspected.Running, Pid: inspected.Pid },
            { ExitCode: engine.name === "dockerd" ? 126 : exitCode, Running: false, Pid: 0 },
            what
          )
          // Started once: a second start is refused, before anything runs.
          const again = yield* request("POST", `/v1.41/exec/${execId}/start`, JSON.stringify({ Detach: true }))
          assert.strictEqual(again.status, 409, `${what}: ${again.body}`)
        }
        // With a terminal asked for by the start, the message is raw.
        const raw = yield* exec({ Cmd: ["/nonexistent"] })
        const rawAnswer = yield* exchange(engine.socket, "POST", `/v1.41/exec/${raw}/start`, { Detach: false, Tty: true }, true)
        seen.push(rawAnswer.body.toString("latin1"))
        assert.strictEqual(rawAnswer.body.toString("latin1"), seen[0], `${engine.name}: raw message`)
        // Detached, the failure is the answer: 400 with the message, as dockerd's startInvalidConfigError.
        const detached = yield* exec({ Cmd: ["/nonexistent"] })
        const answer = yield* request("POST", `/v1.41/exec/${detached}/start`, JSON.stringify({ Detach: true, Tty: false }))
        assert.deepStrictEqual([answer.status, jsonOf(answer).message], [400, seen[0]!.slice(0, -2)], engine.name)
        assert.strictEqual((yield* inspectExec(detached)).ExitCode, engine.name === "dockerd" ? 126 : 127, engine.name)
        // No exec, no 101: a 404 as dockerd's ExecExists.
        const missing = yield* exchange(engine.socket, "POST", "/v1.41/exec/nope/start", { Detach: false, Tty: false }, true)
        assert.match(missing.head, /^HTTP\/1\.1 404 /, engine.name)
        streams.set(engine.name, seen)
      }
      const dockerd = streams.get("dockerd")
      if (dockerd !== undefined) assert.deepStrictEqual(streams.get("ours"), dockerd, "the streams, byte for byte")
    }).pipe(Effect.scoped), 120_000)

  it.effect("top runs ps as dockerd does (-ef by default, ps_args honoured, its errors), and never lists runc init right after a start", () =>
    Effect.gen(function*() {
      for (const engine of yield* Engines) {
        const request = requestOver(engine.socket)
        let initSeen = 0
        for (let i = 0; i < 20; i++) {
          yield* Effect.scoped(Effect.gen(function*() {
            const { id } = yield* withContainer(engine)
            const top = yield* request("GET", `/v1.41/containers/${id}/top`)
            assert.strictEqual(top.status, 200, `${engine.name}: ${top.body}`)
            const { Processes, Titles } = jsonOf(top) as { Titles: Array<string>; Processes: Array<Array<string>> }
            assert.deepStrictEqual(Titles, ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], engine.name)
            if (Processes.some((row) => row[7]!.includes("runc init"))) initSeen++
            else assert.deepStrictEqual(Processes.map((row) => row[7]), ["sleep 600"], engine.name)
          }))
        }
        // dockerd lists whatever ps finds; ours waits for the init to exec.
        if (engine.name === "ours") assert.strictEqual(initSeen, 0, "top listed runc init")
        else yield* Effect.log(`dockerd listed runc init in ${initSeen} of 20 tops`)
        const { id } = yield* withContainer(engine)
        const aux = jsonOf(yield* request("GET", `/v1.41/containers/${id}/top?ps_args=aux`))
        assert.deepStrictEqual(aux.Titles, ["USER", "PID", "%CPU", "%MEM", "VSZ", "RSS", "TTY", "STAT", "START", "TIME", "COMMAND"], engine.name)
        assert.deepStrictEqual(aux.Processes.map((row: Array<string>) => row[10]), ["sleep 600"], engine.name)
        const seen: Array<unknown> = []
        for (const args of ["-o pid,comm", "--bogus", "-ef x=PID", "-o user"]) {
          const answer = yield* request("GET", `/v1.41/containers/${id}/top?ps_args=${encodeURIComponent(args)}`)
          const body = jsonOf(answer)
          seen.push([answer.status, answer.status === 200 ? { Titles: body.Titles, Commands: body.Processes.map((row: Array<string>) => row[1]) } : body])
        }
        assert.deepStrictEqual(seen, [
          [200, { Titles: ["PID", "COMMAND"], Commands: ["sleep"] }],
          [500, { message: "ps: error: unknown gnu long option" }],
          [500, { message: "specifying \"x=PID\" is not allowed" }],
          [500, { message: "Couldn't find PID field in ps output" }]
        ], engine.name)
      }
    }).pipe(Effect.scoped), 180_000)

  it.effect("dockerode's execs, hijacked or not: the output demultiplexed, a failed start's message and exit code", () =>
    Effect.gen(function*() {
      const promise = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: (cause) => new Error(String(cause)) })
      for (const engine of yield* Engines) {
        const docker = new Docker({ socketPath: engine.socket, version: "v1.41" })
        const { id } = yield* withContainer(engine)
        const container = docker.getContainer(id)
        // The exec's whole output, through dockerode's demultiplexer, and its exit code.
        const run = (cmd: Array<string>, hijack: boolean) =>
          Effect.gen(function*() {
            const exec = yield* promise(() => container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true }))
            const stream = yield* promise(() => exec.start({ hijack, stdin: false, Detach: false, Tty: false }) as Promise<Readable>)
            const out = new PassThrough()
            const err = new PassThrough()
            let stdout = ""
            let stderr = ""
            out.on("data", (chunk: Buffer) => void (stdout += chunk.toString("latin1")))
            err.on("data", (chunk: Buffer) => void (stderr += chunk.toString("latin1")))
            docker.modem.demuxStream(stream, out, err)
            yield* Effect.callback<void>((resume) => {
              stream.once("end", () => resume(Effect.void))
              stream.once("close", () => resume(Effect.void))
            })
            const inspected = yield* promise(() => exec.inspect())
            return { stdout, stderr, exitCode: inspected.ExitCode }
          })
        for (const hijack of [true, false]) {
          const what = `${engine.name}, hijack ${hijack}`
          assert.deepStrictEqual(yield* run(["sh", "-c", "echo out; echo err >&2; exit 3"], hijack), { stdout: "out\n", stderr: "err\n", exitCode: 3 }, what)
          const failed = yield* run(["/nonexistent"], hijack)
          assert.match(failed.stdout, /^OCI runtime exec failed: .*no such file or directory: unknown\r\n$/, what)
          assert.deepStrictEqual([failed.stderr, failed.exitCode], ["", engine.name === "dockerd" ? 126 : 127], what)
        }
      }
    }).pipe(Effect.scoped), 120_000)

  it.effect("attach before start, docker run's path: the 101 comes alone, then the run's output, framed; its head as dockerd's", () =>
    Effect.gen(function*() {
      const heads = new Map<string, Record<string, string>>()
      for (const engine of yield* Engines) {
        const request = requestOver(engine.socket)
        for (const tty of [false, true]) {
          const created = yield* request("POST", "/v1.41/containers/create", JSON.stringify({ Image: FIXTURE_IMAGE, Cmd: ["echo", "hi"], Tty: tty }))
          const id = jsonOf(created).Id as string
          yield* Effect.addFinalizer(() => Effect.ignore(request("DELETE", `/v1.41/containers/${id}?force=1`)))
          const headed = Latch.makeUnsafe(false)
          const attached = yield* Effect.forkScoped(
            exchange(engine.socket, "POST", `/v1.41/containers/${id}/attach?stream=1&stdout=1&stderr=1`, undefined, true, headed)
          )
          // The run starts once the attach has its 101, as the CLI starts it.
          yield* headed.await
          const started = yield* request("POST", `/v1.41/containers/${id}/start`)
          assert.strictEqual(started.status, 204, `${engine.name}: ${started.body}`)
          const answer = yield* Fiber.join(attached)
          const what = `${engine.name}, Tty ${tty}`
          assert.match(answer.head, /^HTTP\/1\.1 101 /, what)
          assert.strictEqual(answer.withHead, 0, `${what}: output came with the head`)
          assert.strictEqual(answer.body.toString("latin1"), tty ? "hi\r\n" : frame(1, "hi\n").toString("latin1"), what)
          const headers = headersOf(answer.head)
          assert.strictEqual(headers["content-type"], "application/vnd.docker.raw-stream", what)
          heads.set(engine.name, headers)
        }
      }
      const dockerd = heads.get("dockerd")
      if (dockerd !== undefined) assert.deepStrictEqual(Object.keys(heads.get("ours")!).sort(), Object.keys(dockerd).sort(), "the 101's header names")
    }).pipe(Effect.scoped), 120_000)
})
