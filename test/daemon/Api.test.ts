/**
 * The Docker Engine API routes over in-memory fakes of the engine, the images
 * and the system: what dockerd's router does (version prefixes, headers, error
 * bodies, query parsing) without containerd. The real services behind the routes
 * are tested against containerd elsewhere.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Result, Stream } from "effect"
import { HttpRouter } from "effect/http"
import {
  compareVersions,
  CONTAINER_FILTERS,
  frame,
  layer as apiLayer,
  parseBoolean,
  parseFilters,
  parsePlatform,
  parseTimestamp,
  stripApiVersion
} from "../../src/daemon/Api.ts"
import { UNSUPPORTED_ROUTES } from "../../src/daemon/api/Unsupported.ts"
import { conflict, type DockerError, notFound } from "../../src/daemon/DockerError.ts"
import { Engine, type EngineShape } from "../../src/daemon/Engine.ts"
import { EventLog } from "../../src/daemon/EventLog.ts"
import { DockerImages } from "../../src/daemon/Images.ts"
import { type ContainerInspectJson, ZERO_TIME } from "../../src/daemon/Model.ts"
import { type HostFacts, infoJson, System, versionJson } from "../../src/daemon/System.ts"
import { Registry } from "../../src/services/Registry.ts"

const facts: HostFacts = {
  serverVersion: "9.9.9",
  buildTime: "2024-01-01T00:00:00.000Z",
  kernelVersion: "6.1.0",
  operatingSystem: "Test Linux",
  osVersion: "1",
  machine: "x86_64",
  arch: "amd64",
  ncpu: 2,
  memTotal: 1024,
  hostname: "test",
  cgroupVersion: "2",
  runc: { version: "1.1.5", commit: "v1.1.5-0-g1234" },
  engineId: "00000000-0000-0000-0000-000000000000"
}

/** What the fakes were asked, for the tests to check how the API parsed a request. */
interface Calls {
  readonly list: Array<Parameters<EngineShape["list"]>[0]>
  readonly stop: Array<Parameters<EngineShape["stop"]>>
  readonly kill: Array<Parameters<EngineShape["kill"]>>
  readonly create: Array<Parameters<EngineShape["create"]>>
  readonly images: Array<ReadonlyArray<unknown>>
}

