/**
 * `docker import` and `docker commit` as the Docker API sees them (moby's
 * `daemon/images/image_import.go` and `daemon/commit.go`): the name an import
 * or a commit stores its image under, a commit's config merged over the
 * container's, and an import's `fromSrc` URL fetched with dockerd's progress
 * lines and messages. The images themselves are made by the library
 * (`Images.importRootfs`, `Images.commit`).
 */
import { Clock, Duration, Effect, Result, Stream } from "effect"
import { HttpClient, HttpClientRequest } from "effect/http"
import * as http from "node:http"
import { mergeEnv, mergeHealthcheck } from "../../domain/ContainerConfig.ts"
import type { ContainerDefaults, Platform } from "../../domain/Image.ts"
import { parseReferenceResult, type Reference } from "../../domain/Reference.ts"
import { badRequest, DockerError, internal, notFound } from "../DockerError.ts"
import { argv } from "../engine/HostConfig.ts"
import type { ContainerConfig } from "../Model.ts"
import { type JsonMessage, progressBar } from "./PullProgress.ts"

/** The reference an import is named by (`repo`, `tag`), as dockerd's `ImportImage`: none without a repo, never a digest. */
export const importReference = (repo: string | undefined, tag: string | undefined): Result.Result<Reference | undefined, string> => {
  if (repo === undefined || repo === "") return Result.succeed(undefined)
  const parsed = Result.mapError(parseReferenceResult(repo), (problem) => `invalid reference format: ${problem}`)
  return Result.flatMap(parsed, (reference) => {
    if (reference.digest !== undefined) return Result.fail("cannot import digest reference")
    return tag === undefined || tag === ""
      ? Result.succeed(reference)
      : Result.mapError(parseReferenceResult(`${reference.name}:${tag}`), (problem) => `invalid reference format: ${problem}`)
  })
}

/** The platform an import is for, as dockerd's `ImportImage` checks it: this daemon runs Linux images only. */
export const importPlatform = (platform: Platform | undefined): Result.Result<Platform | undefined, string> =>
  platform === undefined || platform.os === "linux" ? Result.succeed(platform) : Result.fail("operating system is not supported")

const objectOf = (value: unknown): Readonly<Record<string, unknown>> | undefined =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? value as Readonly<Record<string, unknown>> : undefined

/** The image-config fields of a commit's body (a container config), as dockerd reads them. */
export const commitBodyConfig = (body: ContainerConfig): ContainerDefaults => {
  const cmd = argv(body.Cmd)
  const entrypoint = argv(body.Entrypoint)
  const strings = (value: unknown) => Array.isArray(value) && value.every((v) => typeof v === "string") ? value as ReadonlyArray<string> : undefined
  return {
    ...(body.User ? { User: body.User } : {}),
    ...(body.Env ? { Env: body.Env } : {}),
    ...(cmd === undefined ? {} : { Cmd: cmd }),
    ...(entrypoint === undefined ? {} : { Entrypoint: entrypoint }),
    ...(body.WorkingDir ? { WorkingDir: body.WorkingDir } : {}),
    ...(body.Labels ? { Labels: body.Labels } : {}),
    ...(body.StopSignal ? { StopSignal: body.StopSignal } : {}),
    ...(objectOf(body.ExposedPorts) ? { ExposedPorts: objectOf(body.ExposedPorts)! } : {}),
    ...(objectOf(body.Volumes) ? { Volumes: objectOf(body.Volumes)! } : {}),
    ...(objectOf(body.Healthcheck) ? { Healthcheck: objectOf(body.Healthcheck) } : {}),
    ...(strings(body.OnBuild) ? { OnBuild: strings(body.OnBuild)! } : {}),
    ...(strings(body.Shell) ? { Shell: strings(body.Shell)! } : {})
  }
}

const isEmpty = (value: unknown) => value === undefined || value === null || (Array.isArray(value) && value.length === 0)

/**
 * A commit's config (the body's or the container's, with the changes applied)
 * completed by the container's, as dockerd's `merge` in `daemon/commit.go`.
 */
export const mergeCommitConfig = (user: ContainerDefaults, container: ContainerDefaults): ContainerDefaults => {
  const userEntrypoint = user.Entrypoint ?? undefined
  const noEntrypoint = isEmpty(userEntrypoint)
  const sizeOf = (set: unknown) => Object.keys(objectOf(set) ?? {}).length
  return {
    ...user,
    User: user.User || container.User || "",
    ExposedPorts: sizeOf(user.ExposedPorts) === 0
      ? container.ExposedPorts ?? null
      : { ...container.ExposedPorts, ...user.ExposedPorts },
    Env: mergeEnv(container.Env ?? [], user.Env ?? []),
    Labels: { ...container.Labels, ...user.Labels },
    Cmd: noEntrypoint && isEmpty(user.Cmd) ? container.Cmd ?? null : user.Cmd ?? null,
    Entrypoint: noEntrypoint && userEntrypoint === undefined ? container.Entrypoint ?? null : userEntrypoint ?? null,
    ...(objectOf(container.Healthcheck) === undefined ? {} : { Healthcheck: mergeHealthcheck(user.Healthcheck, container.Healthcheck) }),
    WorkingDir: user.WorkingDir || container.WorkingDir || "",
    Volumes: sizeOf(user.Volumes) === 0 ? container.Volumes ?? null : { ...user.Volumes, ...container.Volumes },
    ...(user.StopSignal || container.StopSignal ? { StopSignal: user.StopSignal || container.StopSignal } : {})
  }
}

