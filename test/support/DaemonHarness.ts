/**
 * Our daemon as a real process for the tests: `effect-containerd daemon` on a
 * temporary socket and data root, run from the sources (Node's type stripping),
 * against a containerd the test names (the shared one, in a namespace of its
 * own) or its embedded one. It can be stopped (SIGTERM, as a service manager
 * would) and started again on the same socket, data root and namespace.
 *
 * `docker(...)` runs the real docker CLI against it, with a config directory of
 * its own so nothing of the machine's `~/.docker` is read.
 *
 * Each daemon gets networks no other can collide with, as tests run in
 * parallel on one host: its address pools are a /22 of 198.18.0.0/15 (the
 * benchmarking range, never a real network here) chosen from the vitest worker
 * and a counter, its default bridge (only when asked: `--bridge none` otherwise,
 * as the dockerd of `Dockerd.ts`) is named from its data root. Its networks
 * outlive the daemon (as dockerd's), so the harness removes them at the end:
 * every attachment left, then each network's rules and bridge.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Layer, Schedule, type Scope } from "effect"
import { Networks } from "../../src/services/Networks.ts"
import { HarnessError } from "./ContainerdHarness.ts"

let daemons = 0

/** A private /22 of 198.18.0.0/15 for the next daemon of this worker: `--default-address-pool` flags. */
const privatePool = (): ReadonlyArray<string> => {
  const worker = Number(process.env["VITEST_POOL_ID"] ?? "1") || 1
  const index = (worker * 16 + daemons++) % 128
  return ["--default-address-pool", `base=198.${18 + (index >> 6)}.${(index & 63) * 4}.0/22,size=26`]
}

/** Whether a daemon's data root has networks defined or containers attached (none with --bridge none and no network made). */
const hasNetworks = (confDir: string): boolean => {
  const attachments = path.join(confDir, "attachments")
  return (fs.existsSync(confDir) && fs.readdirSync(confDir).some((f) => f.endsWith(".conflist"))) ||
    (fs.existsSync(attachments) && fs.readdirSync(attachments).length > 0)
}

/** Removes what a stopped daemon's networks left on the host: attachments, rules, bridges. */
const removeNetworks = (dataRoot: string, namespace: string) => {
  const confDir = path.join(dataRoot, "network")
  const removal = Effect.gen(function*() {
    const networks = yield* Networks
    yield* networks.sweep(namespace, new Set())
    for (const definition of yield* networks.definitions) yield* networks.remove(definition.name)
  }).pipe(
    Effect.provide(Layer.fresh(Networks.layer({ confDir, runRoot: path.join(dataRoot, "run") }))),
    Effect.catchCause((cause) => Effect.logWarning(`could not remove the networks of the daemon in ${dataRoot}`, cause))
  )
  return Effect.suspend(() => hasNetworks(confDir) ? removal : Effect.void)
}

/**
 * The daemon's entry point: under vitest the sources as the global setup just
 * compiled them into .build/, else (benchmarks) the build under dist/.
 */
const MAIN = process.env["EFFECT_CONTAINERD_DAEMON_MAIN"] ??
  path.resolve(import.meta.dirname, `../../src/daemon/main${path.extname(import.meta.filename)}`)
const NODE_FLAGS = MAIN.endsWith(".ts") ? ["--experimental-transform-types", "--no-warnings"] : []

/** What the test says about the daemon it wants. */
export interface DaemonOptions {
  /** An existing containerd's socket; without it the daemon starts its own. */
  readonly containerd?: string | undefined
  readonly namespace: string
  readonly insecureRegistries?: ReadonlyArray<string> | undefined
  /** Further flags of `effect-containerd daemon`. */
  readonly flags?: ReadonlyArray<string> | undefined
  /**
   * A default bridge network (the daemon's own default). Off unless asked: test
   * daemons run with `--bridge none`, as the dockerd beside them, so a container
   * costs no CNI work where the test is not about networks.
   */
  readonly bridge?: boolean | undefined
}

/** A running (or restartable) daemon. */
export interface DaemonInstance {
  readonly dir: string
  /** The API socket path. */
  readonly socket: string
  readonly dataRoot: string
  readonly pid: () => number | undefined
  /** Starts the daemon (again) and waits until `/_ping` answers. */
  readonly start: Effect.Effect<void, HarnessError>
  /** SIGTERM, then waits for the process to exit (SIGKILL after 20 s). */
  readonly stop: Effect.Effect<void>
  /** SIGKILL, as a crash: no finalizer of the daemon's runs; waits for the process to be gone. */
  readonly kill: Effect.Effect<void>
  /** Everything the daemon printed so far. */
  readonly output: () => string
  /** Runs the docker CLI against the daemon: its stdout, stderr and exit code. */
  readonly docker: (
    args: ReadonlyArray<string>,
    options?: { readonly timeout?: number; readonly input?: string }
  ) => Effect.Effect<{ readonly stdout: string; readonly stderr: string; readonly code: number }>
  /** One HTTP request to the API: its status and body. */
  readonly request: (
    method: string,
    path: string,
    body?: string | Uint8Array,
    contentType?: string
  ) => Effect.Effect<{ readonly status: number; readonly body: string }, HarnessError>
}