/** A container engine in memory: a map of names to running flags. */
const fakeEngine = (calls: Calls) => {
  const containers = new Map<string, { running: boolean }>([["box", { running: false }]])
  const find = (ref: string): Effect.Effect<{ running: boolean }, DockerError> => {
    const container = containers.get(ref)
    return container === undefined ? Effect.fail(notFound(`No such container: ${ref}`)) : Effect.succeed(container)
  }
  const inspectJson = (name: string, running: boolean): ContainerInspectJson => ({
    Id: `${name}-id`,
    Created: ZERO_TIME,
    Path: "sh",
    Args: [],
    State: {
      Status: running ? "running" : "created",
      Running: running,
      Paused: false,
      Restarting: false,
      OOMKilled: false,
      Dead: false,
      Pid: 0,
      ExitCode: 0,
      Error: "",
      StartedAt: ZERO_TIME,
      FinishedAt: ZERO_TIME
    },
    Image: "sha256:0",
    Name: `/${name}`,
    RestartCount: 0,
    Driver: "overlayfs",
    Platform: "linux",
    HostConfig: {},
    Config: {},
    Mounts: [],
    NetworkSettings: {}
  })
  return Engine.of({
    create: (name, body) =>
      Effect.suspend(() => {
        calls.create.push([name, body])
        if (name !== undefined && containers.has(name)) return Effect.fail(conflict(`name ${name} is in use`))
        containers.set(name ?? "generated", { running: false })
        return Effect.succeed({ Id: `${name ?? "generated"}-id`, Warnings: [] })
      }),
    start: (ref) =>
      Effect.map(find(ref), (container) => {
        const alreadyRunning = container.running
        container.running = true
        return { alreadyRunning }
      }),
    stop: (ref, options) =>
      Effect.map(find(ref), (container) => {
        calls.stop.push([ref, options])
        const alreadyStopped = !container.running
        container.running = false
        return { alreadyStopped }
      }),
    restart: (ref) => Effect.asVoid(find(ref)),
    kill: (ref, signal) => Effect.andThen(find(ref), Effect.sync(() => void calls.kill.push([ref, signal]))),
    pause: (ref) => Effect.asVoid(find(ref)),
    unpause: (ref) => Effect.asVoid(find(ref)),
    wait: (ref) => Effect.as(find(ref), Effect.succeed({ StatusCode: 7 })),
    remove: (ref) => Effect.andThen(find(ref), Effect.sync(() => void containers.delete(ref))),
    rename: (ref) => Effect.asVoid(find(ref)),
    update: (ref) => Effect.as(find(ref), { Warnings: [] }),
    prune: () => Effect.succeed({ ContainersDeleted: null, SpaceReclaimed: 0 }),
    inspect: (ref) => Effect.map(find(ref), (container) => inspectJson(ref, container.running)),
    list: (options) => Effect.sync(() => (calls.list.push(options), [])),
    top: (ref) => Effect.as(find(ref), { Titles: ["PID"], Processes: [["1"]] }),
    stats: (ref) => Effect.as(find(ref), Stream.empty),
    statPath: (ref) => Effect.andThen(find(ref), Effect.die("not used by these tests")),
    archivePath: (ref) => Effect.andThen(find(ref), Effect.die("not used by these tests")),
    extractToPath: (ref) => Effect.andThen(find(ref), Effect.die("not used by these tests")),
    attach: (ref) =>
      Effect.as(find(ref), {
        tty: false,
        output: Stream.make({ stream: "stdout" as const, data: new TextEncoder().encode("hi\n") }),
        write: undefined,
        endInput: Effect.void
      }),
    logs: (ref) =>
      Effect.as(find(ref), {
        tty: false,
        entries: Stream.make({
          stream: "stderr" as const,
          time: "2026-12-02T03:04:05.000000001Z",
          timeMs: 0,
          timeNanos: BigInt(Date.UTC(2026, 11, 2, 3, 4, 5)) * 1_000_000n + 1n,
          log: new TextEncoder().encode("oops\n")
        })
      }),
    resize: (ref) => Effect.asVoid(find(ref)),
    execCreate: (ref) => Effect.as(find(ref), { Id: "exec-1" }),
    execStartable: (id) => Effect.fail(notFound(`No such exec instance: ${id}`)),
    execStart: (id) => Effect.fail(notFound(`No such exec instance: ${id}`)),
    execResize: (id) => Effect.fail(notFound(`No such exec instance: ${id}`)),
    execInspect: (id) => Effect.fail(notFound(`No such exec instance: ${id}`)),
    commitSource: (ref) => Effect.andThen(find(ref), Effect.fail(conflict("commit is not part of this stub"))),
    whilePaused: (_id, effect) => effect,
    usersOf: () => Effect.succeed([]),
    volumeUsers: Effect.succeed(new Map()),
    networkConnect: () => Effect.void,
    networkDisconnect: () => Effect.void,
    names: Effect.succeed(new Map()),
    counts: Effect.succeed({ total: 1, running: 0, paused: 0, stopped: 1 }),
    sizesRw: Effect.succeed(new Map())
  })
}

/** Images in memory: one image, named `localhost:5000/team/app:v1`. */
const fakeImages = (calls: Calls) => {
  const known = "localhost:5000/team/app:v1"
  const find = (name: string) => name === known ? Effect.void : Effect.fail(notFound(`No such image: ${name}`))
  return DockerImages.of({
    pull: (fromImage, tag) =>
      fromImage === "nosuch"
        ? Effect.fail(notFound("pull access denied for nosuch"))
        : Effect.succeed(Stream.make(
          { status: `Pulling from ${fromImage}`, id: tag ?? "latest" },
          { status: "Status: Downloaded newer image" }
        )),
    prune: () => Effect.succeed({ ImagesDeleted: null, SpaceReclaimed: 0 }),
    diskUsage: Effect.succeed({ LayersSize: 0, Images: [] }),
    list: (filters) => Effect.sync(() => (calls.images.push(["list", filters]), [])),
    inspect: (name) => Effect.as(find(name), { Id: "sha256:1" } as never),
    remove: (name, options) =>
      Effect.as(Effect.andThen(find(name), Effect.sync(() => calls.images.push(["remove", name, options?.force]))), [
        { Untagged: name },
        { Deleted: "sha256:1" }
      ]),
    tag: (name, repo, tag) => Effect.andThen(find(name), Effect.sync(() => void calls.images.push(["tag", name, repo, tag]))),
    count: Effect.succeed(1),
    history: (name) => Effect.as(find(name), []),
    save: (names) => Effect.as(Effect.forEach(names, find), Stream.empty),
    load: () => Effect.succeed(Stream.empty),
    importImage: () => Effect.succeed([{ status: "sha256:1" }]),
    commit: (container) => Effect.fail(notFound(`No such container: ${container}`))
  })
}

