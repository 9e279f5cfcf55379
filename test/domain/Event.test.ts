import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { packMessage } from "../../src/domain/Any.ts"
import { decodeEnvelope } from "../../src/domain/Event.ts"
import * as ContainerEvents from "../../src/gen/containerd/events/container.ts"
import * as TaskEvents from "../../src/gen/containerd/events/task.ts"
import * as ImageEvents from "../../src/gen/containerd/services/images/v1/events.ts"
import type { Envelope } from "../../src/gen/containerd/services/events/v1/events.ts"
import { Empty } from "../../src/gen/google/protobuf/empty.ts"

const at = new Date("2026-01-02T03:04:05Z")
const envelope = (topic: string, event: Envelope["event"]): Envelope => ({ timestamp: at, namespace: "ns", topic, event })

describe("decodeEnvelope", () => {
  it("decodes a TaskExit with the envelope's namespace, time and topic", () => {
    const exitedAt = new Date("2026-01-02T03:04:04Z")
    const decoded = decodeEnvelope(envelope("/tasks/exit", packMessage(TaskEvents.TaskExit, {
      containerId: "c",
      id: "c",
      pid: 42,
      exitStatus: 3,
      exitedAt
    })))
    assert.deepStrictEqual(Result.getOrThrow(decoded), {
      _tag: "TaskExit",
      namespace: "ns",
      timestamp: at,
      topic: "/tasks/exit",
      containerId: "c",
      id: "c",
      pid: 42,
      exitStatus: 3,
      exitedAt
    })
  })

  it("decodes ContainerCreate with its runtime name, and image events of the images package", () => {
    const create = Result.getOrThrow(decodeEnvelope(envelope("/containers/create", packMessage(
      ContainerEvents.ContainerCreate,
      ContainerEvents.ContainerCreate.fromPartial({ id: "c", image: "img", runtime: { name: "io.containerd.runc.v2" } })
    ))))
    assert.deepStrictEqual(create._tag === "ContainerCreate" ? create.runtime : undefined, "io.containerd.runc.v2")
    const image = Result.getOrThrow(decodeEnvelope(envelope("/images/delete", packMessage(
      ImageEvents.ImageDelete,
      { name: "docker.io/library/busybox:latest" }
    ))))
    assert.strictEqual(image._tag, "ImageDelete")
  })

  it("keeps payload types it does not model as Unknown, with their bytes", () => {
    const decoded = Result.getOrThrow(decodeEnvelope(envelope("/custom/topic", packMessage(Empty, {}))))
    assert.strictEqual(decoded._tag, "Unknown")
    assert.strictEqual(decoded._tag === "Unknown" ? decoded.typeUrl : "", "google.protobuf.Empty")
  })

  it("fails on bytes that do not decode, and on envelopes without payload", () => {
    const garbage = decodeEnvelope(envelope("/tasks/exit", { typeUrl: "containerd.events.TaskExit", value: Buffer.from([0x0a, 0xff]) }))
    assert.isTrue(Result.isFailure(garbage))
    assert.isTrue(Result.isFailure(decodeEnvelope(envelope("/tasks/exit", undefined))))
  })
})
