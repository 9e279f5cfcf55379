/**
 * Testcontainers for Node (npm `testcontainers`, unmodified) against the
 * daemon, as a test suite of someone else's would use it: a `GenericContainer`
 * of the fixture image with an exposed port, started behind an HTTP wait
 * strategy, then `copyFilesToContainer`, `exec`, `logs` and `stop`.
 *
 * Nothing leaves this machine: the image is imported into the daemon's
 * namespace beforehand (Testcontainers' pull policy then only inspects it),
 * Ryuk is disabled (its image is on Docker Hub), and the host is given as
 * 127.0.0.1 (inside a container, as here, Testcontainers would otherwise look
 * for the bridge's gateway or run `alpine` to find one). The daemon's request
 * log shows that no pull was asked for.
 */
import { assert, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import type { Readable } from "node:stream"
import { GenericContainer, type StartedTestContainer, Wait } from "testcontainers"
import { type DaemonInstance, startDaemon } from "../support/DaemonHarness.ts"
import { eventually } from "../support/Engines.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { importFixture, shared, uniqueNamespace } from "../support/SharedContainerd.ts"

const promise = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: (cause) => cause })

/** The daemon Testcontainers talks to (through the environment it reads once, at its first call). */
class Daemon extends Context.Service<Daemon, DaemonInstance>()("test/Testcontainers/Daemon") {}

const daemonLayer = Layer.effect(
  Daemon,
  Effect.gen(function*() {
    const namespace = uniqueNamespace("testcontainers")
    yield* importFixture(namespace)
    // A default bridge, as a container Testcontainers makes runs on it; debug for the request log.
    const daemon = yield* startDaemon({ containerd: shared().address, namespace, bridge: true, flags: ["--log-level", "debug"] })
    Object.assign(process.env, {
      DOCKER_HOST: `unix://${daemon.socket}`,
      DOCKER_CONFIG: path.join(daemon.dir, "docker-config"),
      TESTCONTAINERS_RYUK_DISABLED: "true",
      TESTCONTAINERS_HOST_OVERRIDE: "127.0.0.1"
    })
    return daemon
  })
)

/** GET http://127.0.0.1:port/file: status and body. */
const get = (port: number, file: string) =>
  Effect.callback<{ readonly status: number; readonly body: string }, Error>((resume) => {
    const request = http.get({ host: "127.0.0.1", port, path: file, timeout: 5000 }, (response) => {
      let body = ""
      response.on("data", (chunk) => void (body += chunk))
      response.on("end", () => resume(Effect.succeed({ status: response.statusCode ?? 0, body })))
    })
    request.on("timeout", () => request.destroy(new Error("timeout")))
    request.on("error", (error) => resume(Effect.fail(error)))
  })

/** Everything a log stream has delivered so far, collected as it comes; the stream is destroyed with the scope. */
const collect = (stream: Readable) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const seen = { text: "" }
      stream.on("data", (chunk) => void (seen.text += String(chunk)))
      return seen
    }),
    () => Effect.sync(() => stream.destroy())
  )

layer(daemonLayer, { excludeTestServices: true, timeout: 60_000 })("Testcontainers for Node against the daemon", (it) => {
  it.effect("GenericContainer: exposed port behind Wait.forHttp, copyFilesToContainer, exec, logs, stop; no pull, no Ryuk", () =>
    Effect.gen(function*() {
      const daemon = yield* Daemon
      const started: StartedTestContainer = yield* promise(() =>
        new GenericContainer(FIXTURE_IMAGE)
          .withCommand(["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && echo serving; exec httpd -f -p 8080 -h /www"])
          .withExposedPorts(8080)
          .withWaitStrategy(Wait.forHttp("/index.html", 8080).forStatusCode(200))
          .withStartupTimeout(20_000)
          .start()
      )
      const port = started.getMappedPort(8080)
      assert.strictEqual(started.getHost(), "127.0.0.1")
      assert.deepStrictEqual(yield* get(port, "/index.html"), { status: 200, body: "hello\n" })

      // copyFilesToContainer: a PUT of a tar to the container's archive route; the server serves the file at once.
      const source = path.join(daemon.dir, "copied.html")
      fs.writeFileSync(source, "copied in\n")
      yield* promise(() => started.copyFilesToContainer([{ source, target: "/www/copied.html" }]))
      assert.deepStrictEqual(yield* get(port, "/copied.html"), { status: 200, body: "copied in\n" })

      const exec = yield* promise(() => started.exec(["sh", "-c", "echo out; echo err >&2; exit 3"]))
      assert.deepStrictEqual({ exitCode: exec.exitCode, stdout: exec.stdout, stderr: exec.stderr }, {
        exitCode: 3,
        stdout: "out\n",
        stderr: "err\n"
      })

      yield* Effect.scoped(Effect.gen(function*() {
        const logs = yield* collect(yield* promise(() => started.logs()))
        yield* eventually("the container's output in its logs", Effect.sync(() => logs.text.includes("serving\n")))
      }))

      const id = started.getId()
      yield* promise(() => started.stop())
      const left = yield* daemon.request("GET", `/v1.41/containers/json?all=1`)
      assert.deepStrictEqual(JSON.parse(left.body), [], "stop removed the container")
      assert.strictEqual((yield* daemon.request("GET", `/v1.41/containers/${id}/json`)).status, 404)

      const requests = daemon.output().split("\n").filter((line) => / (GET|HEAD|POST|PUT|DELETE) \//.test(line))
      assert.isTrue(requests.some((line) => line.includes("/containers/create")), "the request log is read")
      assert.deepStrictEqual(requests.filter((line) => line.includes("/images/create")), [], "no pull was asked for")
    }))
})
