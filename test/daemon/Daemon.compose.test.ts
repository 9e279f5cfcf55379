/**
 * docker-compose 1.29 (Debian's, unmodified) against the daemon, as someone's
 * application would use it (`compose/docker-compose.yml`): a web server on a
 * user network with a published port, its pages on a named volume and a
 * healthcheck, and a client that compose starts only once the server is
 * healthy and that reaches it by its service name. `up -d`, `ps`, `logs`,
 * `exec`, `port`, `up -d --force-recreate` (the volume's page survives) and
 * `down -v`, after which nothing of the project is left: no container, network
 * or volume.
 *
 * Nothing leaves this machine: the image is the fixture, imported into the
 * daemon's namespace beforehand (compose only inspects it), the network is on
 * the daemon's private pool and the port is reached on 127.0.0.1.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as http from "node:http"
import * as path from "node:path"
import { type DaemonInstance, startDaemon } from "../support/DaemonHarness.ts"
import { eventually } from "../support/Engines.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { importFixture, shared, uniqueNamespace } from "../support/SharedContainerd.ts"

const COMPOSE_FILE = path.join(import.meta.dirname, "compose", "docker-compose.yml")
const PROJECT = "ectrapp"

/** `docker-compose ARGS` of the project against `daemon`: its stdout; a failure fails the test with its stderr. */
const compose = (daemon: DaemonInstance, ...args: ReadonlyArray<string>) =>
  Effect.callback<string>((resume) => {
    const child = execFile(
      "docker-compose",
      ["-f", COMPOSE_FILE, "-p", PROJECT, ...args],
      {
        env: {
          PATH: process.env["PATH"] ?? "/usr/bin:/bin",
          DOCKER_HOST: `unix://${daemon.socket}`,
          DOCKER_CONFIG: path.join(daemon.dir, "docker-config"),
          FIXTURE_IMAGE
        },
        timeout: 60_000
      },
      (error, stdout, stderr) =>
        resume(
          error === null
            ? Effect.succeed(stdout)
            : Effect.die(new Error(`docker-compose ${args.join(" ")} failed (${error.message}): ${stderr}`))
        )
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** GET http://127.0.0.1:port/file: its body (a non-200 fails). */
const get = (port: number, file: string) =>
  Effect.callback<string, Error>((resume) => {
    const request = http.get({ host: "127.0.0.1", port, path: file, timeout: 5000 }, (response) => {
      let body = ""
      response.on("data", (chunk) => void (body += chunk))
      response.on("end", () =>
        resume(response.statusCode === 200 ? Effect.succeed(body) : Effect.fail(new Error(`GET ${file}: ${response.statusCode}`))))
    })
    request.on("timeout", () => request.destroy(new Error("timeout")))
    request.on("error", (error) => resume(Effect.fail(error)))
  })

/** A GET of the API whose answer is JSON. */
const json = (daemon: DaemonInstance, urlPath: string) =>
  Effect.map(Effect.orDie(daemon.request("GET", `/v1.41${urlPath}`)), (r) => JSON.parse(r.body))

/** The project's containers (all of them), as `docker ps -a` filtered by compose's project label. */
const projectContainers = (daemon: DaemonInstance) =>
  json(
    daemon,
    `/containers/json?all=1&filters=${encodeURIComponent(JSON.stringify({ label: [`com.docker.compose.project=${PROJECT}`] }))}`
  ) as Effect.Effect<ReadonlyArray<{ readonly Id: string; readonly Labels: Record<string, string>; readonly State: string }>>

describe("docker-compose 1.29 against the daemon", () => {
  it.live("up -d, ps, logs, exec, port, up -d --force-recreate keeping the volume, down -v leaving nothing", () =>
    Effect.gen(function*() {
      const namespace = uniqueNamespace("compose")
      yield* importFixture(namespace)
      const daemon = yield* startDaemon({ containerd: shared().address, namespace })

      yield* compose(daemon, "up", "-d")
      // compose started the client only after the web server's healthcheck passed.
      const web = yield* json(daemon, `/containers/${PROJECT}_web_1/json`)
      assert.strictEqual(web.State.Health.Status, "healthy")
      const ps = yield* compose(daemon, "ps")
      assert.match(ps, new RegExp(`${PROJECT}_web_1 .*Up \\(healthy\\)`))
      assert.match(ps, new RegExp(`${PROJECT}_client_1 .*Up`))

      const published = (yield* compose(daemon, "port", "web", "80")).trim()
      const port = Number(published.split(":").at(-1))
      const page = yield* get(port, "/index.html")
      assert.match(page, /^first run [0-9a-f-]{36}\n$/)

      // The client reaches the server by its service name on the project's network.
      yield* eventually(
        "the client's copy of the page, fetched from http://web/",
        Effect.map(Effect.orElseSucceed(compose(daemon, "exec", "-T", "client", "cat", "/tmp/page"), () => ""), (got) => got === page)
      )
      assert.include(yield* compose(daemon, "logs", "web"), "serving")

      const before = (yield* projectContainers(daemon)).map((c) => c.Id)
      yield* compose(daemon, "up", "-d", "--force-recreate")
      const after = yield* projectContainers(daemon)
      assert.strictEqual(after.length, 2)
      assert.isTrue(after.every((c) => !before.includes(c.Id) && c.State === "running"), "every container was recreated")
      const republished = Number((yield* compose(daemon, "port", "web", "80")).trim().split(":").at(-1))
      assert.strictEqual(yield* get(republished, "/index.html"), page, "the page on the named volume survived the recreate")

      yield* compose(daemon, "down", "-v")
      assert.deepStrictEqual(yield* projectContainers(daemon), [])
      const networks = (yield* json(daemon, "/networks")) as ReadonlyArray<{ readonly Name: string }>
      assert.deepStrictEqual(networks.filter((n) => n.Name.startsWith(PROJECT)), [])
      const volumes = (yield* json(daemon, "/volumes")) as { readonly Volumes: ReadonlyArray<{ readonly Name: string }> }
      assert.deepStrictEqual(volumes.Volumes.filter((v) => v.Name.startsWith(PROJECT)), [])
    }).pipe(Effect.scoped), { timeout: 90_000 })
})
