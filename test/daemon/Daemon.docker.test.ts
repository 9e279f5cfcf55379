/**
 * The daemon as users meet it: a real process on a temporary socket, driven by
 * the unmodified docker CLI, over the real containerd (the shared one, in a
 * namespace of the test's own) and a real registry.
 */
import { assert, describe, it } from "@effect/vitest"
import { type Duration, Effect, Schedule } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { Containerd } from "../../src/services/Containerd.ts"
import { runDaemonCommand, startDaemon } from "../support/DaemonHarness.ts"
import { buildLayeredImage, FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { startRegistry } from "../support/RegistryHarness.ts"
import { importFixture, shared, sharedClient, uniqueNamespace } from "../support/SharedContainerd.ts"

const eventually = <E>(check: Effect.Effect<boolean, E>, within: Duration.Input = "15 seconds") =>
  check.pipe(Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (ok) => ok }), Effect.timeout(within))

/** A daemon over the shared containerd with the fixture image in its namespace. */
const setup = (options?: { readonly insecureRegistries?: ReadonlyArray<string> }) =>
  Effect.gen(function*() {
    const namespace = uniqueNamespace("dockerd")
    yield* importFixture(namespace)
    const daemon = yield* startDaemon({ containerd: shared().address, namespace, ...options })
    /** Runs the docker CLI and fails the test with its output if it fails. */
    const docker = (...args: ReadonlyArray<string>) =>
      Effect.flatMap(daemon.docker(args), (r) =>
        r.code === 0
          ? Effect.succeed(r.stdout.trim())
          : Effect.die(new Error(`docker ${args.join(" ")} exited with ${r.code}: ${r.stderr}\n${daemon.output()}`)))
    const inspect = (ref: string) =>
      Effect.map(docker("inspect", ref), (out) => (JSON.parse(out) as Array<Record<string, any>>)[0]!)
    return { namespace, daemon, docker, inspect }
  })