/** A fetch's answer must start within this, and each chunk of its body come within `IDLE_TIMEOUT` of the last. */
const CONNECT_TIMEOUT = Duration.seconds(30)
const IDLE_TIMEOUT = Duration.seconds(60)
/** The whole of an import from a URL (download, check, store) must end within this. */
export const IMPORT_TIMEOUT = Duration.hours(1)
/** The most of an import that is downloaded (the body goes to the content store, never to memory). */
const MAX_DOWNLOAD = 64 * 1024 ** 3
/** How much of an error answer's body dockerd's message quotes, here. */
const MAX_ERROR_BODY = 64 * 1024

/** Node's network error as Go's net package words it (dockerd's message is Go's). */
const goNetError = (url: URL, cause: unknown): string => {
  let error: unknown = cause
  for (let depth = 0; depth < 5 && error !== undefined; depth++) {
    const code = (error as { code?: unknown }).code
    const port = url.port || (url.protocol === "https:" ? "443" : "80")
    if (code === "ECONNREFUSED") return `dial tcp ${url.hostname}:${port}: connect: connection refused`
    if (code === "ENOTFOUND") return `dial tcp: lookup ${url.hostname}: no such host`
    error = (error as { cause?: unknown }).cause
  }
  return cause instanceof Error ? cause.message : String(cause)
}

/** The URL `fromSrc` names, as dockerd reads it: `http://` added when it has no scheme; only http(s) is fetched. */
export const importUrl = (fromSrc: string): Effect.Effect<URL, DockerError> => {
  const text = fromSrc.includes("://") ? fromSrc : `http://${fromSrc}`
  const url = Result.try(() => new URL(text))
  if (Result.isFailure(url)) return Effect.fail(badRequest(`parse ${JSON.stringify(text)}: invalid URL`))
  const scheme = url.success.protocol.slice(0, -1)
  // dockerd 20.10 answers these with Go's client error, a 500.
  return scheme === "http" || scheme === "https"
    ? Effect.succeed(url.success)
    : Effect.fail(internal(`Get ${JSON.stringify(text)}: unsupported protocol scheme ${JSON.stringify(scheme)}`))
}

/** dockerd's progress reader: a line per 1% (or 512 kB, if less), at most one per 100 ms, and the last. */
const importProgress = (total: number, emit: (message: JsonMessage) => void) => {
  const every = total > 0 ? Math.min(512 * 1024, Math.trunc(total * 0.01)) : 512 * 1024
  let current = 0
  let lastUpdate = 0
  let lastShown = -Infinity
  const line = () =>
    emit({ status: "Importing", progressDetail: { current, total }, progress: progressBar(current, total) })
  return {
    add: (bytes: number, now: number) => {
      current += bytes
      if (current - lastUpdate <= every) return
      lastUpdate = current
      if (current === total || now - lastShown >= 100) {
        lastShown = now
        line()
      }
    },
    end: () => {
      if (lastUpdate !== current || current === 0) line()
    }
  }
}

/**
 * Fetches `url` for an import: its body as a stream (bounded in size and time),
 * with dockerd's lines told to `emit` ("Downloading from", then "Importing"
 * progress). An answer of 400 or more is a failure with dockerd's message
 * (404 → 404, 400 → 400, else 500); so is a connection that fails (500).
 */
export const download = (url: URL, emit: (message: JsonMessage) => void) =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const get = `Get ${JSON.stringify(url.toString())}`
    const response = yield* client.execute(HttpClientRequest.get(url)).pipe(
      Effect.timeout(CONNECT_TIMEOUT),
      Effect.mapError((error) =>
        internal(`${get}: ${error._tag === "TimeoutError" ? "timeout awaiting response headers" : goNetError(url, error)}`, error))
    )
    if (response.status >= 400) {
      let text = ""
      yield* response.stream.pipe(
        Stream.takeWhile(() => text.length < MAX_ERROR_BODY),
        Stream.runForEach((chunk) => Effect.sync(() => void (text += Buffer.from(chunk).toString("utf8")))),
        // Only the message's detail: an error body that breaks off leaves what was read of it (the status still says why).
        Effect.ignore
      )
      const message = `failed to GET ${url} with status ${response.status} ${http.STATUS_CODES[response.status] ?? ""}: ${text.trim()}`
      return yield* Effect.fail(
        response.status === 404 ? notFound(message) : response.status === 400 ? badRequest(message) : internal(message)
      )
    }
    emit({ status: `Downloading from ${url}` })
    const length = Number(response.headers["content-length"] ?? -1)
    const progress = importProgress(Number.isFinite(length) ? length : -1, emit)
    let received = 0
    const body = response.stream.pipe(
      Stream.mapEffect((chunk) =>
        (received += chunk.byteLength) > MAX_DOWNLOAD
          ? Effect.fail(badRequest(`${url} is larger than ${MAX_DOWNLOAD} bytes`))
          : Effect.map(Clock.currentTimeMillis, (now) => {
            progress.add(chunk.byteLength, now)
            return chunk
          })
      ),
      Stream.mapError((error) => error instanceof DockerError ? error : internal(`${get}: ${goNetError(url, error)}`, error)),
      Stream.timeoutOrElse({
        duration: IDLE_TIMEOUT,
        orElse: () => Stream.fail(internal(`${get}: no data for ${Duration.format(IDLE_TIMEOUT)}`))
      }),
      Stream.onEnd(Effect.sync(progress.end))
    )
    return body
  })
