/**
 * What a container is created with, and how that becomes its OCI spec: the
 * options (as containerd's `container_opts.go` and `oci` spec options lay them
 * out), their checks, the mounts, and the user resolved from the image's
 * /etc/passwd and /etc/group.
 *
 * Everything here is checked or computed before any RPC, so that bad input is
 * rejected before anything is created.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { type MergedProcess, processEnv } from "../../domain/ContainerConfig.ts"
import { invalidArgument } from "../../domain/ContainerdError.ts"
import { validateIdentifier } from "../../domain/Identifier.ts"
import { validateLabels } from "../../domain/Labels.ts"
import * as Oci from "../../domain/OciSpec.ts"
import type { Mount as SnapshotMount } from "../../gen/containerd/types/mount.ts"
import type { Any } from "../../gen/google/protobuf/any.ts"
import { compositeKey } from "../../internal/Key.ts"
import { readRootfsFile } from "../../internal/Rootfs.ts"
import type { AttachOptions } from "../Networks.ts"

/** A host directory bound into the container. */
export interface BindMount {
  readonly type: "bind"
  readonly source: string
  readonly destination: string
  readonly readonly?: boolean | undefined
}

/** A tmpfs in the container. */
export interface TmpfsMount {
  readonly type: "tmpfs"
  readonly destination: string
  /** Size in bytes; the kernel's default (half the RAM) when absent. */
  readonly size?: number | undefined
  /** Permission bits, e.g. 0o1777. */
  readonly mode?: number | undefined
  /** Owner of the tmpfs root (the kernel's `uid=`/`gid=`); root when absent. */
  readonly uid?: number | undefined
  readonly gid?: number | undefined
  /**
   * Mount flags over Docker's defaults for a tmpfs (`noexec`, `nosuid`, `nodev`,
   * read-write): each replaces its opposite, as Docker's `MergeTmpfsOptions`.
   */
  readonly flags?: ReadonlyArray<TmpfsFlag> | undefined
}

/** A flag a tmpfs can be mounted with, each with its opposite. */
export type TmpfsFlag = "ro" | "rw" | "exec" | "noexec" | "suid" | "nosuid" | "dev" | "nodev"

const OPPOSITE: ReadonlyMap<TmpfsFlag, TmpfsFlag> = new Map([
  ["ro", "rw"], ["rw", "ro"], ["exec", "noexec"], ["noexec", "exec"],
  ["suid", "nosuid"], ["nosuid", "suid"], ["dev", "nodev"], ["nodev", "dev"]
])

/** Docker's tmpfs flags with `flags` over them: a flag replaces its opposite (the last one given wins). */
const tmpfsFlags = (flags: ReadonlyArray<TmpfsFlag>): ReadonlyArray<TmpfsFlag> =>
  flags.reduce<ReadonlyArray<TmpfsFlag>>(
    (merged, flag) => [...merged.filter((f) => f !== flag && f !== OPPOSITE.get(flag)), flag],
    ["nosuid", "nodev", "noexec"]
  )

/** The largest uid or gid a tmpfs takes (2^32 - 2: the kernel reads -1 as "unchanged"). */
export const MAX_TMPFS_ID = 4294967294

