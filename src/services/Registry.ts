/**
 * A client of OCI distribution registries (Docker Hub, `docker-registry`,
 * ghcr.io, ...), on Effect's `HttpClient`.
 *
 * What containerd's remotes/docker resolver and fetcher do, with the gaps they
 * are known for closed:
 * - manifests are asked for with `Accept` naming the OCI and Docker v2 index and
 *   manifest types; anything else (schema 1) is refused as unsupported, as is a
 *   manifest over 4 MiB;
 * - every byte is checked against the digest and size it was fetched by;
 * - bearer tokens come from the `WWW-Authenticate` challenge and are cached per
 *   registry, realm, service and scope until they expire; once a registry has
 *   challenged, later requests carry a token from the start, so 20 pulls cost one
 *   token fetch. Basic credentials come from the options, or from the request
 *   (`RegistryAuth`), whose tokens stay with it;
 * - plain HTTP only for hosts marked insecure, and for loopback hosts;
 * - redirects are followed (bounded), dropping credentials across origins;
 * - 429 and 5xx are retried on a `Schedule` that honours `Retry-After`
 *   (containerd's issue 10447: it does not);
 * - a blob download that breaks off is resumed with a `Range` request from the
 *   last byte received;
 * - every request has a timeout for its response to start, and a blob body one
 *   for each read, so a registry that hangs fails instead of hanging its caller.
 *
 * Authentication (challenges, token keys, Basic credentials) is in
 * `registry/Auth.ts`, the mapping of HTTP failures to reasons in
 * `registry/HttpErrors.ts`.
 */
import { Cache, Context, Duration, Effect, Exit, Layer, type Redacted, Schedule, type Scope, Stream } from "effect"
import { HttpClient, HttpClientRequest, type HttpClientResponse } from "effect/http"
import { NodeHttpClient } from "@effect/platform-node"
import * as crypto from "node:crypto"
import { STATUS_CODES } from "node:http"
import { type Descriptor, documentMediaType, isIndexMediaType, isManifestMediaType, manifestAcceptTypes } from "../domain/Image.ts"
import type { Reference } from "../domain/Reference.ts"
import { keyParts } from "../internal/Key.ts"
import {
  DataLoss,
  DeadlineExceeded,
  InvalidArgument,
  RegistryError,
  registryError,
  Unauthorized,
  Unavailable,
  Unknown
} from "../domain/RegistryError.ts"
import { basicAuth, type Challenge, parseChallenge, pullScope, RegistryAuth, type RequestCredentials, tokenKey } from "./registry/Auth.ts"
import { describeCause, registrySays, statusError, transportError } from "./registry/HttpErrors.ts"

export { parseChallenge, RegistryAuth, requestCredentials, type RequestCredentials } from "./registry/Auth.ts"

/** How to talk to one registry host (`domain[:port]` as references name it). */
export interface RegistryHostOptions {
  /** Plain HTTP instead of HTTPS. Loopback hosts (localhost, 127.0.0.0/8, ::1) always use it. */
  readonly insecure?: boolean | undefined
  /** Credentials for basic auth, and for bearer token requests. */
  readonly username?: string | undefined
  readonly password?: Redacted.Redacted<string> | string | undefined
}

/** Settings of the registry client. */
export interface RegistryOptions {
  /** Per-host settings, keyed by the reference's domain: `"registry.local:5000"`. */
  readonly hosts?: Readonly<Record<string, RegistryHostOptions>> | undefined
  /** How long a response may take to start, and a blob body between two reads. Default 30 s. */
  readonly timeout?: Duration.Input | undefined
  /** How often a 429/5xx answer or a broken blob download is retried. Default 5. */
  readonly retries?: number | undefined
  /** The first retry delay, doubling after each; `Retry-After` overrides it when longer. Default 500 ms. */
  readonly retryDelay?: Duration.Input | undefined
  /** Redirects followed per request. Default 10, as containerd. */
  readonly maxRedirects?: number | undefined
}

/** A manifest or index as the registry served it. */
export interface ResolvedManifest {
  readonly descriptor: Descriptor
  readonly bytes: Uint8Array
}