const system = System.of({
  serverVersion: facts.serverVersion,
  version: Effect.succeed(versionJson(facts, { version: "1.7.0", revision: "abcdef" })),
  info: Effect.succeed(infoJson(facts, { dataRoot: "/var/lib/x", containerdAddress: "/run/c.sock", namespace: "ns" }, {
    containers: { total: 1, running: 0, paused: 0, stopped: 1 },
    images: 1,
    containerd: { version: "1.7.0", revision: "abcdef" },
    now: "2024-01-01T00:00:00Z"
  }))
})

/** A Fetch-style client of the API over the fakes, and what the fakes were asked. */
const withApi = <A, E>(
  use: (
    call: (method: string, path: string, body?: string) => Effect.Effect<Response>,
    calls: Calls
  ) => Effect.Effect<A, E, EventLog>
) =>
  Effect.scoped(Effect.gen(function*() {
    const calls: Calls = { list: [], stop: [], kill: [], create: [], images: [] }
    // One event log, shared by the API and the test (which publishes into it).
    const eventLog = yield* Layer.build(EventLog.layer)
    const { dispose, handler } = HttpRouter.toWebHandler(
      apiLayer.pipe(
        Layer.provide(Layer.succeed(Engine, fakeEngine(calls))),
        Layer.provide(Layer.succeed(DockerImages, fakeImages(calls))),
        Layer.provide(Layer.succeed(System, system)),
        // Never asked (no route of these tests logs in): the real client, to satisfy /auth's dependency.
        Layer.provide(Registry.layer()),
        Layer.provide(Layer.succeedContext(eventLog))
      ),
      { disableLogger: true }
    )
    yield* Effect.addFinalizer(() => Effect.promise(dispose))
    const call = (method: string, path: string, body?: string) =>
      Effect.promise(() => handler(new Request(`http://localhost${path}`, body === undefined ? { method } : { method, body })))
    return yield* use(call, calls).pipe(Effect.provideContext(eventLog))
  }))

const jsonOf = (response: Response) => Effect.promise(() => response.json() as Promise<any>)
const textOf = (response: Response) => Effect.promise(() => response.text())

