/**
 * Containers, tasks and processes as handles, with the fewest RPCs there can be.
 *
 * moby's libcontainerd learned (in its 2022 overhaul) what containerd's Go client
 * always did: pass handles, not ids. `containers.create` returns a `Container`
 * that keeps its record, its image's config and its rootfs mounts; `newTask`
 * returns a `Task` that keeps its pid; `exec` a `Process`. Nothing is reloaded,
 * so a whole `run --rm` costs seven RPCs once the image has been used before:
 * Containers.Create, Snapshots.Prepare, Tasks.Create, Tasks.Start, Tasks.Delete,
 * Snapshots.Remove, Containers.Delete. The exit costs none — it comes from the
 * exit hub, registered before the start. An exec costs three: Exec, Start,
 * DeleteProcess. A container on networks costs none more: its spec joins the
 * netns its attachment is set up in from its creation, and the attachment is
 * made (and released) by the `Networks` service beside the task's RPCs.
 *
 * Ordering that matters:
 * - The container record is created before its snapshot is prepared, and the
 *   snapshot removed before the record is deleted: a record's snapshot key is a
 *   reference for containerd's garbage collector, so the snapshot is never
 *   unreferenced and no lease (two more RPCs) is needed.
 * - Everything checkable is checked before anything is created; if a later step
 *   fails, what was created is removed again.
 * - The user is resolved as Docker does, from the image's /etc/passwd and
 *   /etc/group, read from the prepared snapshot's layers and cached by image
 *   config digest. The first container of an image is created with the answer
 *   that needs no files (root, or the numeric ids) and updated only if the files
 *   say otherwise.
 *
 * Every handle works in the namespace it was made in, whatever the caller's
 * ambient namespace is later. A task or process owns a child of the caller's
 * scope holding its stdio and its exit registration; deleting it (or closing
 * that scope) releases them.
 *
 * This module is the service and its assembly (creating, loading and listing
 * containers); the handles live in `runtime/` as containerd's Go client lays
 * them out: `Container.ts`, `Task.ts`, `Process.ts`, and `ContainerOptions.ts`
 * (create options → spec, user resolution, mounts). Their names are
 * re-exported here.
 */
import { Context, Effect, Layer, Option, Result } from "effect"
import { OciSpecTypeUrl, packJson, unpackJson } from "../domain/Any.ts"
import { addGroups, mergeWithImage, resolveUser } from "../domain/ContainerConfig.ts"
import { type ContainerdError, invalidArgument } from "../domain/ContainerdError.ts"
import { validateIdentifier } from "../domain/Identifier.ts"
import type * as Oci from "../domain/OciSpec.ts"
import type { Container as ContainerRecord } from "../gen/containerd/services/containers/v1/containers.ts"
import { makeFifoPool } from "../internal/Fifo.ts"
import { Containerd, withNamespace } from "./Containerd.ts"
import { ExitHub } from "./ExitHub.ts"
import { Images } from "./Images.ts"
import { Networks } from "./Networks.ts"
import { runcOptions } from "../internal/RuncOptions.ts"
import { type Container, makeContainer } from "./runtime/Container.ts"
import {
  containerSpec,
  type CreateContainerOptions,
  makeUserFiles,
  readUserFiles,
  sameUser,
  validateOptions
} from "./runtime/ContainerOptions.ts"
import type { RuntimeEnv } from "./runtime/Env.ts"
import { networkExtension, validateNetwork } from "./runtime/Network.ts"

export { Stdio } from "../domain/Stdio.ts"
export type { Container, ContainerInfo, ContainerUpdate, NewTaskOptions } from "./runtime/Container.ts"
export type { BindMount, CreateContainerOptions, TmpfsFlag, TmpfsMount } from "./runtime/ContainerOptions.ts"
export { MAX_TMPFS_ID } from "./runtime/ContainerOptions.ts"
export type { Process } from "./runtime/Process.ts"
export type { ExecOptions, ResourceUpdate, Task, TaskStatusSeen } from "./runtime/Task.ts"

