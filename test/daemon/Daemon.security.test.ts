/**
 * The isolation Docker users rely on, through the docker CLI against our daemon
 * on the real containerd and, where dockerd 20.10 is installed, against dockerd
 * on the same containerd with the same assertions: Docker's default
 * capabilities and seccomp profile (`unshare -U` refused with EPERM), `--cap-add`
 * and `--cap-drop` (ALL included; an unknown name is a 400), `--security-opt
 * seccomp=unconfined` and a profile of one's own, `--privileged`, and
 * `--runtime` limited to runc and the runtimes the daemon was given (anything
 * else a 400, with nothing created). Without dockerd its half is left out (the
 * log says so).
 */
import { assert, it, layer } from "@effect/vitest"
import { Context, Effect, Layer, Option } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { dockerCli, type DaemonInstance, requestOver, runDaemonCommand, startDaemon } from "../support/DaemonHarness.ts"
import { startDockerd } from "../support/Dockerd.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"
import { importFixture, shared, uniqueNamespace } from "../support/SharedContainerd.ts"

/** An engine speaking the Docker API: ours, or dockerd. */
interface EngineUnderTest {
  readonly name: "ours" | "dockerd"
  readonly docker: DaemonInstance["docker"]
  readonly request: DaemonInstance["request"]
  /** The containerd namespace of its containers. */
  readonly namespace: string
}

/** The engines, and the wrapper runtime's log (ours only is started with `--add-runtime`). */
class Engines extends Context.Service<Engines, {
  readonly all: ReadonlyArray<EngineUnderTest>
  readonly wrapperLog: string
}>()("test/daemon/security/Engines") {}

const EnginesLive = Layer.effect(Engines, Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-security-"))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )
  // A runtime of our own: runc behind a script that says it was run.
  const wrapperLog = path.join(dir, "wrapper.log")
  const wrapper = path.join(dir, "logging-runc")
  fs.writeFileSync(wrapper, `#!/bin/sh\necho "$@" >> ${wrapperLog}\nexec runc "$@"\n`, { mode: 0o755 })
  const namespace = uniqueNamespace("security")
  yield* importFixture(namespace)
  const ours = yield* startDaemon({ containerd: shared().address, namespace, flags: ["--add-runtime", `logging=${wrapper}`] })
  const dockerd = yield* startDockerd(shared().address, { archive: shared().fixtureArchive, name: FIXTURE_IMAGE }).pipe(Effect.orDie)
  if (Option.isNone(dockerd)) yield* Effect.logWarning("dockerd (or skopeo) is not installed: only our daemon's half runs")
  const all: Array<EngineUnderTest> = [{ name: "ours", docker: ours.docker, request: ours.request, namespace }]
  if (Option.isSome(dockerd)) {
    fs.mkdirSync(path.join(dir, "dockerd-cli"))
    all.push({
      name: "dockerd",
      docker: dockerCli(dockerd.value.socket, path.join(dir, "dockerd-cli")),
      request: requestOver(dockerd.value.socket),
      namespace: "bench-dockerd"
    })
  }
  yield* Effect.log(`engines under test: ${all.map((engine) => engine.name).join(", ")}`)
  return { all, wrapperLog }
}))

/** `docker run --rm [flags] busybox sh -c script` on an engine: its output and exit code. */
const run = (engine: EngineUnderTest, flags: ReadonlyArray<string>, script: string) =>
  engine.docker(["run", "--rm", ...flags, FIXTURE_IMAGE, "sh", "-c", script])

/** The CapEff and Seccomp lines of the container's init, as /proc says them. */
const STATUS = "grep -E '^(CapEff|Seccomp):' /proc/self/status"

/** The capability mask of this process's bounding set: what the daemon (run by the same user) can grant. */
const hostBounding = () => /^CapBnd:\s*([0-9a-f]+)$/m.exec(fs.readFileSync("/proc/self/status", "utf8"))![1]!

/** How many masks there are over /proc/keys, and read-only mounts of /proc/sys. */
const PATHS = "grep -c ' /proc/keys ' /proc/mounts; grep -c ' /proc/sys proc ro,' /proc/mounts"

/** Docker's default capabilities as /proc shows them. */
const DEFAULT_CAPS = "00000000a80425fb"

const forEachEngine = <E>(f: (engine: EngineUnderTest) => Effect.Effect<void, E>) =>
  Effect.gen(function*() {
    const { all } = yield* Engines
    for (const engine of all) yield* f(engine).pipe(Effect.annotateLogs("engine", engine.name))
  })

