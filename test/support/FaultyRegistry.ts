/**
 * A registry written for the tests, on Effect's HTTP server on 127.0.0.1: it
 * serves manifests and blobs of the distribution API and can be told to
 * misbehave — answer with a status a number of times, serve bytes that do not
 * match their digest, cut a blob off after some bytes, stay silent, or demand
 * a bearer token. Every request is logged so tests can count what was fetched.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { Context, Effect, Layer, type Scope, Stream } from "effect"
import { HttpServer, HttpServerRequest, HttpServerResponse } from "effect/http"
import { TestClock } from "effect/testing"
import { execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"

/** A request the registry saw. */
export interface Seen {
  readonly method: string
  readonly path: string
  readonly range: string | undefined
  readonly authorization: string | undefined
}

/** What the registry does to matching requests instead of answering normally. */
export type Fault =
  | {
    readonly _tag: "Status"
    readonly status: number
    readonly headers?: Record<string, string>
    /** Answers once this completes. */
    readonly after?: Effect.Effect<void>
  }
  | { readonly _tag: "Corrupt" }
  | { readonly _tag: "Cut"; readonly after: number }
  | { readonly _tag: "Hang" }
  | { readonly _tag: "IgnoreRange" }

interface Planned {
  readonly path: string
  readonly fault: Fault
  times: number
}

/** A descriptor of something the registry serves. */
export interface Served {
  readonly mediaType: string
  readonly digest: string
  readonly size: number
}

export interface FaultyRegistry {
  /** `127.0.0.1:<port>`. */
  readonly host: string
  /** Serves `bytes` as a blob of every repository. */
  readonly blob: (bytes: Uint8Array, mediaType?: string) => Served
  /** Serves a manifest (any JSON value) under its digest and, if given, a tag. */
  readonly manifest: (repository: string, document: unknown, options?: { readonly tag?: string; readonly mediaType?: string }) => Served
  /** Applies `fault` to the next `times` requests whose path ends with `path`. */
  readonly fault: (path: string, fault: Fault, times?: number) => void
  /**
   * Demands a bearer token from the `/token` endpoint; tokens live `expiresIn` seconds. With `basic`
   * (an `Authorization` value), tokens go only to requests that send it: others get a 401.
   */
  readonly requireToken: (options: { readonly expiresIn: number; readonly basic?: string }) => void
  /** Every request so far, token requests included. */
  readonly seen: ReadonlyArray<Seen>
}

const digestOf = (bytes: Uint8Array) => `sha256:${crypto.createHash("sha256").update(bytes).digest("hex")}`