/** Labels the runtime puts on containerd containers. */
export const RuntimeLabels = {
  /**
   * "true" on a container created with a provisional spec (a user name the image's files must
   * resolve, on the image's first use): the update with the real user clears it, in the same RPC.
   * A container that still has it is a create that did not finish.
   */
  creating: "effect-containerd.io/creating"
} as const

/** The runtime service. */
export interface RuntimeShape {
  readonly containers: {
    readonly create: (options: CreateContainerOptions) => Effect.Effect<Container, ContainerdError>
    readonly load: (id: string) => Effect.Effect<Container, ContainerdError>
    /** containerd filters, e.g. `labels."app"==web`. */
    readonly list: (filters?: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<Container>, ContainerdError>
  }
}

/** How the runtime behaves. */
export interface RuntimeOptions {
  /** Where process FIFOs are made; default /run/effect-containerd/fifo. */
  readonly fifoDir?: string | undefined
  /** Default overlayfs. */
  readonly snapshotter?: string | undefined
  /** Default io.containerd.runc.v2. */
  readonly runtime?: string | undefined
  /**
   * How many exec starts of one task may be in flight at once; more wait their
   * turn, unseen by callers. Default 8. Why: in containerd 1.6's runc shim every
   * child exit is broadcast to every running runc command through a 32-slot
   * buffer, and each notification may wait up to a second; past ~16 concurrent
   * `runc exec`s the buffers fill and execs crawl (50 at once: 63 s with ctr, and
   * Tasks.Start deadlines with us). Only Start runs runc; Exec does not.
   */
  readonly execConcurrency?: number | undefined
}

/** Builds the runtime; it needs the client, the exit hub and the image resolver. */
export const makeRuntime = Effect.fnUntraced(function*(options: RuntimeOptions = {}) {
  const client = yield* Containerd
  const images = yield* Images
  const fifoDir = options.fifoDir ?? "/run/effect-containerd/fifo"
  const snapshotter = options.snapshotter ?? "overlayfs"
  const defaultRuntime = options.runtime ?? "io.containerd.runc.v2"
  const env: RuntimeEnv = {
    client,
    hub: yield* ExitHub,
    fifos: yield* makeFifoPool(fifoDir),
    fifoDir,
    execConcurrency: options.execConcurrency ?? 8,
    userFiles: makeUserFiles(),
    // Only programs whose containers join networks provide it.
    networks: yield* Effect.serviceOption(Networks)
  }

  const create = Effect.fn("Runtime.containers.create")(function*(options: CreateContainerOptions) {
    const method = "Runtime.containers.create"
    yield* validateOptions(method, options)
    const namespace = yield* client.currentNamespace
    const attach = typeof options.network === "object" ? options.network : undefined
    if (attach !== undefined) yield* validateNetwork(method, env.networks, attach)
    const netns = Option.match(env.networks, { onNone: () => undefined, onSome: (n) => n.netnsPath(namespace, options.id) })
    const rpc = withNamespace(namespace)
    const image = yield* images.resolve(options.image)
    const merged = mergeWithImage(image.config.config, {
      entrypoint: options.entrypoint,
      cmd: options.command,
      env: options.env,
      workingDir: options.workingDir,
      user: options.user
    })
    if (Result.isFailure(merged)) return yield* Effect.fail(invalidArgument(method, merged.failure))
    const knownFiles = env.userFiles.get(namespace, image.configDigest)
    const userOf = (files: { readonly passwd?: string | undefined; readonly group?: string | undefined }) =>
      Result.flatMap(resolveUser(merged.success.user, files), (user) => addGroups(user, options.groupAdd ?? [], files.group))
    // Without the image's files, the answer that needs none; corrected below if they disagree.
    const firstUser = userOf(knownFiles ?? {})
    if (knownFiles !== undefined && Result.isFailure(firstUser)) {
      return yield* Effect.fail(invalidArgument(method, firstUser.failure))
    }
    const provisional = Result.getOrElse(firstUser, () => ({ uid: 0, gid: 0, additionalGids: [0] }))
    // A spec that the update below will certainly correct is marked until it does (no RPC of its own).
    const marked = knownFiles === undefined && Result.isFailure(firstUser)
    const specOf = (user: Oci.User) => containerSpec(namespace, options, merged.success, user, netns)
    let spec = specOf(provisional)
    const created = yield* rpc(client.containers.create({
      container: {
        id: options.id,
        labels: marked ? { ...options.labels, [RuntimeLabels.creating]: "true" } : options.labels ?? {},
        image: options.image,
        runtime: {
          name: options.runtime ?? defaultRuntime,
          options: options.runtimeBinary === undefined ? undefined : runcOptions(options.runtimeBinary)
        },
        spec: packJson(OciSpecTypeUrl, spec),
        snapshotter,
        snapshotKey: options.id,
        extensions: { ...options.extensions, ...(attach === undefined ? {} : networkExtension(attach)) }
      }
    }))
    let record = created.container!
    const removeAll = (removeSnapshot: boolean) =>
      rpc(Effect.gen(function*() {
        if (removeSnapshot) yield* client.snapshots.remove({ snapshotter, key: options.id })
        yield* client.containers.delete({ id: options.id })
      })).pipe(Effect.ignore)
    const { mounts } = yield* rpc(client.snapshots.prepare({
      snapshotter,
      key: options.id,
      parent: image.chainId
    })).pipe(Effect.onError(() => removeAll(false)))

    if (knownFiles === undefined) {
      const files = yield* readUserFiles(mounts)
      env.userFiles.set(namespace, image.configDigest, files)
      const exact = userOf(files)
      if (Result.isFailure(exact)) {
        yield* removeAll(true)
        return yield* Effect.fail(invalidArgument(method, exact.failure))
      }
      if (marked || !sameUser(exact.success, provisional)) {
        spec = specOf(exact.success)
        const updated = yield* rpc(client.containers.update({
          container: { id: options.id, spec: packJson(OciSpecTypeUrl, spec), labels: { [RuntimeLabels.creating]: "" } },
          updateMask: ["spec", `labels.${RuntimeLabels.creating}`]
        })).pipe(Effect.onError(() => removeAll(true)))
        record = updated.container ?? record
      }
    }
    return makeContainer(env, namespace, record, spec, { mounts, image })
  })

  const fromRecord = (namespace: string, record: ContainerRecord) =>
    Effect.map(
      record.spec === undefined ? Effect.succeed(undefined) : Effect.orElseSucceed(unpackJson(OciSpecTypeUrl, record.spec), () => undefined),
      (spec) => makeContainer(env, namespace, record, spec, {})
    )

  const load = Effect.fn("Runtime.containers.load")(function*(id: string) {
    yield* validateIdentifier("Runtime.containers.load", "container id", id)
    const namespace = yield* client.currentNamespace
    const { container } = yield* withNamespace(client.containers.get({ id }), namespace)
    return yield* fromRecord(namespace, container!)
  })

  const list = Effect.fn("Runtime.containers.list")(function*(filters?: ReadonlyArray<string>) {
    const namespace = yield* client.currentNamespace
    const { containers } = yield* withNamespace(client.containers.list({ filters: [...(filters ?? [])] }), namespace)
    return yield* Effect.forEach(containers, (record) => fromRecord(namespace, record))
  })

  return Runtime.of({ containers: { create, load, list } })
})

/** The runtime service. */
export class Runtime extends Context.Service<Runtime, RuntimeShape>()("effect-containerd/Runtime") {
  /** The runtime over the client, the exit hub and the image resolver. */
  static readonly layer = (options?: RuntimeOptions): Layer.Layer<Runtime, never, Containerd | ExitHub | Images> =>
    Layer.effect(Runtime, makeRuntime(options))
}