/** Everything a container can be created with. */
export interface CreateContainerOptions {
  /** containerd's identifier rule: letters and digits joined by '.', '_' or '-'. */
  readonly id: string
  /** The name of an image already in containerd (and unpacked). */
  readonly image: string
  /** Replaces the image's Entrypoint (and then its Cmd); `[]` clears it. */
  readonly entrypoint?: ReadonlyArray<string> | undefined
  /** The command, i.e. Docker's Cmd: arguments after the entrypoint. */
  readonly command?: ReadonlyArray<string> | undefined
  /** Variables, "KEY=value"; they win over the image's. */
  readonly env?: ReadonlyArray<string> | undefined
  readonly workingDir?: string | undefined
  /** "user", "uid", "user:group", "uid:gid", ... resolved in the container's /etc/passwd. */
  readonly user?: string | undefined
  readonly labels?: Readonly<Record<string, string>> | undefined
  readonly mounts?: ReadonlyArray<BindMount | TmpfsMount> | undefined
  /** Defaults to the id (at most 63 characters). */
  readonly hostname?: string | undefined
  /** A terminal for the init process: one output stream, and `resize`. */
  readonly tty?: boolean | undefined
  /**
   * "none" (default): an own network namespace with loopback only; "host": the
   * host's; or networks (`AttachOptions`): the namespace `Networks.netnsPath`
   * names, which each task's start attaches to them (the `Networks` service must
   * be provided). Stored on the record, so a loaded container keeps them.
   */
  readonly network?: "none" | "host" | AttachOptions | undefined
  readonly readonlyRootfs?: boolean | undefined
  readonly resources?: {
    /** Bytes; at least 6 MiB, as Docker requires. */
    readonly memory?: number | undefined
    /** Relative CPU weight (1024 is the default), at least 2. */
    readonly cpuShares?: number | undefined
  } | undefined
  /** Further supplementary groups (Docker's `GroupAdd`): names in the image's /etc/group, or numeric ids. */
  readonly groupAdd?: ReadonlyArray<string> | undefined
  /** Defaults to the Runtime's (io.containerd.runc.v2). */
  readonly runtime?: string | undefined
  /** A runc-compatible binary for the runc shim to run instead of `runc` (an absolute path). */
  readonly runtimeBinary?: string | undefined
  /** Further spec changes, applied last. */
  readonly spec?: ReadonlyArray<Oci.SpecOption> | undefined
  /**
   * The client's own data about the container, stored on the containerd record
   * (its `extensions`), written in the same call that creates it.
   */
  readonly extensions?: Readonly<Record<string, Any>> | undefined
}

const MIN_MEMORY = 6 * 1024 * 1024

/** Whether `n` is a whole number above zero (sizes, terminal dimensions). */
export const isPositiveInteger = (n: number): boolean => Number.isSafeInteger(n) && n > 0

/** Checks everything about the options that needs no RPC. */
export const validateOptions = Effect.fnUntraced(function*(method: string, options: CreateContainerOptions) {
  yield* validateIdentifier(method, "container id", options.id)
  if (options.image === "") return yield* Effect.fail(invalidArgument(method, "an image is required"))
  yield* validateLabels(method, options.labels ?? {})
  for (const mount of options.mounts ?? []) {
    if (!path.isAbsolute(mount.destination)) {
      return yield* Effect.fail(invalidArgument(method, `mount destination ${JSON.stringify(mount.destination)} is not absolute`))
    }
    // Over the rootfs itself: runc fails at start, long after the container was made.
    if (path.posix.normalize(mount.destination) === "/") {
      return yield* Effect.fail(invalidArgument(method, `mount destination ${JSON.stringify(mount.destination)} is the container's root`))
    }
    if (mount.type === "bind" && (!path.isAbsolute(mount.source) || !fs.existsSync(mount.source))) {
      return yield* Effect.fail(invalidArgument(method, `bind source ${JSON.stringify(mount.source)} does not exist`))
    }
    if (mount.type === "tmpfs" && mount.size !== undefined && !isPositiveInteger(mount.size)) {
      return yield* Effect.fail(invalidArgument(method, `tmpfs size ${mount.size} is not a positive number of bytes`))
    }
    const ids = mount.type === "tmpfs" ? [["uid", mount.uid], ["gid", mount.gid]] as const : []
    for (const [name, id] of ids) {
      if (id !== undefined && (!Number.isSafeInteger(id) || id < 0 || id > MAX_TMPFS_ID)) {
        return yield* Effect.fail(invalidArgument(method, `tmpfs ${name} ${id} is not a user or group id (0 to ${MAX_TMPFS_ID})`))
      }
    }
  }
  const memory = options.resources?.memory
  if (memory !== undefined && (!isPositiveInteger(memory) || memory < MIN_MEMORY)) {
    return yield* Effect.fail(invalidArgument(method, `memory limit ${memory} is invalid: the minimum is 6 MiB (${MIN_MEMORY} bytes)`))
  }
  const shares = options.resources?.cpuShares
  if (shares !== undefined && (!Number.isSafeInteger(shares) || shares < 2)) {
    return yield* Effect.fail(invalidArgument(method, `CPU shares ${shares} is invalid: use an integer of at least 2`))
  }
  if (options.runtimeBinary !== undefined && !path.isAbsolute(options.runtimeBinary)) {
    return yield* Effect.fail(invalidArgument(method, `runtime binary ${JSON.stringify(options.runtimeBinary)} is not an absolute path`))
  }
  const hostname = options.hostname
  if (hostname !== undefined && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$/.test(hostname)) {
    return yield* Effect.fail(invalidArgument(method, `invalid hostname ${JSON.stringify(hostname)}`))
  }
})