/** Starts the registry; it stops when the scope closes. */
export const startFaultyRegistry: Effect.Effect<FaultyRegistry, never, Scope.Scope> = Effect.gen(function*() {
  const blobs = new Map<string, { bytes: Uint8Array; mediaType: string }>()
  const manifests = new Map<string, { bytes: Uint8Array; mediaType: string }>()
  const plan: Array<Planned> = []
  const seen: Array<Seen> = []
  let token: { readonly expiresIn: number; readonly basic?: string } | undefined
  let issued = 0
  const valid = new Set<string>()

  const take = (path: string): Fault | undefined => {
    const planned = plan.find((p) => p.times > 0 && path.endsWith(p.path))
    if (planned === undefined) return undefined
    planned.times--
    return planned.fault
  }

  const handler = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const url = new URL(request.url, "http://registry")
    const path = url.pathname
    const range = request.headers["range"]
    const authorization = request.headers["authorization"]
    seen.push({ method: request.method, path, range, authorization })

    if (path === "/token") {
      if (token?.basic !== undefined && authorization !== token.basic) {
        return HttpServerResponse.jsonUnsafe({ errors: [{ code: "UNAUTHORIZED", message: "incorrect username or password" }] }, { status: 401 })
      }
      const name = `token-${++issued}`
      valid.add(name)
      return HttpServerResponse.jsonUnsafe({ token: name, expires_in: token?.expiresIn ?? 60 })
    }
    if (token !== undefined && !(authorization !== undefined && valid.has(authorization.replace(/^Bearer /, "")))) {
      const [, repository] = /^\/v2\/(.+)\/(?:manifests|blobs)\//.exec(path) ?? []
      return HttpServerResponse.empty({
        status: 401,
        headers: {
          "www-authenticate":
            `Bearer realm="http://${host}/token",service="faulty",scope="repository:${repository ?? ""}:pull"`
        }
      })
    }

    // The API's root, which a login pings.
    if (path === "/v2/") return HttpServerResponse.jsonUnsafe({})

    const fault = take(path)
    // Silent for 2 s of real time, far past a client timeout under TestClock; a handler
    // that never ended would hold the server's shutdown open.
    if (fault?._tag === "Hang") yield* TestClock.withLive(Effect.sleep("2 seconds"))
    if (fault?._tag === "Status") {
      if (fault.after !== undefined) yield* fault.after
      return HttpServerResponse.text(`fault ${fault.status}`, { status: fault.status, headers: fault.headers ?? {} })
    }

    const match = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(path)
    if (match === null) return HttpServerResponse.empty({ status: 404 })
    const [, repository, kind, object] = match as unknown as [string, string, string, string]
    const found = kind === "blobs" ? blobs.get(object) : manifests.get(`${repository}@${object}`)
    if (found === undefined) {
      const code = kind === "blobs" ? "BLOB_UNKNOWN" : "MANIFEST_UNKNOWN"
      return HttpServerResponse.jsonUnsafe({ errors: [{ code, message: `${kind} unknown` }] }, { status: 404 })
    }
    let bytes = found.bytes
    if (fault?._tag === "Corrupt") {
      bytes = Uint8Array.from(bytes)
      bytes[0] = bytes[0]! ^ 0xff
    }
    const headers: Record<string, string> = {
      "content-type": found.mediaType,
      "docker-content-digest": digestOf(found.bytes)
    }
    let status = 200
    const from = range === undefined || fault?._tag === "IgnoreRange" ? 0 : Number(/^bytes=(\d+)-$/.exec(range)?.[1] ?? 0)
    if (from > 0) {
      status = 206
      headers["content-range"] = `bytes ${from}-${bytes.length - 1}/${bytes.length}`
      bytes = bytes.subarray(from)
    }
    if (fault?._tag === "Cut") {
      // Sends the first bytes, then fails the body: the server resets the connection mid-response.
      const head = bytes.subarray(0, fault.after)
      return HttpServerResponse.stream(
        Stream.concat(Stream.make(head), Stream.fail("cut")),
        { status, headers, contentLength: bytes.length }
      )
    }
    return HttpServerResponse.uint8Array(bytes, { status, headers })
  })

  const context = yield* Layer.build(NodeHttpServer.layer(() => http.createServer(), { port: 0, host: "127.0.0.1" }))
    .pipe(Effect.orDie)
  const address = Context.get(context, HttpServer.HttpServer).address
  const host = address._tag === "UnixPathAddress" ? "unknown" : `127.0.0.1:${address.port}`
  yield* HttpServer.serveEffect()(handler).pipe(Effect.provideContext(context))

  return {
    host,
    blob: (bytes, mediaType = "application/octet-stream") => {
      const digest = digestOf(bytes)
      blobs.set(digest, { bytes, mediaType })
      return { mediaType, digest, size: bytes.length }
    },
    manifest: (repository, document, options) => {
      const bytes = Buffer.from(JSON.stringify(document))
      const mediaType = options?.mediaType ??
        (typeof document === "object" && document !== null && "mediaType" in document
          ? String(document.mediaType)
          : "application/vnd.oci.image.manifest.v1+json")
      const digest = digestOf(bytes)
      manifests.set(`${repository}@${digest}`, { bytes, mediaType })
      if (options?.tag !== undefined) manifests.set(`${repository}@${options.tag}`, { bytes, mediaType })
      return { mediaType, digest, size: bytes.length }
    },
    fault: (path, fault, times = 1) => void plan.push({ path, fault, times }),
    requireToken: (options) => {
      token = options
    },
    seen
  }
})

/**
 * Serves the image of an OCI archive (as the fixture builders write) as
 * `repository:tag`, returning its layers' and config's descriptors.
 */
export const serveArchive = (registry: FaultyRegistry, archive: string, repository: string, tag: string) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-serve-"))
  try {
    execFileSync("tar", ["-xf", archive, "-C", dir])
    const read = (digest: string) => fs.readFileSync(path.join(dir, "blobs", ...digest.split(":")))
    const index = JSON.parse(fs.readFileSync(path.join(dir, "index.json"), "utf8")) as {
      manifests: ReadonlyArray<{ digest: string }>
    }
    const manifest = JSON.parse(read(index.manifests[0]!.digest).toString("utf8")) as {
      config: Served
      layers: ReadonlyArray<Served>
    }
    const config = registry.blob(read(manifest.config.digest), manifest.config.mediaType)
    const layers = manifest.layers.map((layer) => registry.blob(read(layer.digest), layer.mediaType))
    const served = registry.manifest(repository, manifest, { tag })
    return { manifest: served, config, layers, document: manifest }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