/** One HTTP request to a Docker API on `socket` (a JSON body unless told): its status and body. */
export const requestOver = (socket: string): DaemonInstance["request"] => (method, urlPath, body, contentType) =>
  Effect.callback<{ status: number; body: string }, HarnessError>((resume) => {
    // A connection per request (no pool: a test that kills the daemon must not reuse a dead one, EPIPE),
    // still asking for keep-alive as clients do: told "close", Go's server (dockerd) answers an error and
    // closes without reading the body, which breaks the write of the rest (EPIPE again).
    const headers = { "content-type": contentType ?? "application/json", connection: "keep-alive" }
    const req = http.request({ socketPath: socket, method, path: urlPath, headers, agent: false }, (res) => {
      let text = ""
      res.setEncoding("utf8")
      res.on("data", (chunk) => void (text += chunk))
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, body: text })))
    })
    req.on("error", (cause) => resume(Effect.fail(new HarnessError({ message: `${method} ${urlPath}: ${cause.message}`, cause }))))
    req.end(body)
    return Effect.sync(() => req.destroy())
  })

/** The docker CLI against the engine on `socket`, with the CLI config in `dockerConfig`. */
export const dockerCli = (socket: string, dockerConfig: string): DaemonInstance["docker"] => (args, dockerOptions) =>
  Effect.callback((resume) => {
    const proc = execFile(
      "docker",
      ["--host", `unix://${socket}`, ...args],
      {
        env: { ...process.env, DOCKER_CONFIG: dockerConfig, DOCKER_CLI_HINTS: "false" },
        timeout: dockerOptions?.timeout ?? 60_000,
        maxBuffer: 16 * 1024 * 1024
      },
      (error, stdout, stderr) =>
        resume(Effect.succeed({
          stdout,
          stderr,
          code: error === null ? 0 : typeof error.code === "number" ? error.code : 1
        }))
    )
    if (dockerOptions?.input !== undefined) proc.stdin?.end(dockerOptions.input)
    return Effect.sync(() => proc.kill())
  })

/** Runs `effect-containerd daemon ARGS` to its end, as a start that is refused ends: its exit code and output. */
export const runDaemonCommand = (args: ReadonlyArray<string>): Effect.Effect<{ readonly code: number; readonly output: string }> =>
  Effect.callback((resume) => {
    const proc = execFile(process.execPath, [...NODE_FLAGS, MAIN, "daemon", ...args], { timeout: 30_000 }, (error, stdout, stderr) =>
      resume(Effect.succeed({
        code: error === null ? 0 : typeof error.code === "number" ? error.code : 1,
        output: stdout + stderr
      })))
    return Effect.sync(() => proc.kill())
  })

/** Starts the daemon; it is stopped when the scope closes. */
export const startDaemon = (options: DaemonOptions): Effect.Effect<DaemonInstance, HarnessError, Scope.Scope> =>
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-daemon-"))),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    )
    const socket = path.join(dir, "docker.sock")
    const dataRoot = path.join(dir, "data")
    const pool = (options.flags ?? []).includes("--default-address-pool") ? [] : privatePool()
    // After the daemon's stop (finalizers run in reverse), before its directory goes.
    yield* Effect.addFinalizer(() => removeNetworks(dataRoot, options.namespace))
    const dockerConfig = path.join(dir, "docker-config")
    fs.mkdirSync(dockerConfig)
    let child: ChildProcess | undefined
    let output = ""

    const request = requestOver(socket)

    const ended = (signal: NodeJS.Signals) => Effect.suspend(() => {
      const running = child
      if (running === undefined || running.exitCode !== null || running.signalCode !== null) return Effect.void
      return Effect.callback<void>((resume) => {
        const timer = setTimeout(() => running.kill("SIGKILL"), 20_000)
        running.once("exit", () => {
          clearTimeout(timer)
          resume(Effect.void)
        })
        running.kill(signal)
      })
    })
    const stop = ended("SIGTERM")

    const start = Effect.gen(function*() {
      const args = [
        ...NODE_FLAGS,
        MAIN,
        "daemon",
        "--host",
        socket,
        "--data-root",
        dataRoot,
        "--namespace",
        options.namespace,
        ...(options.containerd === undefined ? [] : ["--containerd", options.containerd]),
        ...(options.insecureRegistries ?? []).flatMap((host) => ["--insecure-registry", host]),
        ...pool,
        ...(options.bridge === true ? [] : ["--bridge", "none"]),
        ...(options.flags ?? [])
      ]
      const spawned = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] })
      child = spawned
      spawned.stdout!.on("data", (chunk) => void (output += chunk))
      spawned.stderr!.on("data", (chunk) => void (output += chunk))
      yield* request("GET", "/_ping").pipe(
        Effect.filterOrFail((r) => r.status === 200, () => new HarnessError({ message: "not ready" })),
        Effect.retry({
          schedule: Schedule.spaced("100 millis"),
          while: () => spawned.exitCode === null && spawned.signalCode === null,
          times: 300
        }),
        Effect.mapError((cause) => new HarnessError({ message: `the daemon did not start:\n${output}`, cause }))
      )
    })

    const docker = dockerCli(socket, dockerConfig)

    yield* Effect.addFinalizer(() => stop)
    yield* start
    return {
      dir,
      socket,
      dataRoot,
      pid: () => child?.pid,
      start,
      stop,
      kill: ended("SIGKILL"),
      output: () => output,
      docker,
      request
    }
  })
