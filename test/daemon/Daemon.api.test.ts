/**
 * What the daemon's API says about what it does not do, and the detach keys,
 * against the real daemon over its unix socket: the docker CLI printing the
 * refusal of a route not served here (plugins) and of a swarm route; a refused
 * route's large body read before the answer; and an attach, hijacked as the CLI
 * does, that ends on Ctrl-P Ctrl-Q (or the keys asked for) while the container
 * keeps running.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schedule } from "effect"
import { execFileSync } from "node:child_process"
import * as net from "node:net"
import { startDaemon } from "../support/DaemonHarness.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { importFixture, shared, uniqueNamespace } from "../support/SharedContainerd.ts"

const setup = Effect.gen(function*() {
  const namespace = uniqueNamespace("api")
  yield* importFixture(namespace)
  return yield* startDaemon({ containerd: shared().address, namespace })
})

/** A hijacked attach: what the daemon sent after its 101, and whether it closed the connection. */
interface Hijacked {
  readonly write: (data: string) => void
  readonly destroy: () => void
  /** The container's output so far, frames unwrapped. */
  readonly output: () => string
  readonly closed: () => boolean
  readonly head: () => string
}

/** Opens `POST path` (with a JSON `body`) with `Upgrade: tcp` over the socket, as the docker CLI attaches. */
const hijack = (socket: string, path: string, body = "") =>
  Effect.acquireRelease(
    Effect.callback<Hijacked>((resume) => {
      const connection = net.connect(socket)
      let raw = Buffer.alloc(0)
      let headEnd = -1
      let closed = false
      const hijacked: Hijacked = {
        write: (data) => void connection.write(data),
        destroy: () => void connection.destroy(),
        head: () => raw.subarray(0, Math.max(headEnd, 0)).toString("latin1"),
        closed: () => closed,
        output: () => {
          // After the head, Docker's frames: 8 bytes of header (stream, size) then the payload.
          let body = raw.subarray(headEnd + 4)
          let text = ""
          while (body.length >= 8 && body.length >= 8 + body.readUInt32BE(4)) {
            text += body.subarray(8, 8 + body.readUInt32BE(4)).toString("latin1")
            body = body.subarray(8 + body.readUInt32BE(4))
          }
          return text
        }
      }
      connection.on("data", (chunk) => {
        raw = Buffer.concat([raw, chunk])
        if (headEnd < 0) {
          headEnd = raw.indexOf("\r\n\r\n")
          if (headEnd >= 0) resume(Effect.succeed(hijacked))
        }
      })
      connection.on("close", () => void (closed = true))
      connection.on("error", () => void (closed = true))
      connection.write(
        `POST ${path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
      )
      return Effect.sync(() => connection.destroy())
    }),
    (hijacked) => Effect.sync(hijacked.destroy)
  )

/** Waits (up to 10 s) until `check` holds; else the test fails saying `what` never happened. */
const eventually = (check: () => boolean, what: string) =>
  Effect.suspend(() => check() ? Effect.void : Effect.fail(what)).pipe(
    Effect.retry({ schedule: Schedule.spaced("50 millis"), times: 200 }),
    Effect.catch((message) => Effect.die(new Error(`never: ${message}`)))
  )

describe("the daemon's API, over its socket", () => {
  it.live("the docker CLI prints the refusal of a route not served here, and of a swarm route", () =>
    Effect.gen(function*() {
      const daemon = yield* setup
      const plugins = yield* daemon.docker(["plugin", "ls"])
      assert.strictEqual(plugins.code, 1, plugins.stderr)
      assert.include(plugins.stderr, "plugins are not supported by effect-containerd")
      const nodes = yield* daemon.docker(["node", "ls"])
      assert.strictEqual(nodes.code, 1, nodes.stderr)
      assert.include(nodes.stderr, "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.")
      const leave = yield* daemon.docker(["swarm", "leave"])
      assert.strictEqual(leave.code, 1, leave.stderr)
      assert.include(leave.stderr, "This node is not part of a swarm")
      const unknown = yield* daemon.request("GET", "/v1.41/nope")
      assert.deepStrictEqual([unknown.status, JSON.parse(unknown.body)], [404, { message: "page not found" }])
    }).pipe(Effect.scoped), 120_000)

  it.live("a refused route reads a large body before it answers, so the client still sending gets the answer, upgrade or not", () =>
    Effect.gen(function*() {
      const daemon = yield* setup
      // `docker build` asks for POST /session with `Upgrade: h2c`; an upgrade request's body is left on the connection.
      for (const upgrade of ["Connection: Upgrade\r\nUpgrade: h2c\r\n", "Connection: close\r\n"]) {
        const answer = yield* Effect.callback<string>((resume) => {
          const connection = net.connect(daemon.socket)
          let received = ""
          connection.on("data", (data) => void (received += data.toString("latin1")))
          connection.on("close", () => resume(Effect.succeed(received)))
          connection.on("error", (error) => resume(Effect.succeed(`${received}\n${error.message}`)))
          // 8 MiB in 64 KiB writes: far more than the socket buffers hold.
          const chunk = Buffer.alloc(64 * 1024, 1)
          let left = 128
          connection.write(`POST /v1.41/session HTTP/1.1\r\nHost: docker\r\n${upgrade}Content-Length: ${left * chunk.length}\r\n\r\n`)
          const pump = () => {
            while (left > 0) {
              left--
              if (!connection.write(chunk)) return void connection.once("drain", pump)
            }
            // The daemon may keep the connection open after its answer; the answer is what is waited for.
            connection.end()
          }
          pump()
          return Effect.sync(() => connection.destroy())
        }).pipe(Effect.timeout("20 seconds"))
        assert.match(answer, /^HTTP\/1\.1 501 /, upgrade)
        assert.include(answer, "{\"message\":\"build sessions are not supported by effect-containerd\"}", upgrade)
      }
    }).pipe(Effect.scoped), 120_000)

  it.live("attach ends on Ctrl-P Ctrl-Q, or on the keys asked for, an exec on its DetachKeys, and the container keeps running; a broken sequence is forwarded", () =>
    Effect.gen(function*() {
      const daemon = yield* setup
      const created = yield* daemon.request("POST", "/containers/create?name=cat", JSON.stringify({ Image: FIXTURE_IMAGE, Cmd: ["cat"], OpenStdin: true }))
      assert.strictEqual(created.status, 201, created.body)
      assert.strictEqual((yield* daemon.request("POST", "/containers/cat/start")).status, 204)
      const running = () => Effect.map(daemon.request("GET", "/containers/cat/json"), (r) => JSON.parse(r.body).State.Running as boolean)

      const attached = yield* hijack(daemon.socket, "/v1.41/containers/cat/attach?stream=1&stdin=1&stdout=1&stderr=1")
      assert.match(attached.head(), /^HTTP\/1\.1 101/)
      attached.write("a\x10b\n")
      yield* eventually(() => attached.output() === "a\x10b\n", `cat echoed the broken sequence (${JSON.stringify(attached.output())})`)
      attached.write("\x10\x11")
      yield* eventually(attached.closed, "the attach ended on Ctrl-P Ctrl-Q")
      assert.isTrue(yield* running(), "the container is still running")

      const custom = yield* hijack(daemon.socket, "/containers/cat/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-x,x")
      custom.write("\x10\x11\n")
      yield* eventually(() => custom.output() === "\x10\x11\n", "Ctrl-P Ctrl-Q was forwarded when other keys are asked for")
      custom.write("\x18x")
      yield* eventually(custom.closed, "the attach ended on ctrl-x,x")
      assert.isTrue(yield* running(), "the container is still running")

      const exec = yield* daemon.request("POST", "/containers/cat/exec", JSON.stringify({
        Cmd: ["cat"], AttachStdin: true, AttachStdout: true, AttachStderr: true, DetachKeys: "ctrl-x"
      }))
      assert.strictEqual(exec.status, 201, exec.body)
      const execId = JSON.parse(exec.body).Id as string
      const execAttached = yield* hijack(daemon.socket, `/exec/${execId}/start`, JSON.stringify({ Detach: false, Tty: false }))
      execAttached.write("\x10\x11hi\n")
      yield* eventually(() => execAttached.output() === "\x10\x11hi\n", "the exec echoed its input, Ctrl-P Ctrl-Q included")
      execAttached.write("\x18")
      yield* eventually(execAttached.closed, "the exec's stream ended on its DetachKeys")
      assert.isTrue(yield* running(), "the container is still running")

      const bad = yield* daemon.request("POST", "/containers/cat/attach?stream=1&stdin=1&detachKeys=ctrl-P")
      assert.deepStrictEqual([bad.status, JSON.parse(bad.body)], [400, { message: "Invalid detach keys (ctrl-P) provided" }])
      assert.strictEqual((yield* daemon.request("DELETE", "/containers/cat?force=1")).status, 204)
    }).pipe(Effect.scoped), 120_000)

  it.live("docker run -it in a real terminal detaches on Ctrl-P Ctrl-Q; the shell keeps running and answers an exec", () =>
    Effect.gen(function*() {
      const daemon = yield* setup
      const session = `ectr-detach-${process.pid}-${Date.now()}`
      const tmux = (...args: ReadonlyArray<string>) => execFileSync("tmux", args, { encoding: "utf8" })
      const cli = `DOCKER_CONFIG=${daemon.dir} docker --host unix://${daemon.socket}`
      yield* Effect.acquireRelease(
        Effect.sync(() =>
          tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", `${cli} run -it --name shell ${FIXTURE_IMAGE} sh; echo cli-exited-$?; sleep 30`)
        ),
        () => Effect.sync(() => void execFileSync("tmux", ["kill-session", "-t", session], { stdio: "ignore" }))
      )
      const screen = () => tmux("capture-pane", "-p", "-t", session)
      yield* eventually(() => /#\s*$/m.test(screen()), "the shell's prompt")
      tmux("send-keys", "-t", session, "C-p", "C-q")
      yield* eventually(() => /cli-exited-0/.test(screen()), `the CLI detached and exited 0 (${screen()})`)
      const state = yield* daemon.docker(["inspect", "--format", "{{.State.Running}}", "shell"])
      assert.strictEqual(state.stdout.trim(), "true", state.stderr)
      const again = yield* daemon.docker(["exec", "shell", "echo", "still-here"])
      assert.strictEqual(again.stdout, "still-here\n", again.stderr)
      yield* daemon.docker(["rm", "-f", "shell"])
    }).pipe(Effect.scoped), 120_000)
})