/** The registry client. */
export interface RegistryShape {
  /** Resolves a reference (its digest if pinned, else its tag) to its manifest or index. */
  readonly resolve: (reference: Reference) => Effect.Effect<ResolvedManifest, RegistryError>
  /**
   * Fetches a document (a manifest, an index, a config) by descriptor, whole and
   * verified. Manifests and indexes over 4 MiB are refused, other documents over 16 MiB.
   */
  readonly fetchDocument: (reference: Reference, descriptor: Descriptor) => Effect.Effect<Uint8Array, RegistryError>
  /**
   * Streams a blob from `offset` (default 0), resuming with `Range` requests when
   * the download breaks off. Size is always checked; the digest when the stream
   * starts at 0 (a later start has not seen the first bytes: whoever holds them,
   * such as containerd's ingest, checks the whole).
   */
  readonly fetchBlob: (
    reference: Reference,
    descriptor: Descriptor,
    options?: { readonly offset?: number | undefined }
  ) => Stream.Stream<Uint8Array, RegistryError>
  /**
   * Checks credentials against a registry (`docker login`): pings `/v2/` and
   * follows its challenge, Basic or a Bearer token fetched with them; fails
   * `Unauthorized` when the registry refuses them. Nothing of them is kept.
   */
  readonly login: (domain: string, credentials: RequestCredentials) => Effect.Effect<void, RegistryError>
}

/** How we introduce ourselves to registries (their access logs show it). */
export const USER_AGENT = "effect-containerd"

const MiB = 1024 * 1024
/** The largest manifest or index accepted, as containerd's resolver. */
export const MAX_MANIFEST_BYTES = 4 * MiB
/** The largest other document (an image config) read into memory. */
export const MAX_DOCUMENT_BYTES = 16 * MiB

/** Whether a host is this machine, which containerd and Docker reach over plain HTTP. */
const isLoopback = (domain: string): boolean => {
  const host = domain.replace(/:\d+$/, "")
  return host === "localhost" || host === "[::1]" || /^127(\.\d{1,3}){3}$/.test(host)
}

/** The host serving a registry's API: Docker Hub's is not `docker.io` itself. */
const apiHost = (domain: string): string => (domain === "docker.io" ? "registry-1.docker.io" : domain)

/** A download that broke off (the connection, or silence past the timeout): resumable. */
class Cut {
  readonly _tag = "Cut"
  constructor(readonly message: string, readonly timedOut: boolean, readonly cause: unknown) {}
}

/** A digest's algorithm as node:crypto names it, or undefined if we cannot check it. */
const hashOf = (digest: string): crypto.Hash | undefined => {
  const algorithm = digest.slice(0, digest.indexOf(":"))
  return algorithm === "sha256" || algorithm === "sha384" || algorithm === "sha512"
    ? crypto.createHash(algorithm)
    : undefined
}

