/**
 * `google.protobuf.Any` as containerd uses it.
 *
 * containerd's `typeurl` package names protobuf payloads by their full message
 * name with no host ("containerd.events.TaskExit") and JSON payloads such as the
 * OCI runtime spec by a URL under types.containerd.io. These helpers pack and
 * unpack both kinds, checking the type URL so a payload is never decoded as
 * something it is not.
 */
import { Effect, Schema } from "effect"
import type { Any } from "../gen/google/protobuf/any.ts"

/** The parts of a ts-proto message object needed to encode and decode it. */
export interface MessageType<T> {
  /** The message's full proto name, e.g. "containerd.events.TaskExit". */
  readonly $type: string
  encode(message: T): { finish(): Uint8Array }
  decode(input: Uint8Array): T
  fromPartial(object: never): T
}

/** Type URL of a whole OCI runtime spec, as containers carry it. */
export const OciSpecTypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
/** Type URL of an OCI process, as `Tasks.Exec` takes it. */
export const OciProcessTypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/Process"
/** Type URL of OCI Linux resources, as `Tasks.Update` takes them. */
export const OciLinuxResourcesTypeUrl = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"

/** An `Any` whose type URL or bytes are not what the reader expected. */
export class AnyDecodeError extends Schema.TaggedError<AnyDecodeError>()("AnyDecodeError", {
  typeUrl: Schema.String,
  expected: Schema.String,
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/**
 * The message name a type URL refers to. Both containerd's bare names and
 * "type.googleapis.com/<name>" style URLs resolve to `<name>`.
 */
export const messageName = (typeUrl: string): string => typeUrl.slice(typeUrl.lastIndexOf("/") + 1)

/** Packs a protobuf message under its own name. */
export const packMessage = <T>(type: MessageType<T>, message: T): Any => ({
  typeUrl: type.$type,
  value: Buffer.from(type.encode(message).finish())
})

/** Unpacks a protobuf message, failing if the `Any` holds another type or bad bytes. */
export const unpackMessage = <T>(type: MessageType<T>, any: Any): Effect.Effect<T, AnyDecodeError> =>
  messageName(any.typeUrl) === type.$type
    ? Effect.try({
      try: () => type.decode(any.value),
      catch: (cause) =>
        new AnyDecodeError({ typeUrl: any.typeUrl, expected: type.$type, message: "malformed protobuf payload", cause })
    })
    : Effect.fail(
      new AnyDecodeError({ typeUrl: any.typeUrl, expected: type.$type, message: "unexpected payload type" })
    )

/** Packs a JSON payload (an OCI spec, process or resources) under `typeUrl`. */
export const packJson = (typeUrl: string, value: unknown): Any => ({
  typeUrl,
  value: Buffer.from(JSON.stringify(value))
})

/** Unpacks a JSON payload, failing on another type URL or invalid JSON. */
export const unpackJson = (typeUrl: string, any: Any): Effect.Effect<unknown, AnyDecodeError> =>
  any.typeUrl === typeUrl
    ? Effect.try({
      try: (): unknown => JSON.parse(Buffer.from(any.value).toString("utf8")),
      catch: (cause) => new AnyDecodeError({ typeUrl: any.typeUrl, expected: typeUrl, message: "invalid JSON", cause })
    })
    : Effect.fail(new AnyDecodeError({ typeUrl: any.typeUrl, expected: typeUrl, message: "unexpected payload type" }))
