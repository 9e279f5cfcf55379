/**
 * Reading documents from containerd's content store: a blob read whole, and
 * JSON decoded with a Schema. Image indexes, manifests and configs are small
 * JSON blobs read this way both when an image is resolved and while a pull
 * plans what to write; one reader keeps their errors alike.
 */
import { Effect, Exit, Result, Schema, Stream } from "effect"
import { type ContainerdError, invalidArgument } from "../domain/ContainerdError.ts"
import type { ContainerdClient } from "../services/Containerd.ts"

/** A schema that decodes without services. */
export type DecodableSchema = Schema.Top & { readonly DecodingServices: never }

/** The whole blob `digest` from the content store (in the current namespace). */
export const readContent = (client: ContainerdClient, digest: string): Effect.Effect<Uint8Array, ContainerdError> =>
  client.content.read({ digest }).pipe(
    Stream.runCollect,
    Effect.map((chunks): Uint8Array => Buffer.concat(chunks.map((chunk) => chunk.data)))
  )

/** JSON bytes decoded with `schema`, or what is wrong with them. */
export const decodeJson = <S extends DecodableSchema>(schema: S, bytes: Uint8Array): Result.Result<S["Type"], string> =>
  Result.try(() => JSON.parse(Buffer.from(bytes).toString("utf8")) as unknown).pipe(
    Result.mapError(() => "it is not JSON"),
    Result.flatMap((json) =>
      Schema.decodeUnknownExit(schema)(json).pipe(
        Exit.match({
          onSuccess: (value) => Result.succeed(value),
          onFailure: (cause) => Result.fail(`it is malformed: ${String(cause)}`)
        })
      )
    )
  )

/**
 * The blob `digest` decoded with `schema`; a blob that is not what it should be
 * fails with InvalidArgument for `method`, naming `what` it was read as.
 */
export const readJson = <S extends DecodableSchema>(
  client: ContainerdClient,
  method: string,
  schema: S,
  what: string,
  digest: string
): Effect.Effect<S["Type"], ContainerdError> =>
  Effect.flatMap(readContent(client, digest), (bytes) =>
    Result.match(decodeJson(schema, bytes), {
      onSuccess: Effect.succeed,
      onFailure: (problem) => Effect.fail(invalidArgument(method, `the ${what} ${digest}: ${problem}`))
    }))