/** Makes the registry client over the `HttpClient` in context. */
export const makeRegistry = Effect.fnUntraced(function*(options: RegistryOptions = {}) {
  const timeout = Duration.fromInputUnsafe(options.timeout ?? Duration.seconds(30))
  const retries = options.retries ?? 5
  const retrySchedule = Schedule.exponential(options.retryDelay ?? Duration.millis(500))
  // Own keys only: the domain comes from a request's reference.
  const hostOptions = (domain: string): RegistryHostOptions =>
    options.hosts !== undefined && Object.hasOwn(options.hosts, domain) ? options.hosts[domain]! : {}

  const http = (yield* HttpClient.HttpClient).pipe(
    HttpClient.mapRequest(HttpClientRequest.setHeader("user-agent", USER_AGENT)),
    // Each request's connection is released when the scope that made it closes.
    HttpClient.withScope,
    HttpClient.followRedirects(options.maxRedirects ?? 10),
    // Per attempt, so that waiting out a Retry-After does not count against it.
    HttpClient.transformResponse(Effect.timeout(timeout)),
    HttpClient.retryTransient({ retryOn: "response-only", schedule: retrySchedule, times: retries })
  )

  const rootUrl = (domain: string) => {
    const scheme = hostOptions(domain).insecure === true || isLoopback(domain) ? "http" : "https"
    return `${scheme}://${apiHost(domain)}/v2/`
  }
  const baseUrl = (reference: Reference) => `${rootUrl(reference.domain)}${reference.path}`

  // Tokens by registry, realm, service and scope, kept until they expire.
  const tokens = yield* Cache.makeWith(
    (key: string) => {
      const [domain = "", realm = "", service = "", scope = ""] = keyParts(key)
      return fetchToken(domain, realm, service, scope, hostOptions(domain))
    },
    {
      capacity: 1024,
      timeToLive: (exit) => Exit.isSuccess(exit) ? exit.value.lifetime : Duration.zero
    }
  )
  // The last challenge of each registry, so later requests authenticate up front.
  const challenges = new Map<string, Challenge>()

  /** A token for `scope` ("" for none, as a login asks) fetched with `credentials`. */
  const fetchToken = (domain: string, realm: string, service: string, scope: string, credentials: RegistryHostOptions | RequestCredentials) =>
    Effect.scoped(Effect.gen(function*() {
      const url = new URL(realm)
      if (service !== "") url.searchParams.set("service", service)
      if (scope !== "") url.searchParams.set("scope", scope)
      if (credentials.username !== undefined) url.searchParams.set("account", credentials.username)
      const basic = basicAuth(credentials)
      const request = HttpClientRequest.get(url.toString(), {
        headers: basic === undefined ? {} : { authorization: basic }
      })
      const what = `token for ${scope} from ${realm}`
      const response = yield* http.execute(request).pipe(Effect.mapError(transportError(timeout, domain, domain, what)))
      if (response.status !== 200) return yield* Effect.fail(yield* statusError(timeout, domain, domain, what, response))
      const body = yield* response.json.pipe(
        Effect.mapError((cause) => registryError(Unauthorized, domain, `${what}: not JSON`, { cause }))
      )
      const { token, access_token, expires_in } = body as { token?: string; access_token?: string; expires_in?: number }
      const value = token ?? access_token
      if (typeof value !== "string" || value === "") {
        return yield* Effect.fail(registryError(Unauthorized, domain, `${what}: the answer has no token`))
      }
      // The distribution spec's default lifetime is 60 s; renew a little early.
      const seconds = typeof expires_in === "number" && expires_in > 0 ? expires_in : 60
      return { token: value, lifetime: Duration.seconds(Math.max(seconds - 5, 1)) }
    }))

  /** The credentials a request to `domain` uses: the request's own, else the host's. */
  const credentialsFor = (domain: string) =>
    Effect.map(RegistryAuth, (own): RegistryHostOptions | RequestCredentials => own ?? hostOptions(domain))

  /**
   * The Authorization header the registry's last challenge calls for, if any. A
   * request's own credentials get their tokens from their own memo, never the cache.
   */
  const authorization = (reference: Reference) =>
    Effect.gen(function*() {
      const challenge = challenges.get(reference.domain)
      if (challenge === undefined) return undefined
      const own = yield* RegistryAuth
      if (challenge.scheme === "basic") return basicAuth(own ?? hostOptions(reference.domain))
      const key = tokenKey(reference, challenge)
      if (own === undefined) return `Bearer ${(yield* Cache.get(tokens, key)).token}`
      const known = own.tokens.get(key)
      if (known !== undefined) return `Bearer ${known}`
      const { token } = yield* fetchToken(reference.domain, challenge.realm, challenge.service ?? "", pullScope(reference), own)
      own.tokens.set(key, token)
      return `Bearer ${token}`
    })

  const forgetToken = (reference: Reference) =>
    Effect.gen(function*() {
      const challenge = challenges.get(reference.domain)
      if (challenge?.scheme !== "bearer") return
      const key = tokenKey(reference, challenge)
      const own = yield* RegistryAuth
      if (own !== undefined) own.tokens.delete(key)
      else yield* Cache.invalidate(tokens, key)
    })

  /**
   * Sends a GET, authenticating as the registry asks: with what its last
   * challenge calls for, and once more after a 401 with a fresh challenge.
   */
  const get = (
    reference: Reference,
    url: string,
    what: string,
    headers: Readonly<Record<string, string>>
  ): Effect.Effect<HttpClientResponse.HttpClientResponse, RegistryError, Scope.Scope> =>
    Effect.gen(function*() {
      const send = (auth: string | undefined) =>
        http.execute(HttpClientRequest.get(url, { headers: auth === undefined ? headers : { ...headers, authorization: auth } }))
          .pipe(Effect.mapError(transportError(timeout, reference.toString(), reference.domain, what)))
      const first = yield* authorization(reference)
      const response = yield* send(first)
      if (response.status !== 401) return response
      const challenge = parseChallenge(response.headers["www-authenticate"])
      if (challenge === undefined || (challenge.scheme === "basic" && basicAuth(yield* credentialsFor(reference.domain)) === undefined)) {
        return yield* Effect.fail(registryError(
          Unauthorized,
          reference.toString(),
          `${what}: ${reference.domain} requires authentication` +
            (challenge === undefined ? " but sent no usable challenge" : " and no credentials are configured for it"),
          { status: 401 }
        ))
      }
      // A rejected token is not asked for again from the cache.
      if (first !== undefined) yield* forgetToken(reference)
      challenges.set(reference.domain, challenge)
      const retried = yield* send(yield* authorization(reference))
      if (retried.status === 401) {
        return yield* Effect.fail(registryError(
          Unauthorized,
          reference.toString(),
          `${what}: ${reference.domain} refused our credentials${yield* registrySays(timeout, retried)}`,
          { status: 401 }
        ))
      }
      return retried
    })

  /** Reads a whole body of at most `limit` bytes. */
  const readLimited = (reference: Reference, what: string, response: HttpClientResponse.HttpClientResponse, limit: number) =>
    Effect.gen(function*() {
      const declared = Number(response.headers["content-length"] ?? Number.NaN)
      const tooLarge = (size: number | string) =>
        registryError(InvalidArgument, reference.toString(), `${what}: ${size} bytes is over the limit of ${limit}`)
      if (declared > limit) return yield* Effect.fail(tooLarge(declared))
      const chunks: Array<Uint8Array> = []
      let size = 0
      yield* response.stream.pipe(
        Stream.timeoutOrElse({ duration: timeout, orElse: () => Stream.fail(new Cut("stalled", true, undefined)) }),
        Stream.mapError((error) =>
          error instanceof Cut
            ? registryError(DeadlineExceeded, reference.toString(), `${what}: the body stalled for ${Duration.format(timeout)}`)
            : registryError(Unavailable, reference.toString(), `${what}: the body broke off: ${describeCause(error)}`, { cause: error })
        ),
        Stream.runForEach((chunk) => {
          size += chunk.length
          if (size > limit) return Effect.fail(tooLarge(`more than ${limit}`))
          chunks.push(chunk)
          return Effect.void
        })
      )
      return Buffer.concat(chunks)
    })

  /** Checks what was received against the descriptor: its size, and its digest when `hash` saw all of it. */
  const checkContent = (reference: Reference, what: string, descriptor: Descriptor, size: number, hash: crypto.Hash | undefined) => {
    if (size !== descriptor.size) {
      return Effect.fail(registryError(DataLoss, reference.toString(), `${what}: got ${size} bytes, expected ${descriptor.size}`))
    }
    if (hash === undefined) return Effect.void
    const actual = `${descriptor.digest.slice(0, descriptor.digest.indexOf(":"))}:${hash.digest("hex")}`
    return actual === descriptor.digest
      ? Effect.void
      : Effect.fail(registryError(DataLoss, reference.toString(), `${what}: content has digest ${actual}, expected ${descriptor.digest}`))
  }

  const verify = (reference: Reference, what: string, descriptor: Descriptor, bytes: Uint8Array) => {
    const hash = hashOf(descriptor.digest)
    return hash === undefined
      ? Effect.fail(registryError(InvalidArgument, reference.toString(), `${what}: digest algorithm of ${descriptor.digest} is not supported`))
      : checkContent(reference, what, descriptor, bytes.length, hash.update(bytes))
  }

  const accept = { accept: manifestAcceptTypes.join(", ") }

  const resolve = Effect.fn("Registry.resolve")(function*(reference: Reference) {
    const what = `resolving ${reference.object}`
    const bytes = yield* Effect.scoped(Effect.gen(function*() {
      const response = yield* get(reference, `${baseUrl(reference)}/manifests/${reference.object}`, what, accept)
      if (response.status !== 200) return yield* Effect.fail(yield* statusError(timeout, reference.toString(), reference.domain, what, response))
      const bytes = yield* readLimited(reference, what, response, MAX_MANIFEST_BYTES)
      return { bytes, contentType: response.headers["content-type"], served: response.headers["docker-content-digest"] }
    }))
    const digest = `sha256:${crypto.createHash("sha256").update(bytes.bytes).digest("hex")}`
    if (reference.digest !== undefined) {
      yield* verify(reference, what, { mediaType: "", digest: reference.digest, size: bytes.bytes.length }, bytes.bytes)
    } else if (bytes.served !== undefined && bytes.served.startsWith("sha256:") && bytes.served !== digest) {
      return yield* Effect.fail(registryError(
        DataLoss,
        reference.toString(),
        `${what}: the manifest has digest ${digest} but the registry says ${bytes.served}`
      ))
    }
    const document = yield* Effect.try({
      try: () => JSON.parse(Buffer.from(bytes.bytes).toString("utf8")) as unknown,
      catch: () => registryError(InvalidArgument, reference.toString(), `${what}: the manifest is not JSON`)
    })
    const mediaType = documentMediaType(bytes.contentType, document)
    if (mediaType === undefined) {
      const said = typeof document === "object" && document !== null && "mediaType" in document
        ? String(document.mediaType)
        : bytes.contentType ?? "none"
      return yield* Effect.fail(registryError(
        InvalidArgument,
        reference.toString(),
        `${what}: unsupported manifest media type ${said} (supported: ${manifestAcceptTypes.join(", ")})`
      ))
    }
    return { descriptor: { mediaType, digest: reference.digest ?? digest, size: bytes.bytes.length }, bytes: bytes.bytes }
  })

  const isManifest = (mediaType: string) => isIndexMediaType(mediaType) || isManifestMediaType(mediaType)

  const fetchDocument = Effect.fn("Registry.fetchDocument")(function*(reference: Reference, descriptor: Descriptor) {
    const what = `fetching ${descriptor.digest}`
    const limit = isManifest(descriptor.mediaType) ? MAX_MANIFEST_BYTES : MAX_DOCUMENT_BYTES
    if (descriptor.size > limit) {
      return yield* Effect.fail(registryError(InvalidArgument, reference.toString(), `${what}: ${descriptor.size} bytes is over the limit of ${limit}`))
    }
    const endpoint = isManifest(descriptor.mediaType) ? "manifests" : "blobs"
    const bytes = yield* Effect.scoped(Effect.gen(function*() {
      const response = yield* get(reference, `${baseUrl(reference)}/${endpoint}/${descriptor.digest}`, what, isManifest(descriptor.mediaType) ? accept : {})
      if (response.status !== 200) return yield* Effect.fail(yield* statusError(timeout, reference.toString(), reference.domain, what, response))
      return yield* readLimited(reference, what, response, limit)
    }))
    yield* verify(reference, what, descriptor, bytes)
    return bytes
  })

  const fetchBlob = (
    reference: Reference,
    descriptor: Descriptor,
    fetchOptions?: { readonly offset?: number | undefined }
  ): Stream.Stream<Uint8Array, RegistryError> =>
    Stream.suspend(() => {
      const what = `fetching ${descriptor.digest}`
      const start = fetchOptions?.offset ?? 0
      const hash = start === 0 ? hashOf(descriptor.digest) : undefined
      let received = start

      /** One request for the rest of the blob, from what has been received so far. */
      const attempt = Stream.unwrap(Effect.gen(function*() {
        const offset = received
        const response = yield* get(
          reference,
          `${baseUrl(reference)}/blobs/${descriptor.digest}`,
          what,
          offset > 0 ? { range: `bytes=${offset}-` } : {}
        )
        let skip = 0
        if (offset > 0 && response.status === 206) {
          const range = /^bytes (\d+)-/.exec(response.headers["content-range"] ?? "")
          if (range === null || Number(range[1]) !== offset) {
            return yield* Effect.fail(registryError(
              Unknown,
              reference.toString(),
              `${what}: asked for bytes from ${offset}, got range ${response.headers["content-range"] ?? "none"}`,
              { status: 206 }
            ))
          }
        } else if (response.status === 200) {
          // A registry that ignores Range sends everything again: skip what we have.
          skip = offset
        } else {
          return yield* Effect.fail(yield* statusError(timeout, reference.toString(), reference.domain, what, response))
        }
        return response.stream.pipe(
          Stream.timeoutOrElse({
            duration: timeout,
            orElse: () => Stream.fail(new Cut(`no data for ${Duration.format(timeout)}`, true, undefined))
          }),
          Stream.mapError((error) => (error instanceof Cut ? error : new Cut(describeCause(error), false, error))),
          Stream.map((chunk) => {
            if (skip === 0) return chunk
            const dropped = Math.min(skip, chunk.length)
            skip -= dropped
            return chunk.subarray(dropped)
          }),
          Stream.filter((chunk) => chunk.length > 0)
        )
      }))

      const checkEnd = Effect.suspend(() => checkContent(reference, what, descriptor, received, hash))

      return attempt.pipe(
        // Resumes from the last byte after a break; the count restarts whenever bytes flow again.
        Stream.retry(($) =>
          $(Schedule.max([retrySchedule, Schedule.recurs(retries)])).pipe(
            Schedule.while(({ input }) => input instanceof Cut)
          )
        ),
        Stream.mapError((error) =>
          error instanceof Cut
            ? registryError(
              error.timedOut ? DeadlineExceeded : Unavailable,
              reference.toString(),
              `${what}: the download broke off at byte ${received} of ${descriptor.size} after ${retries} resumes: ${error.message}`,
              { cause: error.cause }
            )
            : error
        ),
        Stream.mapEffect((chunk) => {
          received += chunk.length
          if (received > descriptor.size) {
            return Effect.fail(registryError(DataLoss, reference.toString(), `${what}: more than the ${descriptor.size} bytes expected`))
          }
          hash?.update(chunk)
          return Effect.succeed(chunk)
        }),
        Stream.concat(Stream.fromEffectDrain(checkEnd))
      )
    }).pipe(Stream.withSpan("Registry.fetchBlob"))

  const login = Effect.fn("Registry.login")(function*(domain: string, credentials: RequestCredentials) {
    const url = rootUrl(domain)
    const what = `logging in to ${domain}`
    yield* Effect.scoped(Effect.gen(function*() {
      const send = (auth: string | undefined) =>
        http.execute(HttpClientRequest.get(url, { headers: auth === undefined ? {} : { authorization: auth } }))
          .pipe(Effect.mapError(transportError(timeout, domain, domain, what)))
      // As dockerd's loginV2: the unauthenticated ping says how to authenticate; a registry that asks nothing accepts anyone.
      const ping = yield* send(undefined)
      if (ping.status === 200) return
      if (ping.status !== 401) return yield* Effect.fail(yield* statusError(timeout, domain, domain, what, ping))
      const challenge = parseChallenge(ping.headers["www-authenticate"])
      if (challenge === undefined) {
        return yield* Effect.fail(registryError(Unauthorized, domain, `${what}: ${domain} sent no usable challenge`, { status: 401 }))
      }
      const auth = challenge.scheme === "basic"
        ? basicAuth(credentials)
        : `Bearer ${(yield* fetchToken(domain, challenge.realm, challenge.service ?? "", "", credentials)).token}`
      const answer = yield* send(auth)
      if (answer.status === 200) return
      // dockerd's words for a refused login.
      return yield* Effect.fail(registryError(
        Unauthorized,
        domain,
        `login attempt to ${url} failed with status: ${answer.status} ${STATUS_CODES[answer.status] ?? ""}`.trimEnd(),
        { status: answer.status }
      ))
    }))
  })

  return Registry.of({ resolve, fetchDocument, fetchBlob, login })
})

/** The registry client service. */
export class Registry extends Context.Service<Registry, RegistryShape>()("effect-containerd/Registry") {
  /** A registry client over the `HttpClient` the caller provides. */
  static readonly layerWith = (options?: RegistryOptions): Layer.Layer<Registry, never, HttpClient.HttpClient> =>
    Layer.effect(Registry, makeRegistry(options))

  /** A registry client over Node's undici. */
  static readonly layer = (options?: RegistryOptions): Layer.Layer<Registry> =>
    Registry.layerWith(options).pipe(Layer.provide(NodeHttpClient.layerUndici))
}
