/**
 * The daemon answering as dockerd 20.10 does, side by side with it on the same
 * containerd when it is installed (test/support/Engines.ts; without it only our
 * half runs, and the test's log says so): `wait` under every restart policy and
 * condition, `Config.Env` with bare names, Docker's defaults for no_new_privs and
 * oom_score_adj and their options, the swarm routes of a node outside a swarm,
 * and a refused request whose large body is still being sent.
 */
import { assert, layer } from "@effect/vitest"
import { Effect, Fiber, Option } from "effect"
import * as http from "node:http"
import { bothEngines, type Engine, engines, Engines, eventually, ok } from "../support/Engines.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"

const API = "/v1.41"

const inspect = (engine: Engine, id: string) =>
  Effect.map(engine.request("GET", `${API}/containers/${id}/json`), (r) => JSON.parse(r.body))

const POLICIES = ["no", "always", "on-failure", "unless-stopped"] as const

layer(engines("dockerd-side"), { excludeTestServices: true, timeout: 180_000 })("the daemon beside dockerd 20.10", (it) => {
  it.effect("wait: not-running and next-exit answer at the first exit under every restart policy, always included", () =>
    bothEngines((engine) =>
      Effect.forEach(
        POLICIES.flatMap((policy) => (["not-running", "next-exit"] as const).map((condition) => [policy, condition] as const)),
        ([policy, condition]) =>
          Effect.gen(function*() {
            const id = (yield* ok(engine, ["run", "-d", "--restart", policy, FIXTURE_IMAGE, "sh", "-c", "sleep 1; exit 3"])).trim()
            const waited = yield* engine.request("POST", `${API}/containers/${id}/wait?condition=${condition}`).pipe(
              Effect.timeoutOption("15 seconds")
            )
            const label = `${engine.name}: --restart ${policy}, condition ${condition}`
            assert.isTrue(Option.isSome(waited), `${label}: no answer at the first exit`)
            const { status, body } = Option.getOrThrow(waited)
            // Byte for byte as dockerd writes it (Error first, then StatusCode).
            assert.deepStrictEqual([status, body], [200, "{\"Error\":null,\"StatusCode\":3}\n"], label)
            yield* ok(engine, ["rm", "-f", id])
          }),
        { concurrency: "unbounded", discard: true }
      )
    ))

  it.effect("wait: removed answers only at the removal, under every restart policy; not-running at once for a stopped container", () =>
    bothEngines((engine) =>
      Effect.forEach(POLICIES, (policy) =>
        Effect.gen(function*() {
          const id = (yield* ok(engine, ["run", "-d", "--restart", policy, FIXTURE_IMAGE, "sh", "-c", "sleep 1; exit 3"])).trim()
          const label = `${engine.name}: --restart ${policy}`
          const removed = yield* Effect.forkChild(engine.request("POST", `${API}/containers/${id}/wait?condition=removed`))
          // The first exit has happened: it stopped, or the policy restarted it.
          yield* eventually(
            `${label}: the first exit`,
            Effect.map(inspect(engine, id), (c) => c.State.Status === "exited" || c.State.Status === "restarting" || c.RestartCount > 0)
          )
          assert.isUndefined(removed.pollUnsafe(), `${label}: removed answered before the removal`)
          if (policy === "no") {
            const now = yield* engine.request("POST", `${API}/containers/${id}/wait`)
            assert.deepStrictEqual([now.status, now.body], [200, "{\"Error\":null,\"StatusCode\":3}\n"], label)
          }
          yield* ok(engine, ["rm", "-f", id])
          const answer = yield* Fiber.join(removed).pipe(Effect.timeout("15 seconds"))
          assert.strictEqual(answer.status, 200, label)
          // 3 if it was between runs, 137 if the removal killed a run.
          assert.match(answer.body, /^\{"Error":null,"StatusCode":(3|137)\}\n$/, label)
        }), { concurrency: "unbounded", discard: true })
    ))

  it.effect("Env: bare names and repeats are kept in the config as given; the process env is as dockerd's (a bare name unsets only a default)", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        const env = ["FOO=1", "FOO", "BAR=", "X=1", "Y=2", "X=3", "PATH", "UNSET"]
        const created = yield* engine.request("POST", `${API}/containers/create`, JSON.stringify({ Image: FIXTURE_IMAGE, Cmd: ["/bin/env"], Env: env }))
        assert.strictEqual(created.status, 201, `${engine.name}: ${created.body}`)
        const id = JSON.parse(created.body).Id as string
        // The image's PATH is named by the request (bare), so nothing of the image's is added.
        assert.deepStrictEqual((yield* inspect(engine, id)).Config.Env, env, engine.name)
        const output = yield* ok(engine, ["start", "-a", id])
        assert.deepStrictEqual(output.trim().split("\n"), [`HOSTNAME=${id.slice(0, 12)}`, "FOO=1", "BAR=", "X=3", "Y=2", "HOME=/root"], engine.name)
        yield* ok(engine, ["rm", id])
        // Without Env of its own, the container has the image's.
        const plain = JSON.parse((yield* engine.request("POST", `${API}/containers/create`, JSON.stringify({ Image: FIXTURE_IMAGE }))).body).Id as string
        assert.deepStrictEqual((yield* inspect(engine, plain)).Config.Env, ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
        yield* ok(engine, ["rm", plain])
      })
    ))

  it.effect("Docker's defaults: NoNewPrivs 0 and oom_score_adj 0 unless --security-opt no-new-privileges / --oom-score-adj; execs inherit them", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        const probe = ["sh", "-c", "grep NoNewPrivs /proc/self/status; cat /proc/self/oom_score_adj"]
        assert.strictEqual(yield* ok(engine, ["run", "--rm", FIXTURE_IMAGE, ...probe]), "NoNewPrivs:\t0\n0\n", engine.name)
        for (const [options, expected] of [
          [["--security-opt", "no-new-privileges", "--oom-score-adj", "500"], "NoNewPrivs:\t1\n500\n"],
          [["--security-opt", "no-new-privileges:true"], "NoNewPrivs:\t1\n0\n"],
          [["--security-opt", "no-new-privileges=false", "--oom-score-adj", "1000"], "NoNewPrivs:\t0\n1000\n"]
        ] as const) {
          assert.strictEqual(yield* ok(engine, ["run", "--rm", ...options, FIXTURE_IMAGE, ...probe]), expected, `${engine.name} ${options.join(" ")}`)
        }
        const id = (yield* ok(engine, ["run", "-d", "--security-opt", "no-new-privileges", "--oom-score-adj", "300", FIXTURE_IMAGE, "sleep", "60"])).trim()
        assert.strictEqual(yield* ok(engine, ["exec", id, ...probe]), "NoNewPrivs:\t1\n300\n", `${engine.name}: exec`)
        const host = (yield* inspect(engine, id)).HostConfig
        assert.deepStrictEqual([host.OomScoreAdj, host.SecurityOpt], [300, ["no-new-privileges"]], engine.name)
        yield* ok(engine, ["rm", "-f", id])
      })
    ))

  it.effect("bad --oom-score-adj and --security-opt are refused with dockerd's messages, before anything is created", () =>
    bothEngines((engine) =>
      Effect.gen(function*() {
        const before = (yield* ok(engine, ["ps", "-aq"])).trim()
        const refusals: ReadonlyArray<readonly [Record<string, unknown>, string]> = [
          [{ OomScoreAdj: 1001 }, "Invalid value 1001, range for oom score adj is [-1000, 1000]"],
          [{ OomScoreAdj: -1001 }, "Invalid value -1001, range for oom score adj is [-1000, 1000]"],
          [{ SecurityOpt: ["no-new-privileges=maybe"] }, "invalid --security-opt 2: \"no-new-privileges=maybe\""],
          [{ SecurityOpt: ["nnp"] }, "invalid --security-opt 1: \"nnp\""],
          [{ SecurityOpt: ["foo=bar"] }, "invalid --security-opt 2: \"foo=bar\""]
        ]
        for (const [hostConfig, message] of refusals) {
          const r = yield* engine.request("POST", `${API}/containers/create`, JSON.stringify({ Image: FIXTURE_IMAGE, HostConfig: hostConfig }))
          assert.deepStrictEqual(JSON.parse(r.body), { message }, `${engine.name} ${JSON.stringify(hostConfig)}`)
          // dockerd 20.10 answers its security-opt errors with 500; bad input is a 400 here.
          if (engine.name === "ours" || hostConfig.OomScoreAdj !== undefined) assert.strictEqual(r.status, 400, message)
        }
        assert.strictEqual((yield* ok(engine, ["ps", "-aq"])).trim(), before, `${engine.name}: nothing was created`)
      })
    ))

  it.effect("swarm routes answer as dockerd off a swarm, status and body byte for byte; paths that are no swarm route are 404s", () =>
    Effect.gen(function*() {
      const { ours, dockerd } = yield* Engines
      const routes = [
        "POST /swarm/leave", "POST /swarm/leave?force=1", "GET /swarm", "GET /swarm/unlockkey", "POST /swarm/update?version=1",
        "POST /swarm/unlock", "GET /services", "GET /services/x", "POST /services/create", "POST /services/x/update?version=1",
        "DELETE /services/x", "GET /services/x/logs?stdout=1", "GET /nodes", "GET /nodes/x", "DELETE /nodes/x",
        "POST /nodes/x/update?version=1", "GET /tasks", "GET /tasks/x", "GET /tasks/x/logs?stdout=1", "GET /secrets",
        "POST /secrets/create", "DELETE /secrets/x", "GET /secrets/x", "POST /secrets/x/update?version=1", "GET /configs",
        "POST /configs/create", "DELETE /configs/x", "GET /configs/x", "POST /configs/x/update?version=1",
        "PUT /swarm", "GET /services/x/y", "POST /nodes/x"
      ]
      const answers = (engine: Engine) =>
        Effect.forEach(routes, (route) => {
          const [method, target] = route.split(" ") as [string, string]
          return Effect.map(engine.request(method, `${API}${target}`, method === "POST" ? "{}" : undefined), (r) => `${route} ${r.status} ${r.body}`)
        })
      const manager = "{\"message\":\"This node is not a swarm manager. Use \\\"docker swarm init\\\" or \\\"docker swarm join\\\" to connect this node to swarm and try again.\"}\n"
      const expected = routes.map((route) =>
        route.startsWith("POST /swarm/leave")
          ? `${route} 503 {"message":"This node is not part of a swarm"}\n`
          : ["PUT /swarm", "GET /services/x/y", "POST /nodes/x"].includes(route)
          ? `${route} 404 {"message":"page not found"}\n`
          : `${route} 503 ${manager}`
      )
      assert.deepStrictEqual(yield* answers(ours), expected)
      if (Option.isSome(dockerd)) assert.deepStrictEqual(yield* answers(dockerd.value), expected, "dockerd")
      // init and join would make a swarm: not here (dockerd would go on to check the request).
      for (const route of ["/swarm/init", "/swarm/join"]) {
        const r = yield* ours.request("POST", `${API}${route}`, "{}")
        assert.deepStrictEqual([r.status, JSON.parse(r.body)], [501, { message: "swarm mode is not supported by effect-containerd" }])
      }
    }))

  it.effect("a refusal before the body is read (404, bad version, 501 build, bad query) still reads a 20 MiB body sent slowly, then answers", () =>
    Effect.gen(function*() {
      // dockerd 20.10 answers these without reading the body (the sender stalls, or gets EPIPE): ours only.
      const { ours } = yield* Engines
      const refused: ReadonlyArray<readonly [string, string, number]> = [
        ["POST", "/nope", 404],
        ["POST", "/v9.99/containers/create", 400],
        ["POST", `${API}/build`, 501],
        ["POST", `${API}/containers/nosuch/start`, 404],
        ["POST", `${API}/containers/nosuch/wait?condition=bogus`, 400],
        ["PUT", `${API}/containers/nosuch/archive?path=/`, 404]
      ]
      for (const [method, target, status] of refused) {
        const answer = yield* sendAllThenRead(ours.socket, method, target, 20 * 1024 * 1024).pipe(Effect.timeoutOption("30 seconds"))
        assert.isTrue(Option.isSome(answer), `${method} ${target}: the body was not read`)
        assert.strictEqual(Option.getOrThrow(answer).status, status, `${method} ${target}`)
      }
    }))
})