describe("Api routes", () => {
  it.effect("/_ping answers OK with dockerd's headers, with or without a version prefix, and HEAD has no body", () =>
    withApi((call) =>
      Effect.gen(function*() {
        for (const path of ["/_ping", "/v1.47/_ping", "/v1.24/_ping"]) {
          const response = yield* call("GET", path)
          assert.strictEqual(response.status, 200)
          assert.strictEqual(yield* textOf(response), "OK")
          assert.strictEqual(response.headers.get("api-version"), "1.47")
          assert.strictEqual(response.headers.get("docker-experimental"), "false")
          assert.strictEqual(response.headers.get("ostype"), "linux")
          assert.strictEqual(response.headers.get("server"), "effect-containerd/9.9.9")
          assert.strictEqual(response.headers.get("content-type"), "text/plain; charset=utf-8")
        }
        const head = yield* call("HEAD", "/_ping")
        assert.strictEqual(head.status, 200)
        assert.strictEqual(head.headers.get("api-version"), "1.47")
        assert.strictEqual(yield* textOf(head), "")
      })))

  it.effect("/version reports API 1.47 (minimum 1.24) and the components; /info has what the CLI reads", () =>
    withApi((call) =>
      Effect.gen(function*() {
        const version = yield* jsonOf(yield* call("GET", "/v1.47/version"))
        assert.strictEqual(version.ApiVersion, "1.47")
        assert.strictEqual(version.MinAPIVersion, "1.24")
        assert.strictEqual(version.Version, "9.9.9")
        assert.deepStrictEqual(version.Components.map((c: { Name: string }) => c.Name), ["Engine", "containerd", "runc"])
        const info = yield* jsonOf(yield* call("GET", "/info"))
        assert.strictEqual(info.Containers, 1)
        assert.strictEqual(info.ContainersStopped, 1)
        assert.strictEqual(info.Images, 1)
        assert.strictEqual(info.Swarm.LocalNodeState, "inactive")
        assert.deepStrictEqual(info.Plugins, { Volume: [], Network: [], Authorization: null, Log: [] })
        assert.strictEqual(info.DefaultRuntime, "runc")
        assert.strictEqual(info.DockerRootDir, "/var/lib/x")
      })))

  it.effect("versions outside 1.24..1.47 are 400s that say which bound; routes nobody serves are 404 page not found", () =>
    withApi((call) =>
      Effect.gen(function*() {
        const tooNew = yield* call("GET", "/v1.48/info")
        assert.strictEqual(tooNew.status, 400)
        assert.match((yield* jsonOf(tooNew)).message, /client version 1\.48 is too new\. Maximum supported API version is 1\.47/)
        const tooOld = yield* call("GET", "/v1.12/info")
        assert.strictEqual(tooOld.status, 400)
        assert.match((yield* jsonOf(tooOld)).message, /too old\. Minimum supported API version is 1\.24/)
        for (const path of ["/nope", "/v1.47/nope", "/containers/box/bogus", "/images/foo/bogus"]) {
          const missing = yield* call("GET", path)
          assert.strictEqual(missing.status, 404, path)
          assert.strictEqual(missing.headers.get("api-version"), "1.47")
          assert.deepStrictEqual(yield* jsonOf(missing), { message: "page not found" })
        }
      })))

  it.effect("every route of the table of refused ones answers its refusal, with and without a version prefix, headers included", () =>
    withApi((call) =>
      Effect.gen(function*() {
        for (const { method, path, refusal } of UNSUPPORTED_ROUTES) {
          const concrete = path.replace("{id}", "box").replace("{name}", "localhost:5000/team/app:v1")
          const paths = concrete.endsWith("/**") ? [concrete.slice(0, -3), concrete.replace("/**", "/x/y")] : [concrete]
          for (const target of paths.flatMap((p) => [p, `/v1.41${p}`, `/v1.47${p}?x=1`])) {
            const response = yield* call(method === "*" ? "POST" : method, target, method === "GET" || method === "HEAD" ? undefined : "{}")
            assert.strictEqual(response.status, refusal.status, `${method} ${target}`)
            assert.strictEqual(response.headers.get("api-version"), "1.47")
            if (method !== "HEAD") assert.deepStrictEqual(yield* jsonOf(response), { message: refusal.message }, `${method} ${target}`)
          }
        }
      })))

  it.effect("bad detach keys are 400s as dockerd says them: on attach, and on exec create", () =>
    withApi((call) =>
      Effect.gen(function*() {
        const attach = yield* call("POST", "/containers/box/attach?stream=1&stdin=1&detachKeys=ctrl-P")
        assert.deepStrictEqual([attach.status, yield* jsonOf(attach)], [400, { message: "Invalid detach keys (ctrl-P) provided" }])
        const exec = yield* call("POST", "/containers/box/exec", JSON.stringify({ Cmd: ["sh"], DetachKeys: "nope" }))
        assert.deepStrictEqual([exec.status, yield* jsonOf(exec)], [400, { message: "Invalid detach keys (nope) provided" }])
        assert.strictEqual((yield* call("POST", "/containers/box/attach?stream=1&stdout=1&detachKeys=ctrl-a,b")).status, 200)
      })))

  it.effect("a missing container is a 404 with the engine's message", () =>
    withApi((call) =>
      Effect.gen(function*() {
        const response = yield* call("GET", "/v1.47/containers/ghost/json")
        assert.strictEqual(response.status, 404)
        assert.strictEqual(response.headers.get("content-type"), "application/json")
        assert.deepStrictEqual(yield* jsonOf(response), { message: "No such container: ghost" })
        assert.strictEqual((yield* call("POST", "/containers/ghost/start")).status, 404)
        assert.strictEqual((yield* call("DELETE", "/containers/ghost")).status, 404)
      })))

  it.effect("create: malformed JSON and a Cmd of the wrong type are 400s; a good body is 201 with the name passed", () =>
    withApi((call, calls) =>
      Effect.gen(function*() {
        const malformed = yield* call("POST", "/containers/create", "{\"Image\":")
        assert.strictEqual(malformed.status, 400)
        assert.match((yield* jsonOf(malformed)).message, /^invalid JSON/)
        const empty = yield* call("POST", "/containers/create", "")
        assert.strictEqual(empty.status, 400)
        const wrongType = yield* call("POST", "/containers/create", JSON.stringify({ Image: "busybox", Cmd: 42 }))
        assert.strictEqual(wrongType.status, 400)
        assert.match((yield* jsonOf(wrongType)).message, /Cmd/)
        assert.strictEqual(calls.create.length, 0)

        const created = yield* call("POST", "/v1.47/containers/create?name=web", JSON.stringify({ Image: "busybox", Cmd: ["true"] }))
        assert.strictEqual(created.status, 201)
        assert.deepStrictEqual(yield* jsonOf(created), { Id: "web-id", Warnings: [] })
        assert.strictEqual(calls.create[0]![0], "web")
        assert.deepStrictEqual(calls.create[0]![1].Cmd, ["true"])
        const taken = yield* call("POST", "/containers/create?name=web", JSON.stringify({ Image: "busybox" }))
        assert.strictEqual(taken.status, 409)
      })))

  it.effect("start is 204, then 304 when already running; stop passes t and signal, then 304", () =>
    withApi((call, calls) =>
      Effect.gen(function*() {
        assert.strictEqual((yield* call("POST", "/containers/box/start")).status, 204)
        assert.strictEqual((yield* call("POST", "/containers/box/start")).status, 304)
        assert.strictEqual((yield* call("POST", "/containers/box/stop?t=3&signal=SIGINT")).status, 204)
        assert.deepStrictEqual(calls.stop[0], ["box", { timeout: 3, signal: "SIGINT" }])
        assert.strictEqual((yield* call("POST", "/containers/box/stop")).status, 304)
        assert.deepStrictEqual(calls.stop[1], ["box", { timeout: undefined, signal: undefined }])
        const badT = yield* call("POST", "/containers/box/stop?t=soon")
        assert.strictEqual(badT.status, 400)
        assert.strictEqual((yield* call("POST", "/containers/box/kill?signal=HUP")).status, 204)
        assert.deepStrictEqual(calls.kill[0], ["box", "HUP"])
      })))

  it.effect("boolean query parameters are read as dockerd reads them", () =>
    withApi((call, calls) =>
      Effect.gen(function*() {
        for (const [value, expected] of [["1", true], ["true", true], ["True", true], ["0", false], ["false", false], ["", false]] as const) {
          assert.strictEqual((yield* call("GET", `/containers/json?all=${value}`)).status, 200)
          assert.strictEqual(calls.list.at(-1)!.all, expected, value)
        }
        const bad = yield* call("GET", "/containers/json?all=yes")
        assert.strictEqual(bad.status, 400)
        assert.match((yield* jsonOf(bad)).message, /all/)
        assert.strictEqual((yield* call("DELETE", "/containers/box?force=maybe")).status, 400)
      })))

  it.effect("filters: the current and the legacy JSON forms; bad JSON and unknown keys are 400s", () =>
    withApi((call, calls) =>
      Effect.gen(function*() {
        const current = encodeURIComponent(JSON.stringify({ status: ["running"], label: ["a=b"], name: ["x"], id: ["abc"] }))
        assert.strictEqual((yield* call("GET", `/containers/json?filters=${current}`)).status, 200)
        assert.deepStrictEqual(calls.list.at(-1)!.filters, { status: ["running"], label: ["a=b"], name: ["x"], id: ["abc"] })
        const legacy = encodeURIComponent(JSON.stringify({ status: { running: true, exited: false } }))
        assert.strictEqual((yield* call("GET", `/containers/json?filters=${legacy}&limit=2`)).status, 200)
        assert.deepStrictEqual(calls.list.at(-1)!.filters, { status: ["running"] })
        assert.strictEqual(calls.list.at(-1)!.limit, 2)
        assert.strictEqual((yield* call("GET", "/containers/json?filters=%7Bnope")).status, 400)
        const unknown = yield* call("GET", `/containers/json?filters=${encodeURIComponent("{\"network\":[\"x\"]}")}`)
        assert.strictEqual(unknown.status, 400)
        assert.strictEqual((yield* jsonOf(unknown)).message, "invalid filter 'network'")
      })))

  it.effect("wait streams the status; a missing container is a 404 before anything is sent; conditions are checked", () =>
    withApi((call) =>
      Effect.gen(function*() {
        const waited = yield* call("POST", "/v1.47/containers/box/wait?condition=next-exit")
        assert.strictEqual(waited.status, 200)
        assert.strictEqual(waited.headers.get("content-type"), "application/json")
        assert.deepStrictEqual(JSON.parse(yield* textOf(waited)), { StatusCode: 7, Error: null })
        assert.strictEqual((yield* call("POST", "/containers/ghost/wait")).status, 404)
        assert.strictEqual((yield* call("POST", "/containers/box/wait?condition=eventually")).status, 400)
      })))

  it.effect("events replay the log between since and until as JSON lines; bad times and filters are 400s", () =>
    withApi((call) =>
      Effect.gen(function*() {
        const log = yield* EventLog
        // Published under the test clock, at time 0.
        yield* log.publish({ type: "container", action: "start", id: "abc", attributes: { name: "web" } })
        yield* log.publish({ type: "image", action: "pull", id: "busybox:latest" })
        const filters = encodeURIComponent(JSON.stringify({ type: ["container"] }))
        const response = yield* call("GET", `/events?since=0&until=1&filters=${filters}`)
        assert.strictEqual(response.status, 200)
        const lines = (yield* textOf(response)).trim().split("\n").map((line) => JSON.parse(line))
        assert.deepStrictEqual(lines.map((e) => [e.Type, e.Action, e.Actor.ID]), [["container", "start", "abc"]])
        assert.strictEqual((yield* call("GET", "/events?since=yesterday")).status, 400)
        assert.strictEqual((yield* call("GET", "/events?since=100&until=10")).status, 400)
        assert.strictEqual((yield* call("GET", `/events?filters=${encodeURIComponent("{\"network\":[]}")}`)).status, 400)
      })))

  it.effect("image routes take names with slashes and colons; pull streams JSON lines or fails before streaming", () =>
    withApi((call, calls) =>
      Effect.gen(function*() {
        const inspected = yield* call("GET", "/v1.47/images/localhost:5000/team/app:v1/json")
        assert.strictEqual(inspected.status, 200)
        assert.deepStrictEqual(yield* jsonOf(inspected), { Id: "sha256:1" })
        assert.strictEqual((yield* call("GET", "/images/busybox/json")).status, 404)

        const removed = yield* call("DELETE", "/images/localhost:5000/team/app:v1?force=1")
        assert.deepStrictEqual(yield* jsonOf(removed), [{ Untagged: "localhost:5000/team/app:v1" }, { Deleted: "sha256:1" }])
        const tagged = yield* call("POST", "/images/localhost:5000/team/app:v1/tag?repo=mine&tag=v2")
        assert.strictEqual(tagged.status, 201)
        assert.deepStrictEqual(calls.images, [
          ["remove", "localhost:5000/team/app:v1", true],
          ["tag", "localhost:5000/team/app:v1", "mine", "v2"]
        ])

        const pulled = yield* call("POST", "/images/create?fromImage=busybox&tag=1.36")
        assert.strictEqual(pulled.status, 200)
        assert.strictEqual(pulled.headers.get("content-type"), "application/json")
        assert.deepStrictEqual((yield* textOf(pulled)).split("\r\n").filter(Boolean).map((line) => JSON.parse(line)), [
          { status: "Pulling from busybox", id: "1.36" },
          { status: "Status: Downloaded newer image" }
        ])
        const denied = yield* call("POST", "/images/create?fromImage=nosuch")
        assert.strictEqual(denied.status, 404)
        assert.deepStrictEqual(yield* jsonOf(denied), { message: "pull access denied for nosuch" })
        assert.strictEqual((yield* call("POST", "/images/create?fromImage=busybox&platform=linux")).status, 400)

        const filters = encodeURIComponent(JSON.stringify({ reference: ["busy*"] }))
        assert.strictEqual((yield* call("GET", `/images/json?filters=${filters}`)).status, 200)
        assert.deepStrictEqual(calls.images.at(-1), ["list", { reference: ["busy*"] }])
      })))
})

