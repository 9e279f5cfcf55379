/**
 * Registry login and private pulls against a real `docker-registry` with
 * htpasswd auth: bad auth configs are 400s, `docker login` with a wrong
 * password fails with the registry's refusal and stores nothing, with the right
 * one succeeds, and only then does `docker pull` of a private image work (the
 * CLI sends the stored credentials in `X-Registry-Auth`); dockerode's
 * `authconfig` pulls too. The credentials are per request: an anonymous pull
 * after them is still refused, and the daemon's debug log never shows them.
 */
import { assert, describe, it } from "@effect/vitest"
import Docker from "dockerode"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { startDaemon } from "../support/DaemonHarness.ts"
import { buildLayeredImage } from "../support/FixtureImage.ts"
import { REGISTRY_CREDENTIALS, startRegistryWith } from "../support/RegistryHarness.ts"
import { shared, uniqueNamespace } from "../support/SharedContainerd.ts"

const promise = <A>(f: () => Promise<A>) => Effect.tryPromise({ try: f, catch: (cause) => cause })

/** One POST with extra headers: its status and body. */
const post = (socket: string, urlPath: string, headers: Record<string, string>, body?: string) =>
  Effect.callback<{ status: number; body: string }>((resume) => {
    const req = http.request({ socketPath: socket, method: "POST", path: urlPath, headers, agent: false }, (res) => {
      let text = ""
      res.setEncoding("utf8")
      res.on("data", (chunk) => void (text += chunk))
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, body: text })))
    })
    req.on("error", (cause) => resume(Effect.die(cause)))
    req.end(body)
  })

const base64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url")

describe("registry login and private pulls", () => {
  it.live("bad auth is a 400; login wrong then right; private pull only with the credentials, which are never logged nor kept", () =>
    Effect.gen(function*() {
      const registry = yield* startRegistryWith({ auth: true })
      const namespace = uniqueNamespace("auth")
      const daemon = yield* startDaemon({ containerd: shared().address, namespace, flags: ["--log-level", "debug"] })
      const image = yield* buildLayeredImage(daemon.dir, { name: "private/app:v1", layers: 1, layerSize: 64 * 1024 })
      const reference = yield* registry.push(image.archive, "private/app", "v1")
      const { username, password } = REGISTRY_CREDENTIALS
      const json = { "content-type": "application/json" }

      // Bad input: a body that is no auth config, a token this daemon does not honour, a header that is not base64 JSON.
      const notObject = yield* post(daemon.socket, "/v1.41/auth", json, "[1]")
      assert.strictEqual(notObject.status, 400)
      assert.include(notObject.body, "the auth config is not a JSON object")
      const badField = yield* post(daemon.socket, "/v1.41/auth", json, JSON.stringify({ username: 5 }))
      assert.strictEqual(badField.status, 400)
      assert.include(badField.body, "username is not a string")
      const token = yield* post(daemon.socket, "/v1.41/auth", json, JSON.stringify({ identitytoken: "abc", serveraddress: registry.host }))
      assert.strictEqual(token.status, 400)
      assert.include(token.body, "identity and registry tokens are not supported by effect-containerd")
      const badHeader = yield* post(daemon.socket, `/v1.41/images/create?fromImage=${encodeURIComponent(reference)}`, {
        "x-registry-auth": "%%%"
      })
      assert.strictEqual(badHeader.status, 400)
      assert.include(badHeader.body, "invalid X-Registry-Auth header: not base64")

      // Anonymous: refused by the registry, in dockerd's words.
      const anonymous = yield* daemon.docker(["pull", reference])
      assert.strictEqual(anonymous.code, 1)
      assert.include(anonymous.stderr, "pull access denied for")
      assert.include(anonymous.stderr, "may require 'docker login'")

      const wrong = yield* daemon.docker(["login", registry.host, "-u", username, "--password-stdin"], { input: "wrong-password\n" })
      assert.strictEqual(wrong.code, 1, wrong.stdout)
      assert.include(wrong.stderr, `login attempt to http://${registry.host}/v2/ failed with status: 401 Unauthorized`)
      const configFile = path.join(daemon.dir, "docker-config", "config.json")
      const storedAfterWrong = fs.existsSync(configFile) ? fs.readFileSync(configFile, "utf8") : ""
      assert.notInclude(storedAfterWrong, registry.host, "a refused login stores nothing")

      const right = yield* daemon.docker(["login", registry.host, "-u", username, "--password-stdin"], { input: `${password}\n` })
      assert.strictEqual(right.code, 0, right.stderr)
      assert.include(right.stdout, "Login Succeeded")

      const pulled = yield* daemon.docker(["pull", reference])
      assert.strictEqual(pulled.code, 0, pulled.stderr)
      assert.include(pulled.stdout, "Downloaded newer image for")
      const images = yield* daemon.docker(["images", "--format", "{{.Repository}}:{{.Tag}}"])
      assert.include(images.stdout, `${registry.host}/private/app:v1`)

      // The credentials were the pull's own: an anonymous pull right after is refused again.
      const after = yield* post(daemon.socket, `/v1.41/images/create?fromImage=${encodeURIComponent(reference)}`, {})
      assert.strictEqual(after.status, 404)
      assert.include(after.body, "pull access denied")
      // dockerode's authconfig (the header in URL-safe base64 JSON): a second user of the same credentials.
      const docker = new Docker({ socketPath: daemon.socket })
      const stream = yield* promise(() =>
        docker.pull(reference, { authconfig: { username, password, serveraddress: registry.host } }) as Promise<NodeJS.ReadableStream>
      )
      const messages = yield* promise(() =>
        new Promise<Array<{ status?: string; error?: string }>>((resolve, reject) =>
          docker.modem.followProgress(stream, (error, output) => error ? reject(error) : resolve(output))
        )
      )
      assert.isTrue(messages.every((m) => m.error === undefined), JSON.stringify(messages))
      // The CLI's `auth` field (base64 user:password) stands for them too.
      const viaAuth = yield* post(daemon.socket, `/v1.41/images/create?fromImage=${encodeURIComponent(reference)}`, {
        "x-registry-auth": base64url({ auth: Buffer.from(`${username}:${password}`).toString("base64") })
      })
      assert.strictEqual(viaAuth.status, 200, viaAuth.body)
      assert.notInclude(viaAuth.body, "error")

      const log = daemon.output()
      assert.include(log, "images/create", "the debug log shows requests")
      for (const secret of [password, Buffer.from(`${username}:${password}`).toString("base64")]) {
        assert.notInclude(log, secret, "the daemon's log never shows a credential")
      }
      for (const file of walk(daemon.dataRoot)) {
        if (fs.statSync(file).size < 1024 * 1024) assert.notInclude(fs.readFileSync(file, "latin1"), password, `${file} holds the password`)
      }
    }).pipe(Effect.scoped), 60_000)
})

/** Every file under `dir` (sockets and FIFOs left out). */
const walk = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name)
    return entry.isDirectory() ? walk(full) : entry.isFile() ? [full] : []
  })