/**
 * Sends `size` bytes of body in 64 KiB writes, each after the last was taken,
 * and only then reads the answer (as clients that stream an archive do): the
 * answer's status, or a failure if the connection broke first.
 */
const sendAllThenRead = (socket: string, method: string, target: string, size: number) =>
  Effect.callback<{ readonly status: number }, Error>((resume) => {
    const chunk = Buffer.alloc(64 * 1024, 97)
    let sent = 0
    let status: number | undefined
    let finished = false
    const settle = () => {
      if (finished && status !== undefined) resume(Effect.succeed({ status }))
    }
    const request = http.request({
      socketPath: socket,
      method,
      path: target,
      headers: { "content-type": "application/x-tar", "content-length": String(size) }
    }, (response) => {
      response.resume()
      response.on("end", () => {
        status = response.statusCode
        settle()
      })
    })
    request.on("error", (error) => resume(Effect.fail(new Error(`${method} ${target} after ${sent} bytes: ${error.message}`))))
    request.on("finish", () => {
      finished = true
      settle()
    })
    const pump = () => {
      while (sent < size) {
        sent += chunk.length
        if (!request.write(chunk)) return void request.once("drain", () => setTimeout(pump, 1))
      }
      request.end()
    }
    pump()
    return Effect.sync(() => request.destroy())
  })