describe("Api parsing", () => {
  it("booleans: Go's ParseBool, empty is false", () => {
    assert.deepStrictEqual(parseBoolean("all", undefined), Result.succeed(false))
    assert.deepStrictEqual(parseBoolean("all", "t"), Result.succeed(true))
    assert.deepStrictEqual(parseBoolean("all", "FALSE"), Result.succeed(false))
    assert.isTrue(Result.isFailure(parseBoolean("all", "yes")))
  })

  it("filters: absent, current form, legacy form, unknown key", () => {
    assert.deepStrictEqual(parseFilters(undefined, CONTAINER_FILTERS), Result.succeed(undefined))
    assert.deepStrictEqual(parseFilters("{\"label\":[\"a\",\"b=c\"]}", CONTAINER_FILTERS), Result.succeed({ label: ["a", "b=c"] }))
    assert.deepStrictEqual(
      parseFilters("{\"status\":{\"running\":true,\"paused\":true,\"exited\":false}}", CONTAINER_FILTERS),
      Result.succeed({ status: ["running", "paused"] })
    )
    assert.deepStrictEqual(parseFilters("{\"foo\":[]}", CONTAINER_FILTERS), Result.fail("invalid filter 'foo'"))
    assert.isTrue(Result.isFailure(parseFilters("{\"status\":\"running\"}", CONTAINER_FILTERS)))
  })

  it("since/until: unix seconds with fractions, RFC 3339, Go durations before now", () => {
    const now = Date.UTC(2024, 0, 2, 3, 4, 5)
    assert.deepStrictEqual(parseTimestamp("0", now), Result.succeed(0))
    assert.deepStrictEqual(parseTimestamp("1700000000", now), Result.succeed(1_700_000_000_000))
    assert.deepStrictEqual(parseTimestamp("1700000000.25", now), Result.succeed(1_700_000_000_250))
    assert.deepStrictEqual(parseTimestamp("10m", now), Result.succeed(now - 600_000))
    assert.deepStrictEqual(parseTimestamp("1h30m", now), Result.succeed(now - 5_400_000))
    assert.deepStrictEqual(parseTimestamp("1.5s", now), Result.succeed(now - 1_500))
    assert.deepStrictEqual(parseTimestamp("2024-01-02T03:04:05Z", now), Result.succeed(now))
    assert.deepStrictEqual(parseTimestamp("2024-01-02T04:04:05+01:00", now), Result.succeed(now))
    assert.deepStrictEqual(parseTimestamp("2024-01-02T03:04:05.5Z", now), Result.succeed(now + 500))
    assert.deepStrictEqual(parseTimestamp("2024-01-02", now), Result.succeed(new Date(2024, 0, 2).getTime()))
    assert.isTrue(Result.isFailure(parseTimestamp("yesterday", now)))
    assert.isTrue(Result.isFailure(parseTimestamp("10x", now)))
  })

  it("versions compare numerically; the prefix is stripped only when supported", () => {
    assert.strictEqual(compareVersions("1.9", "1.24"), -1)
    assert.strictEqual(compareVersions("1.47", "1.47.0"), 0)
    assert.strictEqual(compareVersions("2", "1.47"), 1)
    assert.deepStrictEqual(stripApiVersion("/v1.47/containers/json?all=1"), Result.succeed("/containers/json?all=1"))
    assert.deepStrictEqual(stripApiVersion("/v1.40/_ping"), Result.succeed("/_ping"))
    assert.deepStrictEqual(stripApiVersion("/version"), Result.succeed("/version"))
    assert.deepStrictEqual(stripApiVersion("/v1.47?x=1"), Result.succeed("/?x=1"))
    assert.isTrue(Result.isFailure(stripApiVersion("/v1.50/info")))
    assert.isTrue(Result.isFailure(stripApiVersion("/v1.23/info")))
  })

  it("platforms: os/arch[/variant], with uname's architecture names", () => {
    assert.deepStrictEqual(parsePlatform("linux/amd64"), Result.succeed({ os: "linux", architecture: "amd64" }))
    assert.deepStrictEqual(parsePlatform("linux/aarch64/v8"), Result.succeed({ os: "linux", architecture: "arm64", variant: "v8" }))
    assert.deepStrictEqual(parsePlatform(""), Result.succeed(undefined))
    assert.isTrue(Result.isFailure(parsePlatform("linux")))
    // A name an object inherits is no alias: it stays as given.
    assert.deepStrictEqual(parsePlatform("linux/constructor"), Result.succeed({ os: "linux", architecture: "constructor" }))
  })
})

