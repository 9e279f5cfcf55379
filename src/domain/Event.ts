/**
 * containerd's events, decoded.
 *
 * An envelope from `Events.Subscribe` carries a namespace, a timestamp, a topic
 * and an `Any` payload. `decodeEnvelope` turns it into one case of the
 * `ContainerdEvent` tagged union, chosen by the payload's type URL (as containerd's
 * own `typeurl` does); payload types we do not model become `Unknown` with the raw
 * bytes, so nothing a consumer might want is thrown away. A payload whose bytes do
 * not decode is a `EventDecodeError`, which the event stream counts and skips.
 *
 * `Resynced` is not a containerd event: the event stream emits it when events
 * may have been missed (after a reconnect, or when a consumer fell behind), to
 * tell consumers to reconcile with containerd's state.
 */
import { Result, Schema } from "effect"
import * as ContainerEvents from "../gen/containerd/events/container.ts"
import * as ContentEvents from "../gen/containerd/events/content.ts"
import * as NamespaceEvents from "../gen/containerd/events/namespace.ts"
import * as SnapshotEvents from "../gen/containerd/events/snapshot.ts"
import * as TaskEvents from "../gen/containerd/events/task.ts"
import type { Envelope } from "../gen/containerd/services/events/v1/events.ts"
import * as ImageEvents from "../gen/containerd/services/images/v1/events.ts"
import { type MessageType, messageName } from "./Any.ts"

const Meta = {
  namespace: Schema.String,
  timestamp: Schema.Date,
  topic: Schema.String
}

const Labels = Schema.Record(Schema.String, Schema.String)

/** Every containerd event we model, plus `Unknown` for the rest. */
export const ContainerdEvent = Schema.TaggedUnion({
  TaskCreate: { ...Meta, containerId: Schema.String, bundle: Schema.String, pid: Schema.Int },
  TaskStart: { ...Meta, containerId: Schema.String, pid: Schema.Int },
  /** `id` is the exec id, or the container id for the init process. */
  TaskExit: {
    ...Meta,
    containerId: Schema.String,
    id: Schema.String,
    pid: Schema.Int,
    exitStatus: Schema.Int,
    exitedAt: Schema.Date
  },
  TaskOOM: { ...Meta, containerId: Schema.String },
  TaskExecAdded: { ...Meta, containerId: Schema.String, execId: Schema.String },
  TaskExecStarted: { ...Meta, containerId: Schema.String, execId: Schema.String, pid: Schema.Int },
  /** `id` is the exec id, or empty for the init process. */
  TaskDelete: {
    ...Meta,
    containerId: Schema.String,
    id: Schema.String,
    pid: Schema.Int,
    exitStatus: Schema.Int,
    exitedAt: Schema.Date
  },
  TaskPaused: { ...Meta, containerId: Schema.String },
  TaskResumed: { ...Meta, containerId: Schema.String },
  ContainerCreate: { ...Meta, id: Schema.String, image: Schema.String, runtime: Schema.String },
  ContainerUpdate: { ...Meta, id: Schema.String, image: Schema.String, labels: Labels, snapshotKey: Schema.String },
  ContainerDelete: { ...Meta, id: Schema.String },
  ImageCreate: { ...Meta, name: Schema.String, labels: Labels },
  ImageUpdate: { ...Meta, name: Schema.String, labels: Labels },
  ImageDelete: { ...Meta, name: Schema.String },
  SnapshotPrepare: { ...Meta, key: Schema.String, parent: Schema.String },
  SnapshotCommit: { ...Meta, key: Schema.String, name: Schema.String },
  SnapshotRemove: { ...Meta, key: Schema.String },
  ContentDelete: { ...Meta, digest: Schema.String },
  NamespaceCreate: { ...Meta, name: Schema.String, labels: Labels },
  NamespaceUpdate: { ...Meta, name: Schema.String, labels: Labels },
  NamespaceDelete: { ...Meta, name: Schema.String },
  /** A payload type we do not model; `value` holds its protobuf bytes. */
  Unknown: { ...Meta, typeUrl: Schema.String, value: Schema.Uint8Array }
})

/** A decoded containerd event. */
export type ContainerdEvent = typeof ContainerdEvent.Type