const toOciMount = (mount: BindMount | TmpfsMount): Oci.Mount =>
  mount.type === "bind"
    ? { destination: mount.destination, type: "bind", source: mount.source, options: ["rbind", mount.readonly ? "ro" : "rw"] }
    : {
      destination: mount.destination,
      type: "tmpfs",
      source: "tmpfs",
      options: [
        ...tmpfsFlags(mount.flags ?? []),
        ...(mount.size === undefined ? [] : [`size=${mount.size}`]),
        ...(mount.mode === undefined ? [] : [`mode=${mount.mode.toString(8)}`]),
        ...(mount.uid === undefined ? [] : [`uid=${mount.uid}`]),
        ...(mount.gid === undefined ? [] : [`gid=${mount.gid}`])
      ]
    }

/**
 * The container's spec for `user`: the defaults, the options merged with the
 * image's config, then the caller's changes. `netns` is the namespace a
 * container on networks joins.
 */
export const containerSpec = (
  namespace: string,
  options: CreateContainerOptions,
  merged: MergedProcess,
  user: Oci.User,
  netns?: string
): Oci.Spec => {
  const hostname = options.hostname ?? options.id.slice(0, 63)
  const tty = options.tty ?? false
  return Oci.applyOptions(Oci.defaultSpec({ namespace, id: options.id }), [
    Oci.withArgs(merged.args),
    Oci.withEnv(processEnv(merged.env, { hostname, tty })),
    Oci.withCwd(merged.workingDir),
    Oci.withUser(user),
    Oci.withTerminal(tty),
    Oci.withHostname(hostname),
    Oci.withNetwork(typeof options.network === "object" ? { netns: netns ?? "" } : options.network ?? "none"),
    Oci.withReadonlyRootfs(options.readonlyRootfs ?? false),
    Oci.withMounts((options.mounts ?? []).map(toOciMount)),
    ...(options.resources?.memory === undefined ? [] : [Oci.withMemoryLimit(options.resources.memory)]),
    ...(options.resources?.cpuShares === undefined ? [] : [Oci.withCpuShares(options.resources.cpuShares)]),
    ...(options.spec ?? [])
  ])
}

/** Whether two resolved users are the same (so the spec need not change). */
export const sameUser = (a: Oci.User, b: Oci.User): boolean => JSON.stringify(a) === JSON.stringify(b)

/** An image's /etc/passwd and /etc/group, as Docker resolves users from them (absent files: numeric ids only). */
export interface UserFileContents {
  readonly passwd: string | undefined
  readonly group: string | undefined
}

/** The user files of images' root filesystems, by namespace and config digest: read once per image. */
export interface UserFiles {
  readonly get: (namespace: string, configDigest: string | undefined) => UserFileContents | undefined
  readonly set: (namespace: string, configDigest: string, files: UserFileContents) => void
}

/** An empty cache of user files. */
export const makeUserFiles = (): UserFiles => {
  const files = new Map<string, UserFileContents>()
  return {
    get: (namespace, configDigest) => configDigest === undefined ? undefined : files.get(compositeKey(namespace, configDigest)),
    set: (namespace, configDigest, contents) => void files.set(compositeKey(namespace, configDigest), contents)
  }
}

/** Reads the user files from a root filesystem's mounts (a prepared snapshot's layers). */
export const readUserFiles = (mounts: ReadonlyArray<SnapshotMount>): Effect.Effect<UserFileContents> =>
  Effect.all({ passwd: readRootfsFile(mounts, "/etc/passwd"), group: readRootfsFile(mounts, "/etc/group") })
