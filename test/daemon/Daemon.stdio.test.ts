import { BRIDGE_WARNING } from "../../src/daemon/engine/Networking.ts"
/**
 * The daemon's stdio, driven by the docker CLI: attached `docker run` (output,
 * stderr apart, exit code, stdin), `docker logs` (finished, followed, tail,
 * since, after a daemon restart, a large log rotated), `docker exec`, and
 * `docker run -it` in a real terminal (tmux).
 */
import { assert, describe, it } from "@effect/vitest"
import { type Duration, Effect, Schedule } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { startDaemon } from "../support/DaemonHarness.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { importFixture, shared, uniqueNamespace } from "../support/SharedContainerd.ts"

const eventually = <E>(check: Effect.Effect<boolean, E>, within: Duration.Input = "15 seconds") =>
  check.pipe(Effect.repeat({ schedule: Schedule.spaced("50 millis"), until: (ok) => ok }), Effect.timeout(within))

const setup = Effect.gen(function*() {
  const namespace = uniqueNamespace("stdio")
  yield* importFixture(namespace)
  const daemon = yield* startDaemon({ containerd: shared().address, namespace })
  const docker = (...args: ReadonlyArray<string>) =>
    Effect.flatMap(daemon.docker(args), (r) =>
      r.code === 0
        ? Effect.succeed(r.stdout)
        : Effect.die(new Error(`docker ${args.join(" ")} exited with ${r.code}: ${r.stderr}\n${daemon.output()}`)))
  return { daemon, docker }
})

