/**
 * A container on networks, as the runtime sees it: what it was created with
 * (stored on its containerd record, so a loaded container and a recovering
 * program know it), the checks made before any RPC, and the attachment of its
 * task: made before `Tasks.Create` (runc joins a namespace that must already
 * be set up, as CRI's sandbox does) and released when the task goes.
 *
 * The attachment is the task's, not the handle's: deleting the task through
 * its handle, closing the handle's scope, or a task create that failed release
 * it, but a program stopping while the task runs may keep it (`keep`), so the
 * namespace, addresses and ports survive until its next start adopts them
 * (`Networks.adopt`), as its containers survive it.
 */
import { Effect, Exit, Option, Schema, Scope } from "effect"
import { packJson } from "../../domain/Any.ts"
import { failedPrecondition } from "../../domain/ContainerdError.ts"
import type { Any } from "../../gen/google/protobuf/any.ts"
import type { AttachOptions, Attachment, NetworksShape } from "../Networks.ts"

const NETWORK_EXTENSION = "effect-containerd.io/network"
const NETWORK_TYPE_URL = "types.effect-containerd.io/AttachOptions"

const StoredAttachOptions = Schema.Struct({
  networks: Schema.Array(Schema.Struct({
    network: Schema.String,
    ip: Schema.optional(Schema.String),
    mac: Schema.optional(Schema.String)
  })),
  ports: Schema.optional(Schema.Array(Schema.Struct({
    hostPort: Schema.Number,
    containerPort: Schema.Number,
    protocol: Schema.Literals(["tcp", "udp"]),
    hostIp: Schema.optional(Schema.String)
  })))
})
const decodeStored = Schema.decodeUnknownOption(Schema.fromJsonString(StoredAttachOptions))

/** The extension that stores a container's networks on its record, written by the create. */
export const networkExtension = (options: AttachOptions): Record<string, Any> => ({
  [NETWORK_EXTENSION]: packJson(NETWORK_TYPE_URL, options)
})

/**
 * What a container record says it is attached with: none for a container
 * without networks; `Some(None)` for one whose stored options cannot be read.
 */
export const storedNetworkOf = (extensions: Readonly<Record<string, Any>>): Option.Option<Option.Option<AttachOptions>> => {
  const extension = extensions[NETWORK_EXTENSION]
  if (extension === undefined) return Option.none()
  if (extension.typeUrl !== NETWORK_TYPE_URL) return Option.some(Option.none())
  return Option.some(decodeStored(Buffer.from(extension.value).toString("utf8")))
}

/**
 * Checks networks asked of a container before anything is created: the
 * networks service is there (it is returned), and it finds the options sound
 * (`Networks.validate`); what needs the host (a free host port) is the attach's.
 */
export const validateNetwork = Effect.fnUntraced(function*(
  method: string,
  networks: Option.Option<NetworksShape>,
  options: AttachOptions
) {
  if (Option.isNone(networks)) {
    return yield* Effect.fail(failedPrecondition(
      method,
      `networks ${JSON.stringify(options.networks.map((n) => n.network))} were asked for, but no Networks service is provided`
    ))
  }
  yield* networks.value.validate(method, options)
  return networks.value
})

/** Whether a spec (JSON) joins the network namespace at `netns`. */
export const joinsNetns = (spec: unknown, netns: string): boolean =>
  ((spec as { linux?: { namespaces?: ReadonlyArray<{ type?: string; path?: string }> } } | undefined)?.linux?.namespaces ?? [])
    .some((ns) => ns.type === "network" && ns.path === netns)

/** A task's attachment, held in a scope of its own so that it can outlive the task's handle. */
export interface HeldAttachment {
  readonly attachment: Attachment
  /** Lets the attachment outlive the handle's scope (the program stops, the task runs on). */
  readonly keep: Effect.Effect<void>
  /** Undoes `keep`: the handle's scope closing (a delete through it) releases the attachment again. */
  readonly unkeep: Effect.Effect<void>
}

/**
 * Runs `acquire` (an attach or an adopt) in a scope of its own, released when
 * `owner` (the task's scope) closes unless it was kept. Not a child of the
 * owner: a kept attachment must survive the owner's close. A failed acquire
 * leaves nothing (its scope closed with the failure).
 */
export const holdAttachment = <E>(
  owner: Scope.Scope,
  acquire: Effect.Effect<Option.Option<Attachment>, E, Scope.Scope>
): Effect.Effect<Option.Option<HeldAttachment>, E> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      // Interrupted while acquiring: the scope closes with that, releasing what was made.
      const acquired = yield* Effect.exit(restore(Scope.provide(acquire, scope)))
      if (Exit.isFailure(acquired) || Option.isNone(acquired.value)) {
        yield* Scope.close(scope, acquired)
        return yield* Effect.map(acquired, () => Option.none<HeldAttachment>())
      }
      let kept = false
      yield* Scope.addFinalizer(owner, Effect.suspend(() => kept ? Effect.void : Scope.close(scope, Exit.void)))
      return Option.some({
        attachment: acquired.value.value,
        keep: Effect.sync(() => void (kept = true)),
        unkeep: Effect.sync(() => void (kept = false))
      })
    })
  )
