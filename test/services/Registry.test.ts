import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as crypto from "node:crypto"
import { MediaType } from "../../src/domain/Image.ts"
import { parseReference } from "../../src/domain/Reference.ts"
import type { RegistryError } from "../../src/domain/RegistryError.ts"
import { parseChallenge, Registry, RegistryAuth, type RegistryOptions, requestCredentials } from "../../src/services/Registry.ts"
import { type FaultyRegistry, startFaultyRegistry } from "../support/FaultyRegistry.ts"

/** Waits in real time (the registry answers over real sockets) until `condition` holds. */
const until = (condition: () => boolean, what: string) =>
  Effect.gen(function*() {
    for (let waited = 0; !condition(); waited += 5) {
      if (waited > 10_000) return yield* Effect.die(`gave up waiting for ${what}`)
      yield* TestClock.withLive(Effect.sleep("5 millis"))
    }
  })

const settleLive = TestClock.withLive(Effect.sleep("150 millis"))

/** An image of one random layer, served as `repo:v1`. */
const serveImage = (registry: FaultyRegistry, repository = "app", layerSize = 100_000) => {
  const layerBytes = crypto.randomBytes(layerSize)
  const layer = registry.blob(layerBytes, MediaType.OciManifest.replace("manifest", "layer").replace("+json", ".tar"))
  const config = registry.blob(Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [layer.digest] } })), MediaType.OciConfig)
  const manifest = registry.manifest(repository, {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config,
    layers: [layer]
  }, { tag: "v1" })
  return { layerBytes, layer, config, manifest }
}

const withRegistry = <A, E>(
  options: RegistryOptions,
  body: (registry: FaultyRegistry, client: Registry["Service"]) => Effect.Effect<A, E, never>
) =>
  Effect.gen(function*() {
    const registry = yield* startFaultyRegistry
    const client = Context.get(yield* Layer.build(Registry.layer(options)), Registry)
    return yield* body(registry, client)
  }).pipe(Effect.scoped)

const ref = (input: string) => parseReference(input).pipe(Effect.orDie)

const collect = (stream: Stream.Stream<Uint8Array, RegistryError>) =>
  Effect.map(Stream.runCollect(stream), (chunks) => Buffer.concat(chunks))

const reasonOf = (exit: Exit.Exit<unknown, RegistryError>) =>
  Exit.isFailure(exit) ? exit.cause.reasons.find((r) => r._tag === "Fail")?.error : undefined