describe("the daemon, driven by the docker CLI", () => {
  it.live("an image in use by a container is not removed: stopped (unless forced) or running (even forced)", () =>
    Effect.gen(function*() {
      const { daemon, docker } = yield* setup()
      const imageId = yield* docker("image", "inspect", "--format", "{{.Id}}", FIXTURE_IMAGE)
      const stopped = yield* docker("create", FIXTURE_IMAGE, "true")
      const refused = yield* daemon.docker(["rmi", imageId])
      assert.strictEqual(refused.code, 1)
      assert.include(refused.stderr, `image is being used by stopped container ${stopped.slice(0, 12)}`)
      const running = yield* docker("run", "-d", FIXTURE_IMAGE, "sleep", "60")
      const forced = yield* daemon.docker(["rmi", "-f", imageId])
      assert.strictEqual(forced.code, 1)
      assert.include(forced.stderr, `image is being used by running container ${running.slice(0, 12)}`)
      yield* docker("rm", "-f", stopped, running)
    }).pipe(Effect.scoped), 60_000)

  it.live("version, pull with progress, run -d, ps, inspect, stop, kill, wait, rm -f, events in order", () =>
    Effect.gen(function*() {
      const registry = yield* startRegistry
      const { daemon, docker, inspect } = yield* setup({ insecureRegistries: [registry.host] })
      // busybox and a layer no daemon has seen, so the pull really downloads and extracts.
      const image = yield* buildLayeredImage(daemon.dir, { name: "fixture/busybox:v1", layers: 1, layerSize: 256 * 1024 })
      const reference = yield* registry.push(image.archive, "fixture/busybox", "v1")

      const version = JSON.parse(yield* docker("version", "--format", "{{json .}}")) as Record<string, any>
      assert.strictEqual(version.Server.Components[0].Name, "Engine")
      assert.include(version.Server.Components.map((c: { Name: string }) => c.Name), "containerd")
      assert.strictEqual(version.Server.ApiVersion, "1.47")

      const pulled = yield* daemon.docker(["pull", reference])
      assert.strictEqual(pulled.code, 0, pulled.stderr)
      assert.match(pulled.stdout, /Pull complete/)
      assert.match(pulled.stdout, /Digest: sha256:[0-9a-f]{64}/)
      assert.match(pulled.stdout, /Downloaded newer image for/)
      assert.include(yield* docker("images", "--format", "{{.Repository}}:{{.Tag}}"), `${registry.host}/fixture/busybox:v1`)
      yield* docker("tag", reference, "local/copy:1")
      const inspected = JSON.parse(yield* docker("image", "inspect", "local/copy:1")) as Array<{ Id: string; RepoTags: Array<string> }>
      assert.includeMembers(inspected[0]!.RepoTags, ["local/copy:1", `${registry.host}/fixture/busybox:v1`])
      assert.match(yield* docker("rmi", "local/copy:1"), /Untagged: local\/copy:1/)
      assert.notInclude(yield* docker("images", "--format", "{{.Repository}}:{{.Tag}}"), "local/copy:1")

      const since = String(Date.now() / 1000)
      const id = yield* docker("run", "-d", "--name", "web", "--label", "app=web", reference, "sleep", "300")
      assert.match(id, /^[0-9a-f]{64}$/)
      assert.include(yield* docker("ps", "--format", "{{.Names}} {{.Status}}"), "web Up")
      const running = yield* inspect("web")
      assert.deepStrictEqual(
        [running.State.Status, running.State.Running, running.State.Paused, running.State.OOMKilled],
        ["running", true, false, false]
      )
      assert.isAbove(running.State.Pid, 0)
      assert.notStrictEqual(running.State.StartedAt, "0001-01-01T00:00:00Z")
      assert.strictEqual(running.Name, "/web")
      assert.deepStrictEqual(running.Config.Labels, { app: "web" })

      // sleep as PID 1 ignores SIGTERM: stop waits its timeout, then SIGKILLs.
      const stopStarted = Date.now()
      yield* docker("stop", "-t", "1", "web")
      assert.isAtLeast(Date.now() - stopStarted, 900)
      const stopped = yield* inspect("web")
      assert.deepStrictEqual([stopped.State.Status, stopped.State.Running, stopped.State.ExitCode], ["exited", false, 137])
      assert.notStrictEqual(stopped.State.FinishedAt, "0001-01-01T00:00:00Z")

      yield* docker("start", "web")
      yield* docker("kill", "web")
      assert.strictEqual(yield* docker("wait", "web"), "137")

      const seven = yield* docker("run", "-d", FIXTURE_IMAGE, "sh", "-c", "sleep 0.2; exit 7")
      assert.strictEqual(yield* docker("wait", seven), "7")
      assert.strictEqual((yield* inspect(seven)).State.ExitCode, 7)

      yield* docker("start", "web")
      yield* docker("rm", "-f", "web")
      const gone = yield* daemon.docker(["inspect", "web"])
      assert.notStrictEqual(gone.code, 0)
      assert.match(gone.stderr, /No such (object|container)/)

      const until = String(Date.now() / 1000 + 0.5)
      const events = yield* docker("events", "--since", since, "--until", until, "--filter", `container=${seven}`, "--format", "{{.Action}} {{index .Actor.Attributes \"exitCode\"}}")
      assert.deepStrictEqual(events.split("\n").map((l) => l.trim()), ["create", "start", "die 7"])
      const webEvents = yield* docker("events", "--since", since, "--until", until, "--filter", "container=web", "--format", "{{.Action}}")
      const actions = webEvents.split("\n")
      assert.deepStrictEqual(actions.slice(0, 2), ["create", "start"])
      assert.strictEqual(actions.at(-1), "destroy")
      assert.include(actions, "die")
    }).pipe(Effect.scoped), 120_000)

  it.live("restart policy on-failure:2 restarts twice; an OOM-killed container shows OOMKilled", () =>
    Effect.gen(function*() {
      const { docker, inspect } = yield* setup()
      const flaky = yield* docker("run", "-d", "--restart", "on-failure:2", FIXTURE_IMAGE, "sh", "-c", "exit 3")
      yield* eventually(Effect.map(inspect(flaky), (c) => c.RestartCount === 2 && c.State.Status === "exited"))
      yield* Effect.sleep("1 second")
      const done = yield* inspect(flaky)
      assert.deepStrictEqual([done.RestartCount, done.State.ExitCode, done.HostConfig.RestartPolicy.Name], [2, 3, "on-failure"])

      const hog = yield* docker(
        "run", "-d", "-m", "16m", FIXTURE_IMAGE, "sh", "-c", "sleep 0.3; a=$(head -c 64000000 /dev/zero | tr '\\0' x)"
      )
      assert.strictEqual(yield* docker("wait", hog), "137")
      const killed = yield* inspect(hog)
      assert.deepStrictEqual([killed.State.OOMKilled, killed.State.ExitCode], [true, 137])
    }).pipe(Effect.scoped), 120_000)

  it.live("a daemon restart keeps a running container; an --rm container that exited meanwhile is removed at start", () =>
    Effect.gen(function*() {
      const { daemon, docker, inspect, namespace } = yield* setup()
      const keeper = yield* docker("run", "-d", "--name", "keeper", FIXTURE_IMAGE, "sleep", "300")
      const pid = (yield* inspect("keeper")).State.Pid as number
      const brief = yield* docker("run", "-d", "--rm", FIXTURE_IMAGE, "sleep", "1")
      yield* daemon.stop
      yield* Effect.sleep("1500 millis")
      yield* daemon.start
      const kept = yield* inspect(keeper)
      assert.deepStrictEqual([kept.State.Status, kept.State.Pid], ["running", pid])
      yield* eventually(Effect.map(daemon.docker(["inspect", brief]), (r) => r.code !== 0))
      const { containers } = yield* Effect.flatMap(Containerd, (c) => c.containers.list({})).pipe(
        Effect.provide(sharedClient(namespace))
      )
      assert.deepStrictEqual(containers.map((c) => c.id), [keeper])
      yield* docker("rm", "-f", "keeper")
    }).pipe(Effect.scoped), 120_000)

  it.live("bad input gets Docker's status and a message, and creates nothing", () =>
    Effect.gen(function*() {
      const { daemon, docker, namespace } = yield* setup()
      const post = (p: string, body: string) => daemon.request("POST", p, body)
      const cases: Array<[string, string, number, RegExp]> = [
        ["/v1.47/containers/create", "{not json", 400, /./],
        ["/v1.47/containers/create", JSON.stringify({ Image: FIXTURE_IMAGE, Cmd: 42 }), 400, /Cmd/],
        ["/v1.47/containers/create?name=bad%20name!", JSON.stringify({ Image: FIXTURE_IMAGE }), 400, /Invalid container name/],
        ["/v1.47/containers/create", JSON.stringify({ Image: "nosuch/thing:v1" }), 404, /No such image/]
      ]
      for (const [p, body, status, message] of cases) {
        const response = yield* post(p, body)
        assert.strictEqual(response.status, status, response.body)
        assert.match((JSON.parse(response.body) as { message: string }).message, message)
      }
      yield* docker("create", "--name", "taken", FIXTURE_IMAGE, "true")
      const dup = yield* daemon.docker(["create", "--name", "taken", FIXTURE_IMAGE, "true"])
      assert.notStrictEqual(dup.code, 0)
      assert.match(dup.stderr, /already in use/)
      yield* docker("run", "-d", "--name", "busy", FIXTURE_IMAGE, "sleep", "300")
      const rm = yield* daemon.docker(["rm", "busy"])
      assert.notStrictEqual(rm.code, 0)
      assert.match(rm.stderr, /cannot remove a running container/)
      const { containers } = yield* Effect.flatMap(Containerd, (c) => c.containers.list({})).pipe(
        Effect.provide(sharedClient(namespace))
      )
      assert.strictEqual(containers.length, 2, "only taken and busy exist")
      yield* docker("rm", "-f", "busy", "taken")
    }).pipe(Effect.scoped), 120_000)

  it.live("without --containerd the daemon starts its own containerd and stops it on shutdown; a second daemon on its data root or socket is refused", () =>
    Effect.gen(function*() {
      const daemon = yield* startDaemon({ namespace: "effect-containerd" })
      const ping = yield* daemon.request("GET", "/_ping")
      assert.strictEqual(ping.status, 200)
      const pidFile = path.join(daemon.dataRoot, "containerd", "containerd.pid")
      const pid = Number(fs.readFileSync(pidFile, "utf8"))
      assert.doesNotThrow(() => process.kill(pid, 0))
      const info = JSON.parse((yield* daemon.request("GET", "/info")).body) as Record<string, unknown>
      assert.strictEqual(info.Containers, 0)

      // A second daemon on the same data root, or on the same socket, is refused
      // before it touches anything; the first one serves on, with the same containerd.
      const otherSocket = path.join(daemon.dir, "second.sock")
      const otherRoot = path.join(daemon.dir, "second-data")
      const sameRoot = yield* runDaemonCommand(["--host", otherSocket, "--data-root", daemon.dataRoot])
      assert.notStrictEqual(sameRoot.code, 0)
      assert.include(sameRoot.output, `another effect-containerd daemon is running with the data root ${daemon.dataRoot}`)
      const sameSocket = yield* runDaemonCommand(["--host", daemon.socket, "--data-root", otherRoot])
      assert.notStrictEqual(sameSocket.code, 0)
      assert.include(sameSocket.output, `another daemon is starting or listening on ${daemon.socket}`)
      assert.isFalse(fs.existsSync(otherSocket) || fs.existsSync(otherRoot), "the refused daemons created nothing")
      assert.strictEqual((yield* daemon.request("GET", "/_ping")).status, 200)
      assert.strictEqual(Number(fs.readFileSync(pidFile, "utf8")), pid)

      yield* daemon.stop
      assert.throws(() => process.kill(pid, 0))
      assert.isFalse(fs.existsSync(daemon.socket), "the API socket is removed")
      assert.isFalse(fs.existsSync(path.join(daemon.dataRoot, "containerd", "containerd.sock")))
    }).pipe(Effect.scoped), 120_000)
})
