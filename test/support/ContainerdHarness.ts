/**
 * A private containerd for tests: its own root, state and socket under a
 * temporary directory, the CRI plugin disabled, the overlayfs snapshotter.
 *
 * `start` waits until the daemon answers `Version` through our own client. The
 * daemon can be SIGKILLed and started again on the same socket and state, as the
 * event-stream tests need. `destroy` stops it and every shim it started, by PID
 * (see Processes.ts), unmounts what the shims left mounted, removes the cgroups
 * runc created and the temporary directory.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Exit, Schedule, Schema, Scope } from "effect"
import { containerdConfigToml } from "../../src/daemon/EmbeddedContainerd.ts"
import { Containerd } from "../../src/services/Containerd.ts"
import { awaitGone, destroyShims, isAlive, signal } from "./Processes.ts"

/** The harness could not start or stop what it manages. */
export class HarnessError extends Schema.TaggedError<HarnessError>()("HarnessError", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/** A running (or restartable) private containerd. */
export interface ContainerdInstance {
  /** The temporary directory holding everything of this instance. */
  readonly dir: string
  /** The gRPC socket path. */
  readonly address: string
  readonly root: string
  readonly state: string
  /** The daemon's current PID (it changes on restart). */
  readonly pid: () => number | undefined
  /** Sends a signal to the daemon, by its PID. */
  readonly kill: (sig: NodeJS.Signals) => Effect.Effect<void>
  /** Waits for the daemon process to exit. */
  readonly exited: Effect.Effect<void>
  /** Starts the daemon again on the same config, socket and state. */
  readonly start: Effect.Effect<void, HarnessError>
}

// The daemon's own config, with the same plugins disabled (CRI, unused snapshotters, tracing).
const configToml = (dir: string): string =>
  containerdConfigToml({ root: `${dir}/root`, state: `${dir}/state`, address: `${dir}/c.sock` })

/** Answers once the daemon serves `Version`, within ten seconds. */
const awaitReady = (address: string) =>
  Containerd.use((client) => client.version.version({}, { timeout: "1 second" })).pipe(
    Effect.provide(Containerd.layer({ address })),
    Effect.retry(Schedule.spaced("50 millis")),
    Effect.timeout("10 seconds"),
    Effect.mapError((cause) => new HarnessError({ message: `containerd at ${address} did not become ready`, cause }))
  )

/**
 * Stops the daemon and everything it started, by PID and by the ids in its state
 * directory: SIGTERM to containerd (SIGKILL after 5 s); `runc delete --force` for
 * every bundle, which kills the container and removes runc's state and cgroup;
 * SIGKILL to the shims; then unmounts, the shims' sockets, the namespaces'
 * parent cgroups and runc state directories, and the temporary directory.
 */
const destroy = (dir: string, current: () => ChildProcess | undefined) =>
  Effect.gen(function*() {
    const state = path.join(dir, "state")
    const child = current()
    if (child?.pid !== undefined && isAlive(child.pid)) {
      signal(child.pid, "SIGTERM")
      if (!(yield* awaitGone([child.pid], 5000))) signal(child.pid, "SIGKILL")
    }
    yield* destroyShims(state, dir)
    fs.rmSync(dir, { recursive: true, force: true })
  })

/**
 * Starts a private containerd; closing the scope destroys it and all it started.
 */
export const startContainerd: Effect.Effect<ContainerdInstance, HarnessError, Scope.Scope> = Effect.gen(function*() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-"))
  const configPath = path.join(dir, "config.toml")
  fs.writeFileSync(configPath, configToml(dir))
  const address = path.join(dir, "c.sock")
  let child: ChildProcess | undefined
  yield* Effect.addFinalizer(() => destroy(dir, () => child))

  const exited = Effect.callback<void>((resume) => {
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
  })

  const start = Effect.gen(function*() {
    const log = fs.openSync(path.join(dir, "containerd.log"), "a")
    child = yield* Effect.try({
      try: () => spawn("containerd", ["--config", configPath], { stdio: ["ignore", log, log] }),
      catch: (cause) => new HarnessError({ message: "could not spawn containerd", cause })
    }).pipe(Effect.ensuring(Effect.sync(() => fs.closeSync(log))))
    yield* awaitReady(address).pipe(
      Effect.mapError((error) =>
        new HarnessError({
          message: `${error.message}; its log: ${fs.readFileSync(path.join(dir, "containerd.log"), "utf8").slice(-2000)}`
        })
      )
    )
  })

  yield* start
  return {
    dir,
    address,
    root: path.join(dir, "root"),
    state: path.join(dir, "state"),
    pid: () => child?.pid,
    kill: (sig) =>
      Effect.sync(() => {
        if (child?.pid !== undefined) signal(child.pid, sig)
      }),
    exited,
    start
  }
})

/**
 * Runs `startContainerd` outside an Effect test, for vitest's global setup.
 * Returns the instance and a function that destroys it.
 */
export const startContainerdUnscoped = async (): Promise<{
  readonly instance: ContainerdInstance
  readonly stop: () => Promise<void>
}> => {
  const scope = Effect.runSync(Scope.make())
  const instance = await Effect.runPromise(Scope.provide(startContainerd, scope))
  return { instance, stop: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}