describe("Registry", () => {
  it.effect("resolves a tag to a verified manifest, asking for OCI and Docker v2 types", () =>
    withRegistry({}, (registry, client) =>
      Effect.gen(function*() {
        const image = serveImage(registry)
        const resolved = yield* client.resolve(yield* ref(`${registry.host}/app:v1`))
        assert.deepStrictEqual(resolved.descriptor, image.manifest)
        const accept = registry.seen[0]!
        assert.strictEqual(accept.path, "/v2/app/manifests/v1")
        const config = yield* client.fetchDocument(yield* ref(`${registry.host}/app:v1`), image.config)
        assert.strictEqual(config.length, image.config.size)
        const byDigest = yield* client.resolve(yield* ref(`${registry.host}/app@${image.manifest.digest}`))
        assert.strictEqual(byDigest.descriptor.digest, image.manifest.digest)
      })))

  it.effect("retries a 500 after the backoff delay, then succeeds", () =>
    withRegistry({ retryDelay: "500 millis" }, (registry, client) =>
      Effect.gen(function*() {
        serveImage(registry)
        registry.fault("/manifests/v1", { _tag: "Status", status: 500 })
        const fiber = yield* Effect.forkChild(client.resolve(yield* ref(`${registry.host}/app:v1`)))
        yield* until(() => registry.seen.length === 1, "the first request")
        yield* settleLive
        yield* TestClock.adjust("499 millis")
        yield* settleLive
        assert.strictEqual(registry.seen.length, 1, "no retry before the delay")
        yield* TestClock.adjust("1 millis")
        yield* Fiber.join(fiber)
        assert.strictEqual(registry.seen.length, 2)
      })))

  it.effect("waits out Retry-After on a 429 even when it is longer than the backoff", () =>
    withRegistry({ retryDelay: "500 millis" }, (registry, client) =>
      Effect.gen(function*() {
        serveImage(registry)
        registry.fault("/manifests/v1", { _tag: "Status", status: 429, headers: { "retry-after": "7" } })
        const fiber = yield* Effect.forkChild(client.resolve(yield* ref(`${registry.host}/app:v1`)))
        yield* until(() => registry.seen.length === 1, "the first request")
        yield* settleLive
        yield* TestClock.adjust("6999 millis")
        yield* settleLive
        assert.strictEqual(registry.seen.length, 1, "no retry before Retry-After")
        yield* TestClock.adjust("1 millis")
        yield* Fiber.join(fiber)
        assert.strictEqual(registry.seen.length, 2)
      })))

  it.effect("gives up after the configured retries with the status's reason", () =>
    withRegistry({ retryDelay: "1 second", retries: 2 }, (registry, client) =>
      Effect.gen(function*() {
        serveImage(registry)
        registry.fault("/manifests/v1", { _tag: "Status", status: 503 }, 10)
        const fiber = yield* Effect.forkChild(client.resolve(yield* ref(`${registry.host}/app:v1`)))
        for (const [requests, delay] of [[1, "1 second"], [2, "2 seconds"]] as const) {
          yield* until(() => registry.seen.length === requests, `request ${requests}`)
          yield* settleLive
          yield* TestClock.adjust(delay)
        }
        const error = reasonOf(yield* Fiber.await(fiber))
        assert.strictEqual(error?.reason._tag, "Unavailable")
        assert.strictEqual(error?.reason.status, 503)
        assert.strictEqual(registry.seen.length, 3)
      })))

  it.effect("fails a blob whose bytes do not match its digest", () =>
    withRegistry({}, (registry, client) =>
      Effect.gen(function*() {
        const image = serveImage(registry)
        registry.fault(`/blobs/${image.layer.digest}`, { _tag: "Corrupt" })
        const exit = yield* Effect.exit(collect(client.fetchBlob(yield* ref(`${registry.host}/app:v1`), image.layer)))
        const error = reasonOf(exit)
        assert.strictEqual(error?.reason._tag, "DataLoss")
        assert.include(error?.message, `expected ${image.layer.digest}`)
      })))

  it.effect("resumes a blob cut off mid-body with a Range request, and copes with a registry ignoring it", () =>
    withRegistry({ retryDelay: "1 millis" }, (registry, client) =>
      Effect.gen(function*() {
        const image = serveImage(registry, "app", 300_000)
        const path = `/blobs/${image.layer.digest}`
        registry.fault(path, { _tag: "Cut", after: 65_536 })
        registry.fault(path, { _tag: "Cut", after: 65_536 })
        registry.fault(path, { _tag: "IgnoreRange" })
        const fiber = yield* Effect.forkChild(collect(client.fetchBlob(yield* ref(`${registry.host}/app:v1`), image.layer)))
        // The resume delays are 1 ms and 2 ms of test time.
        while (fiber.pollUnsafe() === undefined) {
          yield* TestClock.withLive(Effect.sleep("5 millis"))
          yield* TestClock.adjust("2 millis")
        }
        const bytes = yield* Fiber.join(fiber)
        assert.isTrue(Buffer.from(bytes).equals(image.layerBytes))
        const ranges = registry.seen.filter((s) => s.path.endsWith(path)).map((s) => s.range)
        assert.strictEqual(ranges.length, 3)
        assert.strictEqual(ranges[0], undefined)
        const [first, second] = ranges.slice(1).map((r) => Number(/^bytes=(\d+)-$/.exec(r ?? "")?.[1]))
        assert.isTrue(first! > 0 && second! > first!, `ranges ${ranges.join(", ")} resume from what was received`)
      })))

  it.effect("resumes from a given offset with a Range request", () =>
    withRegistry({}, (registry, client) =>
      Effect.gen(function*() {
        const image = serveImage(registry)
        const rest = yield* collect(client.fetchBlob(yield* ref(`${registry.host}/app:v1`), image.layer, { offset: 1234 }))
        assert.isTrue(Buffer.from(rest).equals(image.layerBytes.subarray(1234)))
        assert.strictEqual(registry.seen[0]?.range, "bytes=1234-")
      })))

  it.effect("times out a registry that never answers", () =>
    withRegistry({ timeout: "10 seconds" }, (registry, client) =>
      Effect.gen(function*() {
        serveImage(registry)
        registry.fault("/manifests/v1", { _tag: "Hang" })
        const fiber = yield* Effect.forkChild(client.resolve(yield* ref(`${registry.host}/app:v1`)))
        yield* until(() => registry.seen.length === 1, "the request")
        yield* settleLive
        yield* TestClock.adjust("10 seconds")
        const error = reasonOf(yield* Fiber.await(fiber))
        assert.strictEqual(error?.reason._tag, "DeadlineExceeded")
        assert.include(error?.message, "no response")
      })))

  it.effect("gets a bearer token from the challenge, reuses it per scope, and renews it when it expires", () =>
    withRegistry({}, (registry, client) =>
      Effect.gen(function*() {
        const image = serveImage(registry, "team/app")
        registry.requireToken({ expiresIn: 120 })
        const reference = yield* ref(`${registry.host}/team/app:v1`)
        yield* client.resolve(reference)
        yield* client.fetchDocument(reference, image.config)
        const tokenRequests = () => registry.seen.filter((s) => s.path === "/token")
        assert.strictEqual(tokenRequests().length, 1, "one token for both requests")
        assert.deepStrictEqual(
          registry.seen.map((s) => [s.path.replace(/sha256:\w+/, "<digest>"), s.authorization ?? "none"]),
          [
            ["/v2/team/app/manifests/v1", "none"],
            ["/token", "none"],
            ["/v2/team/app/manifests/v1", "Bearer token-1"],
            ["/v2/team/app/blobs/<digest>", "Bearer token-1"]
          ]
        )
        yield* TestClock.adjust("2 minutes")
        yield* client.fetchDocument(reference, image.config)
        assert.strictEqual(tokenRequests().length, 2, "a new token after expiry")
        assert.strictEqual(registry.seen.at(-1)?.authorization, "Bearer token-2")
      })))

  it.effect("sends configured basic credentials to the token endpoint", () =>
    Effect.gen(function*() {
      const registry = yield* startFaultyRegistry
      const client = Context.get(
        yield* Layer.build(Registry.layer({ hosts: { [registry.host]: { username: "ada", password: "s3cret" } } })),
        Registry
      )
      serveImage(registry)
      registry.requireToken({ expiresIn: 60 })
      yield* client.resolve(yield* ref(`${registry.host}/app:v1`))
      const token = registry.seen.find((s) => s.path === "/token")
      assert.strictEqual(token?.authorization, `Basic ${Buffer.from("ada:s3cret").toString("base64")}`)
    }).pipe(Effect.scoped))

  it.effect("a request's own credentials get tokens of their own: never from nor into the shared cache", () =>
    withRegistry({}, (registry, client) =>
      Effect.gen(function*() {
        serveImage(registry)
        const basic = `Basic ${Buffer.from("ada:s3cret").toString("base64")}`
        registry.requireToken({ expiresIn: 60, basic })
        const reference = yield* ref(`${registry.host}/app:v1`)
        const own = requestCredentials("ada", "s3cret")
        yield* client.resolve(reference).pipe(Effect.provideService(RegistryAuth, own))
        const tokens = () => registry.seen.filter((s) => s.path === "/token")
        assert.deepStrictEqual(tokens().map((s) => s.authorization), [basic])
        // Anonymous after them: no token of theirs is reused, and the token endpoint refuses it one.
        const anonymous = yield* Effect.exit(client.resolve(reference))
        assert.strictEqual(reasonOf(anonymous)?.reason._tag, "Unauthorized")
        assert.deepStrictEqual(tokens().map((s) => s.authorization), [basic, undefined])
        // The same request again reuses its own token.
        yield* client.resolve(reference).pipe(Effect.provideService(RegistryAuth, own))
        assert.strictEqual(tokens().length, 2)
      })))

  it.effect("login follows the bearer challenge with the credentials, and says the registry refused wrong ones", () =>
    withRegistry({}, (registry, client) =>
      Effect.gen(function*() {
        const basic = `Basic ${Buffer.from("ada:s3cret").toString("base64")}`
        registry.requireToken({ expiresIn: 60, basic })
        yield* client.login(registry.host, requestCredentials("ada", "s3cret"))
        assert.deepStrictEqual(
          registry.seen.map((s) => [s.path, s.authorization ?? "none"]),
          [["/v2/", "none"], ["/token", basic], ["/v2/", "Bearer token-1"]]
        )
        const refused = yield* Effect.exit(client.login(registry.host, requestCredentials("ada", "wrong")))
        const error = reasonOf(refused)
        assert.strictEqual(error?.reason._tag, "Unauthorized")
        assert.include(error?.message, "incorrect username or password")
      })))

  it.effect("follows redirects, but not forever", () =>
    withRegistry({ maxRedirects: 3 }, (registry, client) =>
      Effect.gen(function*() {
        const image = serveImage(registry)
        const path = `/v2/app/blobs/${image.config.digest}`
        registry.fault(path, { _tag: "Status", status: 307, headers: { location: `http://${registry.host}${path}` } })
        const reference = yield* ref(`${registry.host}/app:v1`)
        const config = yield* client.fetchDocument(reference, image.config)
        assert.strictEqual(config.length, image.config.size)
        registry.fault(path, { _tag: "Status", status: 302, headers: { location: path } }, 10)
        const error = yield* Effect.flip(client.fetchDocument(reference, image.config))
        assert.strictEqual(error.reason._tag, "Unknown")
        assert.include(error.message, "too many redirects")
      })))

  it.effect("refuses a manifest over 4 MiB, an unsupported media type, and says what is missing on 404", () =>
    withRegistry({}, (registry, client) =>
      Effect.gen(function*() {
        registry.manifest("big", {
          schemaVersion: 2,
          mediaType: MediaType.OciManifest,
          annotations: { padding: "x".repeat(4 * 1024 * 1024) }
        }, { tag: "v1" })
        const big = yield* Effect.flip(client.resolve(yield* ref(`${registry.host}/big:v1`)))
        assert.strictEqual(big.reason._tag, "InvalidArgument")
        assert.include(big.message, "over the limit of 4194304")

        registry.manifest("old", { schemaVersion: 1, name: "old", tag: "v1", fsLayers: [] }, {
          tag: "v1",
          mediaType: "application/vnd.docker.distribution.manifest.v1+prettyjws"
        })
        const old = yield* Effect.flip(client.resolve(yield* ref(`${registry.host}/old:v1`)))
        assert.strictEqual(old.reason._tag, "InvalidArgument")
        assert.include(old.message, "unsupported manifest media type application/vnd.docker.distribution.manifest.v1+prettyjws")

        const missing = yield* Effect.flip(client.resolve(yield* ref(`${registry.host}/nothing:v1`)))
        assert.strictEqual(missing.reason._tag, "NotFound")
        assert.strictEqual(missing.reason.reference, `${registry.host}/nothing:v1`)
        assert.include(missing.message, "MANIFEST_UNKNOWN")
      })))

  it.effect("fails with Unavailable for a registry nobody listens on", () =>
    withRegistry({}, (_registry, client) =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(client.resolve(yield* ref("127.0.0.1:1/app:v1")))
        assert.strictEqual(error.reason._tag, "Unavailable")
        assert.include(error.message, "ECONNREFUSED")
      })))

  it("parses WWW-Authenticate challenges", () => {
    assert.deepStrictEqual(
      parseChallenge(`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a,b:pull"`),
      { scheme: "bearer", realm: "https://auth.docker.io/token", service: "registry.docker.io" }
    )
    assert.deepStrictEqual(parseChallenge(`Basic realm="Registry Realm"`), { scheme: "basic", realm: "Registry Realm", service: undefined })
    assert.strictEqual(parseChallenge("Bearer service=x"), undefined, "a bearer challenge needs a realm")
    assert.strictEqual(parseChallenge("Negotiate abc"), undefined)
  })
})