/** The case names of `ContainerdEvent`. */
export type ContainerdEventTag = ContainerdEvent["_tag"]

/** Events may have been missed before this point: reconcile with containerd's state. */
export class Resynced extends Schema.TaggedClass<Resynced>()("Resynced", {
  /** "Reconnected": the subscription was re-established; "Lagged": this consumer fell behind. */
  reason: Schema.Literals(["Reconnected", "Lagged"]),
  /** How many events this consumer missed, when known (lag); 0 after a reconnect. */
  missed: Schema.Int
}) {}

/** What an events consumer receives. */
export type EventMessage = ContainerdEvent | Resynced

/** An envelope whose payload could not be decoded. */
export class EventDecodeError extends Schema.TaggedError<EventDecodeError>()("EventDecodeError", {
  topic: Schema.String,
  typeUrl: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/** The payload types we model, by full message name; the case is the name's last part. */
const payloadTypes: ReadonlyMap<string, MessageType<object>> = new Map(
  [
    TaskEvents.TaskCreate,
    TaskEvents.TaskStart,
    TaskEvents.TaskExit,
    TaskEvents.TaskOOM,
    TaskEvents.TaskExecAdded,
    TaskEvents.TaskExecStarted,
    TaskEvents.TaskDelete,
    TaskEvents.TaskPaused,
    TaskEvents.TaskResumed,
    ContainerEvents.ContainerCreate,
    ContainerEvents.ContainerUpdate,
    ContainerEvents.ContainerDelete,
    ImageEvents.ImageCreate,
    ImageEvents.ImageUpdate,
    ImageEvents.ImageDelete,
    SnapshotEvents.SnapshotPrepare,
    SnapshotEvents.SnapshotCommit,
    SnapshotEvents.SnapshotRemove,
    ContentEvents.ContentDelete,
    NamespaceEvents.NamespaceCreate,
    NamespaceEvents.NamespaceUpdate,
    NamespaceEvents.NamespaceDelete
  ].map((type): [string, MessageType<object>] => [type.$type, type as MessageType<object>])
)

/**
 * For each case, its payload fields (the union's own fields, minus the envelope's).
 * Decoding builds events from these directly: the protobuf decoder has already
 * checked every wire type, so a Schema pass would only re-check them on the one
 * path every event takes.
 */
const payloadFields: ReadonlyMap<string, ReadonlyArray<string>> = new Map(
  Object.entries(ContainerdEvent.cases).map(([tag, schema]) => [
    tag,
    Object.keys(schema.fields).filter((field) => !(field in Meta) && field !== "_tag")
  ])
)

/** Field values as the event has them: ContainerCreate's runtime is its name; absent times are the epoch. */
const fieldValue = (payload: Record<string, unknown>, field: string): unknown => {
  const value = payload[field]
  if (field === "runtime" && typeof value === "object") return (value as { name?: string } | undefined)?.name ?? ""
  if (field === "exitedAt") return value ?? new Date(0)
  return value
}

/** Decodes one envelope into a `ContainerdEvent`. */
export const decodeEnvelope = (envelope: Envelope): Result.Result<ContainerdEvent, EventDecodeError> => {
  const typeUrl = envelope.event?.typeUrl ?? ""
  const fail = (message: string, cause?: unknown) =>
    Result.fail(new EventDecodeError({ topic: envelope.topic, typeUrl, message, cause }))
  if (envelope.event === undefined) return fail("envelope without a payload")
  const meta = { namespace: envelope.namespace, timestamp: envelope.timestamp ?? new Date(0), topic: envelope.topic }
  const type = payloadTypes.get(messageName(typeUrl))
  if (type === undefined) {
    return Result.succeed({ _tag: "Unknown", ...meta, typeUrl, value: envelope.event.value })
  }
  let payload: Record<string, unknown>
  try {
    payload = type.decode(envelope.event.value) as Record<string, unknown>
  } catch (cause) {
    return fail("malformed protobuf payload", cause)
  }
  const tag = type.$type.slice(type.$type.lastIndexOf(".") + 1)
  const event: Record<string, unknown> = { _tag: tag, ...meta }
  for (const field of payloadFields.get(tag) ?? []) event[field] = fieldValue(payload, field)
  return Result.succeed(event as ContainerdEvent)
}
