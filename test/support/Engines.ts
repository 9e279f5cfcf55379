/**
 * Our daemon beside dockerd 20.10 on the shared containerd, for tests that
 * compare what both answer: our daemon (a real process, `DaemonHarness.ts`) and
 * dockerd when it is installed (`Dockerd.ts`; without it only our half of each
 * test runs, and the log says so), each with the fixture image.
 */
import { Context, Effect, Layer, Option } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { removeTree } from "../../src/internal/Files.ts"
import { type DaemonInstance, dockerCli, requestOver, startDaemon } from "./DaemonHarness.ts"
import { startDockerd } from "./Dockerd.ts"
import { FIXTURE_IMAGE } from "./FixtureImage.ts"
import { importFixture, shared, uniqueNamespace } from "./SharedContainerd.ts"

/** One engine's API, as the tests drive it. */
export interface Engine {
  readonly name: "ours" | "dockerd"
  readonly socket: string
  readonly request: DaemonInstance["request"]
  readonly docker: DaemonInstance["docker"]
  /** Our daemon's process and containerd namespace (ours only). */
  readonly daemon?: DaemonInstance | undefined
  readonly namespace?: string | undefined
}

/** Our daemon, and dockerd when it could start. */
export class Engines extends Context.Service<Engines, { readonly ours: Engine; readonly dockerd: Option.Option<Engine> }>()(
  "test/Engines"
) {}

/** Both engines, in a namespace named after `prefix` (our daemon with `flags`); stopped with the layer. */
export const engines = (prefix: string, flags?: ReadonlyArray<string>, options?: { readonly bridge?: boolean }) =>
  Layer.effect(
    Engines,
    Effect.gen(function*() {
      const namespace = uniqueNamespace(prefix)
      yield* importFixture(namespace)
      const daemon = yield* startDaemon({ containerd: shared().address, namespace, flags, bridge: options?.bridge })
      const theirs = yield* startDockerd(shared().address, { archive: shared().fixtureArchive, name: FIXTURE_IMAGE })
      const config = yield* Effect.acquireRelease(
        Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-cli-"))),
        removeTree
      )
      if (Option.isNone(theirs)) yield* Effect.logWarning("dockerd is not installed: only our daemon's half of each test runs")
      return {
        ours: { name: "ours", socket: daemon.socket, request: daemon.request, docker: daemon.docker, daemon, namespace },
        dockerd: Option.map(theirs, ({ socket }) => ({
          name: "dockerd",
          socket,
          request: requestOver(socket),
          docker: dockerCli(socket, config)
        }))
      }
    })
  )

/** Ours, then dockerd's (if it runs), each through `f`, at once. */
export const bothEngines = <A, E, R>(f: (engine: Engine) => Effect.Effect<A, E, R | Engines>) =>
  Effect.gen(function*() {
    const { ours, dockerd } = yield* Engines
    return yield* Effect.forEach([ours, ...Option.toArray(dockerd)], f, { concurrency: "unbounded" })
  })

/** `docker ...` that must succeed: its stdout. */
export const ok = (engine: Engine, args: ReadonlyArray<string>) =>
  Effect.flatMap(engine.docker(args), (r) =>
    r.code === 0 ? Effect.succeed(r.stdout) : Effect.die(new Error(`${engine.name}: docker ${args.join(" ")}: ${r.stderr}`)))

/** Polls `check` every 50 ms until it holds, for at most 20 s. */
export const eventually = <E, R>(what: string, check: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 20_000
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep("50 millis")
    }
  })
