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
      Env: ["PATH=/bin", "A=request", "B=1"],
      Labels: { from: "image", both: "request" },
      WorkingDir: "/srv",
      User: "daemon",
      StopSignal: "SIGQUIT"
    })
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
    assert.deepStrictEqual(merged, { Cmd: ["echo hi"], Entrypoint: null, Env: [], Labels: {}, WorkingDir: "", User: "1", StopSignal: "" })
  })

  it("the stop signal: the container's, else the image's, else SIGTERM", () => {
    assert.strictEqual(stopSignalOf(effectiveConfig({ StopSignal: "SIGINT" }, image)), "SIGINT")
    assert.strictEqual(stopSignalOf(effectiveConfig({}, image)), "SIGQUIT")
    assert.strictEqual(stopSignalOf(effectiveConfig({}, {})), "SIGTERM")
  })
})