describe("Api stdio routes", () => {
  it.effect("logs and attach (without a hijack) answer Docker's multiplexed frames; bad sizes and streams are 400s", () =>
    withApi((call) =>
      Effect.gen(function*() {
        const bytes = (response: Response) => Effect.promise(() => response.arrayBuffer().then((b) => new Uint8Array(b)))
        const logs = yield* call("GET", "/v1.47/containers/box/logs?stdout=1&stderr=1&timestamps=1")
        assert.strictEqual(logs.headers.get("content-type"), "application/vnd.docker.multiplexed-stream")
        const framed = yield* bytes(logs)
        const text = "2026-12-02T03:04:05.000000001Z oops\n"
        assert.deepStrictEqual([...framed.slice(0, 8)], [2, 0, 0, 0, 0, 0, 0, text.length])
        assert.strictEqual(new TextDecoder().decode(framed.slice(8)), text)

        const attach = yield* bytes(yield* call("POST", "/containers/box/attach?stream=1&stdout=1&stderr=1"))
        assert.deepStrictEqual([...attach.slice(0, 8)], [1, 0, 0, 0, 0, 0, 0, 3])
        assert.strictEqual(new TextDecoder().decode(attach.slice(8)), "hi\n")

        assert.strictEqual((yield* call("GET", "/containers/box/logs")).status, 400, "no stream chosen")
        assert.strictEqual((yield* call("GET", "/containers/nosuch/logs?stdout=1")).status, 404)
        assert.strictEqual((yield* call("POST", "/containers/box/resize?h=0&w=80")).status, 400)
        assert.strictEqual((yield* call("POST", "/containers/box/resize?h=24&w=80")).status, 200)
        assert.strictEqual((yield* call("POST", "/exec/nosuch/resize?h=24&w=80")).status, 404)
        assert.strictEqual((yield* call("GET", "/exec/nosuch/json")).status, 404)
        const created = yield* call("POST", "/containers/box/exec", JSON.stringify({ Cmd: ["true"] }))
        assert.deepStrictEqual([created.status, yield* jsonOf(created)], [201, { Id: "exec-1" }])
        assert.strictEqual((yield* call("POST", "/containers/box/exec", JSON.stringify({ Cmd: "true" }))).status, 400)
      })))
})

describe("frame", () => {
  it("prefixes the stream type and the big-endian size", () => {
    assert.deepStrictEqual([...frame(1, new TextEncoder().encode("hi"))], [1, 0, 0, 0, 0, 0, 0, 2, 104, 105])
    const big = frame(2, new Uint8Array(0x01_02_03))
    assert.deepStrictEqual([...big.subarray(0, 8)], [2, 0, 0, 0, 0, 1, 2, 3])
    assert.strictEqual(big.length, 8 + 0x01_02_03)
    assert.deepStrictEqual([...frame(0, new Uint8Array(0))], [0, 0, 0, 0, 0, 0, 0, 0])
  })
})