describe("the daemon's stdio, driven by the docker CLI", () => {
  it.live("docker run --rm prints, keeps stderr apart, exits with the code, forwards stdin, leaves nothing", () =>
    Effect.gen(function*() {
      const { daemon, docker } = yield* setup
      const hello = yield* daemon.docker(["run", "--rm", FIXTURE_IMAGE, "echo", "hello"])
      assert.deepStrictEqual([hello.code, hello.stdout], [0, "hello\n"], hello.stderr)

      const mixed = yield* daemon.docker(["run", "--rm", FIXTURE_IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3"])
      // The CLI prints the create warning (test daemons run with --bridge none) before the container's stderr.
      assert.deepStrictEqual([mixed.code, mixed.stdout, mixed.stderr], [3, "out\n", `WARNING: ${BRIDGE_WARNING}\nerr\n`])
      const quiet = yield* daemon.docker(["run", "--rm", "--network", "none", "--oom-kill-disable", FIXTURE_IMAGE, "sh", "-c", "echo err >&2"])
      assert.strictEqual(quiet.code, 0)
      assert.match(quiet.stderr, /^WARNING: .*OomKillDisable.*\nerr\n$/, "docker run prints the warning for an option not honoured")

      const echoed = yield* daemon.docker(["run", "-i", "--rm", FIXTURE_IMAGE, "cat"], { input: "data\n" })
      assert.deepStrictEqual([echoed.code, echoed.stdout], [0, "data\n"], echoed.stderr)

      assert.strictEqual(yield* docker("ps", "-aq"), "", "every --rm container is gone")
    }).pipe(Effect.scoped), 120_000)

  it.live("failed attached runs (shim-logged, -i, -t) hold no file descriptor of the daemon's: no log file, no connection", () =>
    Effect.gen(function*() {
      const { daemon } = yield* setup
      const pid = daemon.pid()!
      const fds = () => fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
        try {
          return fs.readlinkSync(`/proc/${pid}/fd/${fd}`)
        } catch {
          return "(closed meanwhile)"
        }
      })
      // One run first, so what the daemon opens once (its containerd channel, the log directory) is counted.
      assert.strictEqual((yield* daemon.docker(["run", "--rm", FIXTURE_IMAGE, "true"])).code, 0)
      const before = fds().length
      for (const flags of [[], ["-i"], ["-t"]]) {
        for (let i = 0; i < 5; i++) {
          const failed = yield* daemon.docker(["run", ...flags, FIXTURE_IMAGE, "/nonexistent"])
          assert.strictEqual(failed.code, 127, `${flags.join(" ")}: ${failed.stderr}`)
        }
      }
      // 15 containers kept (not --rm): each attach ends with its failed start, releasing its connection and log.
      const settled = yield* eventually(Effect.sync(() => fds().length <= before)).pipe(Effect.option)
      const left = fds()
      assert.isTrue(settled._tag === "Some", `the daemon held ${left.length - before} more fds: ${left.join(" ")}`)
      assert.deepStrictEqual(left.filter((target) => target.startsWith(daemon.dataRoot)), [], "no log file is held open")
    }).pipe(Effect.scoped), 120_000)

  it.live("docker logs: finished, --tail, --since, -f until the container exits, and after a daemon restart", () =>
    Effect.gen(function*() {
      const { daemon, docker } = yield* setup
      const id = (yield* docker("run", "-d", FIXTURE_IMAGE, "sh", "-c", "echo a; echo b >&2; sleep 1.2; echo c")).trim()
      assert.strictEqual((yield* docker("wait", id)).trim(), "0")
      const all = yield* daemon.docker(["logs", id])
      assert.deepStrictEqual([all.stdout, all.stderr], ["a\nc\n", "b\n"])
      assert.strictEqual(yield* docker("logs", "--tail", "1", id), "c\n")
      const stamped = yield* docker("logs", "--timestamps", id)
      assert.match(stamped, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z a\n/)
      const cTime = Date.parse(stamped.split("\n").find((l) => l.endsWith(" c"))!.split(" ")[0]!)
      assert.strictEqual(yield* docker("logs", "--since", String((cTime - 500) / 1000), id), "c\n")

      const counter = (yield* docker("run", "-d", FIXTURE_IMAGE, "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.3; done"))
        .trim()
      const followed = yield* docker("logs", "-f", counter)
      assert.strictEqual(followed, "1\n2\n3\n")

      yield* daemon.stop
      yield* daemon.start
      const again = yield* daemon.docker(["logs", id])
      assert.deepStrictEqual([again.stdout, again.stderr], ["a\nc\n", "b\n"])
    }).pipe(Effect.scoped), 120_000)

  it.live("docker exec: output and exit code, stdin, 50 at once; exec, attach and logs refused where Docker refuses them", () =>
    Effect.gen(function*() {
      const { daemon, docker } = yield* setup
      yield* docker("run", "-d", "--name", "box", FIXTURE_IMAGE, "sleep", "300")
      const since = String(Date.now() / 1000)
      const one = yield* daemon.docker(["exec", "box", "sh", "-c", "echo hi; echo there >&2; exit 4"])
      assert.deepStrictEqual([one.code, one.stdout, one.stderr], [4, "hi\n", "there\n"])
      const events = (yield* docker(
        "events", "--since", since, "--until", String(Date.now() / 1000 + 0.3), "--filter", "container=box",
        "--format", "{{.Action}}|{{index .Actor.Attributes \"exitCode\"}}"
      )).trim().split("\n")
      assert.deepStrictEqual(events, [
        "exec_create: sh -c echo hi; echo there >&2; exit 4|",
        "exec_start: sh -c echo hi; echo there >&2; exit 4|",
        "exec_die|4"
      ])
      const piped = yield* daemon.docker(["exec", "-i", "box", "cat"], { input: "through\n" })
      assert.deepStrictEqual([piped.code, piped.stdout], [0, "through\n"], piped.stderr)

      const results = yield* Effect.forEach(
        Array.from({ length: 50 }, (_, i) => i),
        (i) => daemon.docker(["exec", "box", "sh", "-c", `echo ${i}; exit ${i % 3}`], { timeout: 60_000 }),
        { concurrency: "unbounded" }
      )
      results.forEach((r, i) => assert.deepStrictEqual([r.code, r.stdout], [i % 3, `${i}\n`], r.stderr))

      const stopped = yield* daemon.docker(["exec", "nosuch", "true"])
      assert.notStrictEqual(stopped.code, 0)
      assert.match(stopped.stderr, /No such container/)
      yield* docker("pause", "box")
      const paused = yield* daemon.docker(["exec", "box", "true"])
      assert.match(paused.stderr, /is paused/)
      yield* docker("unpause", "box")
      yield* docker("rm", "-f", "box")

      const exited = (yield* docker("run", "-d", FIXTURE_IMAGE, "true")).trim()
      yield* docker("wait", exited)
      const notRunning = yield* daemon.docker(["exec", exited, "true"])
      assert.deepStrictEqual([notRunning.code !== 0, /is not running/.test(notRunning.stderr)], [true, true], notRunning.stderr)
      const attachMissing = yield* daemon.docker(["attach", "nosuch"])
      assert.match(attachMissing.stderr, /No such container/)
      const logsMissing = yield* daemon.docker(["logs", "nosuch"])
      assert.match(logsMissing.stderr, /No such container/)
      yield* docker("rm", exited)
    }).pipe(Effect.scoped), 120_000)

  it.live("a container writing 100 MB with nobody attached completes; its log is whole and rotated as configured", () =>
    Effect.gen(function*() {
      const { daemon, docker } = yield* setup
      // 1,000,000 numbered lines of 100 bytes.
      const script = "awk 'BEGIN { s = sprintf(\"%91s\", \"\"); for (i = 1; i <= 1000000; i++) printf \"%08d%s\\n\", i, s }'"
      const id = (yield* docker(
        "run", "-d", "--log-opt", "max-size=10m", "--log-opt", "max-file=3", FIXTURE_IMAGE, "sh", "-c", script
      )).trim()
      assert.strictEqual((yield* docker("wait", id)).trim(), "0")
      const dir = path.join(daemon.dataRoot, "containers", id)
      const files = fs.readdirSync(dir).filter((f) => f.includes("-json.log")).sort()
      assert.deepStrictEqual(files, [`${id}-json.log`, `${id}-json.log.1`, `${id}-json.log.2`])
      for (const file of files) assert.isAtMost(fs.statSync(path.join(dir, file)).size, 10 * 1024 * 1024)
      // The rotated files are full: rotation happened at the size asked for.
      for (const file of files.slice(1)) assert.isAbove(fs.statSync(path.join(dir, file)).size, 9 * 1024 * 1024)
      // What is kept is the end of the output, without a gap.
      const lines = [2, 1, 0].flatMap((n) =>
        fs.readFileSync(path.join(dir, n === 0 ? files[0]! : `${files[0]}.${n}`), "utf8").split("\n").filter((l) => l !== "")
      ).map((l) => Number((JSON.parse(l) as { log: string }).log.slice(0, 8)))
      assert.strictEqual(lines.at(-1), 1_000_000)
      lines.forEach((n, i) => i > 0 && assert.strictEqual(n, lines[i - 1]! + 1))
      assert.isAbove(lines.length, 120_000)
      yield* docker("rm", id)
    }).pipe(Effect.scoped), 180_000)

  it.live("a container writing while the daemon is down does not block: its log is whole when the daemon is back", () =>
    Effect.gen(function*() {
      const { daemon, docker } = yield* setup
      // 5,000 lines of 80 bytes: six times a pipe's buffer, written while nobody but the shim's logger reads.
      const script = "sleep 1; i=0; while [ $i -lt 5000 ]; do printf 'line %05d %070d\\n' $i 0; i=$((i+1)); done; echo finished"
      const id = (yield* docker("run", "-d", FIXTURE_IMAGE, "sh", "-c", script)).trim()
      yield* daemon.stop
      yield* Effect.sleep("5 seconds")
      yield* daemon.start
      yield* eventually(Effect.map(daemon.docker(["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", id]), (r) =>
        r.stdout.trim() === "exited 0"))
      const lines = (yield* docker("logs", id)).split("\n").filter((l) => l !== "")
      assert.strictEqual(lines.length, 5001)
      assert.strictEqual(lines.at(-1), "finished")
      assert.strictEqual(lines[4999]!.slice(0, 10), "line 04999")
      yield* docker("rm", id)
    }).pipe(Effect.scoped), 120_000)

  it.live("docker run -it sh in a real terminal: typed commands run, their output is on the screen", () =>
    Effect.gen(function*() {
      const { daemon } = yield* setup
      const session = `ectr-${process.pid}-${Date.now()}`
      const tmux = (...args: ReadonlyArray<string>) => execFileSync("tmux", args, { encoding: "utf8" })
      yield* Effect.acquireRelease(
        Effect.sync(() =>
          tmux(
            "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
            `DOCKER_CONFIG=${daemon.dir} docker --host unix://${daemon.socket} run -it --rm ${FIXTURE_IMAGE} sh; sleep 30`
          )
        ),
        () => Effect.sync(() => void execFileSync("tmux", ["kill-session", "-t", session], { stdio: "ignore" }))
      )
      const screen = () => tmux("capture-pane", "-p", "-t", session)
      yield* eventually(Effect.sync(() => /#\s*$/m.test(screen())))
      tmux("send-keys", "-t", session, "echo hi-$((6*7)); stty size", "Enter")
      yield* eventually(Effect.sync(() => /hi-42/.test(screen())))
      tmux("resize-window", "-t", session, "-x", "120", "-y", "40")
      yield* Effect.sleep("300 millis")
      tmux("send-keys", "-t", session, "stty size; exit", "Enter")
      yield* eventually(Effect.sync(() => /40 120/.test(screen())))
      yield* eventually(Effect.map(daemon.docker(["ps", "-aq"]), (r) => r.stdout.trim() === ""))
    }).pipe(Effect.scoped), 120_000)
})
