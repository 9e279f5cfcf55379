import { assert, describe, it } from "@effect/vitest"
import { effectiveConfig, stopSignalOf } from "../../../src/daemon/engine/Config.ts"

const image = {
  Cmd: ["sh"],
  Entrypoint: ["/init"],
  Env: ["PATH=/bin", "A=image"],
  Labels: { from: "image", both: "image" },
  WorkingDir: "/srv",
  User: "daemon",
  StopSignal: "SIGQUIT"
}

describe("Config", () => {
  it("the request completed by the image, as dockerd's merge", () => {
    const merged = effectiveConfig({ Env: ["A=request", "B=1"], Labels: { both: "request" } }, image)
    assert.deepStrictEqual(merged, {
      Cmd: ["sh"],
      Entrypoint: ["/init"],
      // dockerd's order: the request's first, then the image's it did not name.
      Env: ["A=request", "B=1", "PATH=/bin"],
      Labels: { from: "image", both: "request" },
      WorkingDir: "/srv",
      User: "daemon",
      StopSignal: "SIGQUIT",
      Healthcheck: undefined
    })
  })

  it("Env as dockerd shows it: bare names and repeats kept as given, the image's only where the request did not name them", () => {
    assert.deepStrictEqual(
      effectiveConfig({ Env: ["FOO", "BAR=", "X=1", "X=2", "PATH"] }, image).Env,
      ["FOO", "BAR=", "X=1", "X=2", "PATH", "A=image"]
    )
    assert.deepStrictEqual(effectiveConfig({}, image).Env, ["PATH=/bin", "A=image"])
  })

  it("Cmd and Entrypoint: an entrypoint of the request's own drops the image's Cmd; an empty one clears the image's", () => {
    const cases: Array<[Parameters<typeof effectiveConfig>[0], unknown, unknown]> = [
      [{ Cmd: ["echo"] }, ["echo"], ["/init"]],
      [{ Entrypoint: ["/bin/x"] }, null, ["/bin/x"]],
      [{ Entrypoint: "/bin/x", Cmd: ["a"] }, ["a"], ["/bin/x"]],
      [{ Entrypoint: [] }, ["sh"], []],
      [{ Cmd: [] }, ["sh"], ["/init"]]
    ]
    for (const [request, cmd, entrypoint] of cases) {
      const merged = effectiveConfig(request, image)
      assert.deepStrictEqual([merged.Cmd, merged.Entrypoint], [cmd, entrypoint], JSON.stringify(request))
    }
  })

  it("without image defaults (containers from before they were kept): the request alone", () => {
    const merged = effectiveConfig({ Cmd: "echo hi", User: "1" }, undefined)
    assert.deepStrictEqual(merged, { Cmd: ["echo hi"], Entrypoint: null, Env: [], Labels: {}, WorkingDir: "", User: "1", StopSignal: "", Healthcheck: undefined })
  })

  it("Healthcheck: the request's fields, each unset one (no Test, a zero) the image's, as dockerd's merge", () => {
    const fromImage = { Healthcheck: { Test: ["CMD-SHELL", "image"], Interval: 5, Retries: 2 } }
    assert.deepStrictEqual(effectiveConfig({}, fromImage).Healthcheck, fromImage.Healthcheck)
    assert.deepStrictEqual(
      effectiveConfig({ Healthcheck: { Test: [], Interval: 7, Retries: 0 } }, fromImage).Healthcheck,
      { Test: ["CMD-SHELL", "image"], Interval: 7, Retries: 2 }
    )
    assert.deepStrictEqual(effectiveConfig({ Healthcheck: { Test: ["NONE"] } }, fromImage).Healthcheck, { Test: ["NONE"], Interval: 5, Retries: 2 })
    assert.deepStrictEqual(effectiveConfig({ Healthcheck: { Test: ["CMD", "x"] } }, {}).Healthcheck, { Test: ["CMD", "x"] })
  })

  it("the stop signal: the container's, else the image's, else SIGTERM", () => {
    assert.strictEqual(stopSignalOf(effectiveConfig({ StopSignal: "SIGINT" }, image)), "SIGINT")
    assert.strictEqual(stopSignalOf(effectiveConfig({}, image)), "SIGQUIT")
    assert.strictEqual(stopSignalOf(effectiveConfig({}, {})), "SIGTERM")
  })
})
