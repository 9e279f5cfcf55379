import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { messageName, OciSpecTypeUrl, packJson, packMessage, unpackJson, unpackMessage } from "../../src/domain/Any.ts"
import { TaskExit } from "../../src/gen/containerd/events/task.ts"
import { ImageCreate } from "../../src/gen/containerd/services/images/v1/events.ts"

describe("Any", () => {
  it.effect("packs protobuf messages under containerd's type URLs and unpacks them", () =>
    Effect.gen(function*() {
      const exit = TaskExit.fromPartial({ containerId: "c", id: "c", pid: 42, exitStatus: 3 })
      const any = packMessage(TaskExit, exit)
      assert.strictEqual(any.typeUrl, "containerd.events.TaskExit")
      assert.deepStrictEqual(yield* unpackMessage(TaskExit, any), exit)
      assert.strictEqual(packMessage(ImageCreate, ImageCreate.fromPartial({ name: "x" })).typeUrl,
        "containerd.services.images.v1.ImageCreate")
    }))

  it.effect("accepts type URLs with a host part, as other encoders write them", () =>
    Effect.gen(function*() {
      const any = { ...packMessage(TaskExit, TaskExit.fromPartial({ pid: 7 })), typeUrl: "type.googleapis.com/containerd.events.TaskExit" }
      assert.strictEqual(messageName(any.typeUrl), "containerd.events.TaskExit")
      assert.strictEqual((yield* unpackMessage(TaskExit, any)).pid, 7)
    }))

  it.effect("refuses another type and malformed bytes", () =>
    Effect.gen(function*() {
      const other = packMessage(ImageCreate, ImageCreate.fromPartial({ name: "x" }))
      const wrongType = yield* Effect.flip(unpackMessage(TaskExit, other))
      assert.strictEqual(wrongType.message, "unexpected payload type")
      const garbage = { typeUrl: "containerd.events.TaskExit", value: Buffer.from([0xff, 0xff, 0xff]) }
      assert.strictEqual((yield* Effect.flip(unpackMessage(TaskExit, garbage))).message, "malformed protobuf payload")
    }))

  it.effect("round-trips JSON payloads such as the OCI spec", () =>
    Effect.gen(function*() {
      const spec = { ociVersion: "1.0.2", process: { args: ["sh"] } }
      const any = packJson(OciSpecTypeUrl, spec)
      assert.strictEqual(any.typeUrl, "types.containerd.io/opencontainers/runtime-spec/1/Spec")
      assert.deepStrictEqual(yield* unpackJson(OciSpecTypeUrl, any), spec)
      const invalid = yield* Effect.flip(unpackJson(OciSpecTypeUrl, { typeUrl: OciSpecTypeUrl, value: Buffer.from("{") }))
      assert.strictEqual(invalid.message, "invalid JSON")
    }))
})
