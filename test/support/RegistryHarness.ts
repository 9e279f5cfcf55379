/**
 * A private `docker-registry` (distribution) on an ephemeral 127.0.0.1 port, with
 * images pushed by `skopeo`, for the pull tests. Closing the scope stops the
 * registry by its PID and removes its storage.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, Schedule, type Scope } from "effect"
import { HarnessError } from "./ContainerdHarness.ts"
import { awaitGone, signal } from "./Processes.ts"

/** A running registry. */
export interface RegistryInstance {
  /** "127.0.0.1:<port>", the host part of references pushed to it. */
  readonly host: string
  /** Pushes an OCI archive as `<host>/<repository>:<tag>`. */
  readonly push: (archive: string, repository: string, tag: string) => Effect.Effect<string, HarnessError>
  /** The requests the registry has logged so far (its access log), oldest first. */
  readonly requests: Effect.Effect<ReadonlyArray<LoggedRequest>>
}

/** One line of the registry's access log. */
export interface LoggedRequest {
  readonly method: string
  readonly path: string
  readonly status: number
  readonly userAgent: string
}

/** `127.0.0.1 - - [date] "GET /v2/… HTTP/1.1" 200 1234 "" "agent"`, as distribution logs requests. */
const ACCESS_LOG = /"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP\/[\d.]+" (\d{3}) \S+ "[^"]*" "([^"]*)"/

/** Asks the kernel for a free port, releases it, and hands it to the registry. */
const freePort = Effect.callback<number, HarnessError>((resume) => {
  const server = net.createServer()
  server.once("error", (cause) => resume(Effect.fail(new HarnessError({ message: "no free port", cause }))))
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

const answersV2 = (host: string) =>
  Effect.tryPromise({
    try: (signal) => fetch(`http://${host}/v2/`, { signal }),
    catch: (cause) => new HarnessError({ message: `registry at ${host} does not answer`, cause })
  }).pipe(
    Effect.filterOrFail((response) => response.ok, () => new HarnessError({ message: `registry at ${host} not ready` }))
  )

/** Starts a registry; closing the scope stops it and removes its storage. */
export const startRegistry: Effect.Effect<RegistryInstance, HarnessError, Scope.Scope> = Effect.gen(function*() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-registry-"))
  const port = yield* freePort
  const host = `127.0.0.1:${port}`
  const config = path.join(dir, "config.yml")
  fs.writeFileSync(
    config,
    [
      "version: 0.1",
      "log:",
      "  level: warn",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${dir}/data`,
      "  delete:",
      "    enabled: true",
      "http:",
      `  addr: ${host}`,
      ""
    ].join("\n")
  )
  const logPath = path.join(dir, "registry.log")
  const log = fs.openSync(logPath, "a")
  const child: ChildProcess = yield* Effect.acquireRelease(
    Effect.sync(() => spawn("docker-registry", ["serve", config], { stdio: ["ignore", log, log] })),
    (child) =>
      Effect.gen(function*() {
        if (child.pid !== undefined) {
          signal(child.pid, "SIGTERM")
          if (!(yield* awaitGone([child.pid], 5000))) signal(child.pid, "SIGKILL")
        }
        fs.closeSync(log)
        fs.rmSync(dir, { recursive: true, force: true })
      })
  )
  yield* answersV2(host).pipe(
    Effect.retry(Schedule.spaced("50 millis")),
    Effect.timeout("10 seconds"),
    Effect.mapError((cause) => new HarnessError({ message: `registry (pid ${child.pid}) did not start`, cause }))
  )
  return {
    host,
    requests: Effect.sync(() =>
      fs.readFileSync(logPath, "utf8").split("\n").flatMap((line) => {
        const match = ACCESS_LOG.exec(line)
        return match === null ? [] : [{ method: match[1]!, path: match[2]!, status: Number(match[3]), userAgent: match[4]! }]
      })
    ),
    push: (archive, repository, tag) =>
      Effect.callback<string, HarnessError>((resume) => {
        const reference = `${host}/${repository}:${tag}`
        execFile(
          "skopeo",
          ["--insecure-policy", "copy", "--dest-tls-verify=false", `oci-archive:${archive}`, `docker://${reference}`],
          (error, _stdout, stderr) =>
            resume(
              error
                ? Effect.fail(new HarnessError({ message: `skopeo could not push ${reference}: ${stderr}`, cause: error }))
                : Effect.succeed(reference)
            )
        )
      })
  }
})