layer(EnginesLive, { timeout: 120_000, excludeTestServices: true })("isolation defaults and options (ours and dockerd 20.10)", (it) => {
  it.effect("by default: Docker's capabilities and seccomp profile, so unshare -U is refused with EPERM", () =>
    forEachEngine((engine) =>
      Effect.gen(function*() {
        const status = yield* run(engine, [], STATUS)
        assert.strictEqual(status.code, 0, `${engine.name}: ${status.stderr}`)
        assert.strictEqual(status.stdout, `CapEff:\t${DEFAULT_CAPS}\nSeccomp:\t2\n`, engine.name)
        const unshare = yield* run(engine, [], "busybox unshare -U true")
        assert.strictEqual(unshare.code, 1, `${engine.name}: ${unshare.stdout}${unshare.stderr}`)
        assert.include(unshare.stderr, "Operation not permitted", engine.name)
        // Masked and read-only paths: /proc/keys is hidden, /proc/sys read-only.
        const paths = yield* run(engine, [], `cat /proc/keys | wc -c; ${PATHS}`)
        assert.strictEqual(paths.stdout, "0\n1\n1\n", `${engine.name}: ${paths.stderr}`)
        // The CLI's systempaths=unconfined: nothing masked or read-only.
        const unmasked = yield* run(engine, ["--security-opt", "systempaths=unconfined"], `${PATHS}; true`)
        assert.strictEqual(unmasked.stdout, "0\n0\n", `${engine.name}: ${unmasked.stderr}`)
      })
    ))

  it.effect("the spec's seccomp profile and capabilities are dockerd's, by default and with CAP_SYS_ADMIN", () =>
    Effect.gen(function*() {
      const { all } = yield* Engines
      for (const flags of [[], ["--cap-drop", "ALL", "--cap-add", "sys_admin", "--cap-add", "sys_ptrace"]]) {
        const specs: Array<unknown> = []
        for (const engine of all) {
          const started = yield* engine.docker(["run", "-d", ...flags, FIXTURE_IMAGE, "sleep", "30"])
          const id = started.stdout.trim()
          assert.strictEqual(started.code, 0, `${engine.name}: ${started.stderr}`)
          const info = JSON.parse(execFileSync("ctr", ["--address", shared().address, "-n", engine.namespace, "containers", "info", id]).toString())
          yield* engine.docker(["rm", "-f", id])
          specs.push({ seccomp: info.Spec.linux.seccomp, capabilities: info.Spec.process.capabilities })
        }
        assert.isDefined((specs[0] as { seccomp: unknown }).seccomp)
        if (specs.length === 2) assert.deepStrictEqual(specs[0], specs[1], flags.join(" "))
      }
    }))

  it.effect("--cap-drop ALL leaves none, --cap-add adds (names case-insensitive, CAP_ optional), and CAP_SYS_ADMIN lets unshare through", () =>
    forEachEngine((engine) =>
      Effect.gen(function*() {
        const none = yield* run(engine, ["--cap-drop", "ALL"], STATUS)
        assert.strictEqual(none.stdout, "CapEff:\t0000000000000000\nSeccomp:\t2\n", `${engine.name}: ${none.stderr}`)
        const one = yield* run(engine, ["--cap-drop", "all", "--cap-add", "net_admin"], STATUS)
        assert.strictEqual(one.stdout, "CapEff:\t0000000000001000\nSeccomp:\t2\n", `${engine.name}: ${one.stderr}`)
        const admin = yield* run(engine, ["--cap-add", "CAP_SYS_ADMIN", "--cap-drop", "chown"], `${STATUS}; busybox unshare -U true; echo $?`)
        assert.strictEqual(admin.stdout, "CapEff:\t00000000a82425fa\nSeccomp:\t2\n0\n", `${engine.name}: ${admin.stderr}`)
        // Execs get the container's; inspect shows the names as dockerd normalises them.
        const id = (yield* engine.docker(["run", "-d", "--cap-drop", "all", "--cap-add", "net_admin", FIXTURE_IMAGE, "sleep", "30"])).stdout.trim()
        const exec = yield* engine.docker(["exec", id, "sh", "-c", STATUS])
        const inspect = yield* engine.docker(["inspect", "--format", "{{json .HostConfig.CapAdd}} {{json .HostConfig.CapDrop}}", id])
        yield* engine.docker(["rm", "-f", id])
        assert.strictEqual(exec.stdout, "CapEff:\t0000000000001000\nSeccomp:\t2\n", `${engine.name}: ${exec.stderr}`)
        assert.strictEqual(inspect.stdout, `["CAP_NET_ADMIN"] ["ALL"]\n`, engine.name)
      })
    ))

  it.effect("an unknown capability is a 400 naming it, with nothing created", () =>
    forEachEngine((engine) =>
      Effect.gen(function*() {
        const before = (yield* engine.docker(["ps", "-aq"])).stdout
        const add = yield* engine.docker(["run", "--rm", "--cap-add", "FOO", FIXTURE_IMAGE, "true"])
        assert.strictEqual(add.code, 125, engine.name)
        assert.include(add.stderr, `Error response from daemon: invalid CapAdd: unknown capability: "CAP_FOO"`, engine.name)
        const drop = yield* engine.request(
          "POST",
          "/containers/create",
          JSON.stringify({ Image: FIXTURE_IMAGE, HostConfig: { CapDrop: ["cap_all"] } })
        )
        assert.strictEqual(drop.status, 400, engine.name)
        assert.strictEqual(JSON.parse(drop.body).message, `invalid CapDrop: unknown capability: "CAP_ALL"`, engine.name)
        assert.strictEqual((yield* engine.docker(["ps", "-aq"])).stdout, before, engine.name)
      })
    ))

  it.effect("seccomp=unconfined runs without a filter; a profile of one's own is applied (mkdir refused)", () =>
    forEachEngine((engine) =>
      Effect.gen(function*() {
        const unconfined = yield* run(engine, ["--security-opt", "seccomp=unconfined"], STATUS)
        assert.strictEqual(unconfined.stdout, `CapEff:\t${DEFAULT_CAPS}\nSeccomp:\t0\n`, `${engine.name}: ${unconfined.stderr}`)
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-seccomp-"))
        const profile = path.join(dir, "no-mkdir.json")
        fs.writeFileSync(profile, JSON.stringify({
          defaultAction: "SCMP_ACT_ALLOW",
          syscalls: [{ names: ["mkdir", "mkdirat"], action: "SCMP_ACT_ERRNO" }]
        }))
        const custom = yield* run(engine, ["--security-opt", `seccomp=${profile}`], "grep Seccomp: /proc/self/status; mkdir /x; echo $?; touch /y; echo $?")
        fs.rmSync(dir, { recursive: true, force: true })
        assert.strictEqual(custom.stdout, "Seccomp:\t2\n1\n0\n", `${engine.name}: ${custom.stderr}`)
        assert.include(custom.stderr, "mkdir: can't create directory '/x': Operation not permitted", engine.name)
      })
    ))

  it.effect("--privileged: every capability the host grants, no seccomp, the host's devices, /sys writable", () =>
    forEachEngine((engine) =>
      Effect.gen(function*() {
        const privileged = yield* run(engine, ["--privileged"], `${STATUS}; test -e /dev/loop-control && echo devices; grep -c ' /sys sysfs rw,' /proc/mounts; grep -c ' /proc/keys ' /proc/mounts; true`)
        const bounding = hostBounding()
        const known = (1n << 38n) - 1n // the 38 capabilities dockerd 20.10 knows
        if (engine.name === "dockerd" && (BigInt(`0x${bounding}`) & known) !== known) {
          // dockerd 20.10 asks for every capability it knows, which runc cannot grant where the host withholds some.
          assert.include(privileged.stderr, "unable to apply caps", engine.name)
          return yield* Effect.log(`the host's bounding set is ${bounding}: dockerd cannot run a privileged container here`)
        }
        assert.strictEqual(privileged.code, 0, `${engine.name}: ${privileged.stderr}`)
        const expected = engine.name === "ours" ? bounding.padStart(16, "0") : "0000003fffffffff"
        const devices = fs.existsSync("/dev/loop-control") ? "devices\n" : ""
        // Nothing masked: no mount over /proc/keys.
        assert.strictEqual(privileged.stdout, `CapEff:\t${expected}\nSeccomp:\t0\n${devices}1\n0\n`, engine.name)
      })
    ))

  it.effect("--runtime: an unknown one (a host binary's path included) is a 400 with nothing created; a configured one is run", () =>
    Effect.gen(function*() {
      const { wrapperLog } = yield* Engines
      yield* forEachEngine((engine) =>
        Effect.gen(function*() {
          const before = (yield* engine.docker(["ps", "-aq"])).stdout
          for (const runtime of ["/bin/sh", "crun"]) {
            const refused = yield* engine.docker(["run", "--rm", "--runtime", runtime, FIXTURE_IMAGE, "true"])
            assert.strictEqual(refused.code, 125, engine.name)
            assert.include(refused.stderr, `Error response from daemon: Unknown runtime specified ${runtime}`, engine.name)
          }
          const raw = yield* engine.request("POST", "/containers/create", JSON.stringify({ Image: FIXTURE_IMAGE, HostConfig: { Runtime: "/bin/sh" } }))
          assert.strictEqual(raw.status, 400, engine.name)
          assert.strictEqual((yield* engine.docker(["ps", "-aq"])).stdout, before, engine.name)
          const runc = yield* engine.docker(["run", "--rm", "--runtime", "runc", FIXTURE_IMAGE, "true"])
          assert.strictEqual(runc.code, 0, `${engine.name}: ${runc.stderr}`)
        }))
      const { all } = yield* Engines
      const ours = all.find((engine) => engine.name === "ours")!
      assert.isFalse(fs.existsSync(wrapperLog), "the configured runtime ran before it was asked for")
      const configured = yield* ours.docker(["run", "--rm", "--runtime", "logging", FIXTURE_IMAGE, "echo", "hi"])
      assert.strictEqual(configured.stdout, "hi\n", configured.stderr)
      assert.include(fs.readFileSync(wrapperLog, "utf8"), "create")
      const inspect = yield* ours.docker(["info", "--format", "{{json .Runtimes}}"])
      assert.include(inspect.stdout, "\"logging\"")
    }))

  it.effect("security options: dockerd's messages for malformed ones; AppArmor profiles and SELinux labels refused, asking for none accepted", () =>
    forEachEngine((engine) =>
      Effect.gen(function*() {
        const create = (options: ReadonlyArray<string>) =>
          // As the CLI sends it: dockerd reads systempaths= only from a versioned request.
          engine.request("POST", "/v1.41/containers/create", JSON.stringify({ Image: FIXTURE_IMAGE, Cmd: ["true"], HostConfig: { SecurityOpt: options } }))
        for (const bad of ["bogus=1", "systempaths=unconfined"]) {
          const refused = yield* create([bad])
          // dockerd 20.10 answers its message with a 500, as an error it did not classify; bad input is a 400 here.
          assert.strictEqual(refused.status, engine.name === "ours" ? 400 : 500, engine.name)
          assert.strictEqual(JSON.parse(refused.body).message, `invalid --security-opt 2: ${JSON.stringify(bad)}`, engine.name)
        }
        for (const none of [["apparmor=unconfined"], ["label=disable"]]) {
          const accepted = yield* create(none)
          assert.strictEqual(accepted.status, 201, `${engine.name} ${none}: ${accepted.body}`)
          yield* engine.docker(["rm", JSON.parse(accepted.body).Id])
        }
        if (engine.name === "dockerd") return
        for (const some of ["apparmor=docker-default", "label=user:system_u"]) {
          const refused = yield* create([some])
          assert.strictEqual(refused.status, 400, some)
          assert.include(JSON.parse(refused.body).message, `SecurityOpt "${some}" (--security-opt) is not supported`)
        }
        const broken = yield* create(["seccomp={not json"])
        assert.strictEqual(broken.status, 400, broken.body)
        assert.include(JSON.parse(broken.body).message, "Decoding seccomp profile failed")
      })
    ))
})

it.live("--add-runtime takes name=path; runc's names are reserved; a bad one stops the daemon before it starts", () =>
  Effect.gen(function*() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-add-runtime-"))
    const base = ["--host", path.join(dir, "d.sock"), "--data-root", path.join(dir, "data"), "--containerd", path.join(dir, "none.sock")]
    for (const [spec, message] of [["=/bin/x", "use name=path"], ["runc=/bin/x", "runtime name 'runc' is reserved"]]) {
      const refused = yield* runDaemonCommand([...base, "--add-runtime", spec!])
      assert.notStrictEqual(refused.code, 0, spec)
      assert.include(refused.output, `--add-runtime ${spec}: ${message}`)
    }
    assert.isFalse(fs.existsSync(path.join(dir, "data")), "nothing made")
    fs.rmSync(dir, { recursive: true, force: true })
  }))
