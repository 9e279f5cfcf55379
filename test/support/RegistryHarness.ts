/**
 * A private `docker-registry` (distribution) on an ephemeral 127.0.0.1 port, with
 * images pushed by `skopeo`, for the pull tests. Closing the scope stops the
 * registry by its PID and removes its storage. `startRegistryWith({ auth: true })`
 * makes one that asks for `REGISTRY_CREDENTIALS` (distribution's `htpasswd` auth,
 * Basic over plain HTTP on loopback).
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

/** The one user of a registry started with `auth`. */
export const REGISTRY_CREDENTIALS = { username: "tester", password: "s3cret-pass" } as const
/**
 * Its htpasswd line: distribution reads only bcrypt, and no bcrypt tool is installed, so the hash of
 * `REGISTRY_CREDENTIALS.password` is written here (made once with libxcrypt, cost 4: cheap to check).
 */
const HTPASSWD = `${REGISTRY_CREDENTIALS.username}:$2b$04$TFrxCY2qYrxvVJSYcdR45ehxNO6qT/.DgYFFEX.JtqJm7bv0En49e\n`

/** How a registry is started. */
export interface RegistryOptions {
  /** Ask for `REGISTRY_CREDENTIALS` on every request (pushes are made with them). */
  readonly auth?: boolean | undefined
}

const answersV2 = (host: string, auth: boolean) =>
  Effect.tryPromise({
    try: (signal) => fetch(`http://${host}/v2/`, { signal }),
    catch: (cause) => new HarnessError({ message: `registry at ${host} does not answer`, cause })
  }).pipe(
    // With auth, the unauthenticated ping's 401 is the answer of a registry that is up.
    Effect.filterOrFail(
      (response) => response.ok || (auth && response.status === 401),
      () => new HarnessError({ message: `registry at ${host} not ready` })
    )
  )

/** Starts a registry; closing the scope stops it and removes its storage. */
export const startRegistry: Effect.Effect<RegistryInstance, HarnessError, Scope.Scope> = Effect.suspend(() => startRegistryWith({}))

/** Starts a registry with `options`; closing the scope stops it and removes its storage. */
export const startRegistryWith = (options: RegistryOptions): Effect.Effect<RegistryInstance, HarnessError, Scope.Scope> => Effect.gen(function*() {
  const auth = options.auth === true
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
      ...(auth ? ["auth:", "  htpasswd:", "    realm: effect-containerd-test", `    path: ${dir}/htpasswd`] : []),
      ""
    ].join("\n")
  )
  if (auth) fs.writeFileSync(path.join(dir, "htpasswd"), HTPASSWD)
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
  yield* answersV2(host, auth).pipe(
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
          [
            "--insecure-policy",
            "copy",
            "--dest-tls-verify=false",
            ...(auth ? ["--dest-creds", `${REGISTRY_CREDENTIALS.username}:${REGISTRY_CREDENTIALS.password}`] : []),
            `oci-archive:${archive}`,
            `docker://${reference}`
          ],
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
