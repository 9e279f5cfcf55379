/**
 * The host-config parsers: Docker's strings and records of a create request
 * (restart policy, binds, tmpfs, sizes, network mode, log options) turned into
 * what the library takes. Pure, so bad input is refused with a message before
 * anything is created, and each rule is tested on its own.
 */
import { Result } from "effect"
import * as path from "node:path"
import { type BindMount, MAX_TMPFS_ID, type TmpfsFlag, type TmpfsMount } from "../../services/Runtime.ts"
import type { LogConfig } from "../LogFiles.ts"
import type { HostConfig, RestartPolicyName, StoredContainer } from "../Model.ts"

/** A restart policy as the engine applies it: `max` is 0 (unlimited) unless `on-failure:N`. */
export interface RestartPolicy {
  readonly name: RestartPolicyName
  readonly max: number
}

/** `HostConfig.RestartPolicy`, checked as dockerd's `ValidateRestartPolicy`. */
export const parsePolicy = (policy: HostConfig["RestartPolicy"]): Result.Result<RestartPolicy, string> => {
  const name = policy?.Name ?? ""
  const max = policy?.MaximumRetryCount ?? 0
  if (max < 0) return Result.fail("invalid restart policy: maximum retry count cannot be negative")
  switch (name) {
    case "":
    case "no":
    case "always":
    case "unless-stopped":
      if (max !== 0) return Result.fail(`invalid restart policy: maximum retry count can only be used with 'on-failure'`)
      return Result.succeed({ name: name === "" ? "no" : name, max: 0 })
    case "on-failure":
      return Result.succeed({ name, max })
    default:
      return Result.fail(`invalid restart policy '${name}': use no, always, on-failure or unless-stopped`)
  }
}

/** The policy a stored container runs under; `no` if what was stored no longer parses. */
export const policyOf = (stored: StoredContainer): RestartPolicy =>
  Result.getOrElse(parsePolicy(stored.HostConfig.RestartPolicy), () => ({ name: "no" as const, max: 0 }))

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }

/** A size as Docker writes them (`512`, `64k`, `10m`, `1g`), in bytes; `undefined` if absent or malformed. */
export const parseSize = (value: string | undefined): number | undefined => {
  const match = /^(\d+)([bkmg]?)$/i.exec(value ?? "")
  return match === null ? undefined : Number(match[1]) * UNITS[match[2]!.toLowerCase()]!
}

const TMPFS_FLAGS: ReadonlyArray<TmpfsFlag> = ["rw", "ro", "noexec", "exec", "nosuid", "suid", "nodev", "dev"]

/** Whether a container path, cleaned as Go's `path.Clean`, is the root (dockerd refuses a mount there). */
const isRoot = (destination: string) => path.posix.normalize(destination) === "/"

/** dockerd's words for a mount over the container's root. */
const ROOT_DESTINATION = "invalid specification: destination can't be '/'"

/**
 * One `HostConfig.Tmpfs` entry (`/run` → `size=64m,mode=1777,uid=1000`): the
 * size, mode, owner and flags as Docker mounts them. dockerd hands `uid=`/`gid=`
 * to the kernel as they are, so a bad one fails only at start; here it is a 400.
 */
export const parseTmpfs = (destination: string, options: string): Result.Result<TmpfsMount, string> => {
  if (!destination.startsWith("/")) return Result.fail(`invalid tmpfs mount ${destination}: the path must be absolute`)
  if (isRoot(destination)) return Result.fail(ROOT_DESTINATION)
  let size: number | undefined
  let mode: number | undefined
  const ids: { uid?: number; gid?: number } = {}
  const flags: Array<TmpfsFlag> = []
  for (const option of options.split(",").filter((o) => o !== "")) {
    const [key, value = ""] = option.split("=", 2)
    if (key === "size") {
      size = parseSize(value)
      if (size === undefined) return Result.fail(`invalid tmpfs size ${JSON.stringify(value)} for ${destination}`)
    } else if (key === "mode") {
      if (!/^[0-7]{3,4}$/.test(value)) return Result.fail(`invalid tmpfs mode ${JSON.stringify(value)} for ${destination}`)
      mode = parseInt(value, 8)
    } else if (key === "uid" || key === "gid") {
      if (!/^\d{1,10}$/.test(value) || Number(value) > MAX_TMPFS_ID) {
        return Result.fail(`invalid tmpfs ${key} ${JSON.stringify(value)} for ${destination}: use a number from 0 to ${MAX_TMPFS_ID}`)
      }
      ids[key] = Number(value)
    } else {
      const flag = TMPFS_FLAGS.find((f) => f === option)
      if (flag === undefined) return Result.fail(`invalid tmpfs option ${JSON.stringify(option)} for ${destination}`)
      flags.push(flag)
    }
  }
  return Result.succeed({ type: "tmpfs", destination, size, mode, ...ids, ...(flags.length > 0 ? { flags } : {}) })
}

const BIND_MODES = ["ro", "rw", "z", "Z", "private", "rprivate", "shared", "rshared", "slave", "rslave"]

/** A named volume in `HostConfig.Binds` (`name:/path[:mode]`): made if missing and bound from its `_data` at create. */
export interface VolumeBind {
  readonly type: "volume"
  readonly name: string
  readonly destination: string
  readonly readonly: boolean
  /** The mode as written (`-v name:/p:ro`); dockerd shows `z` when none is. */
  readonly mode: string
  /** Whether an empty volume is filled from the image's content at the path (not with `nocopy`). */
  readonly copy: boolean
}

/**
 * One `HostConfig.Binds` entry: `/host:/container[:mode]` binds a host path,
 * `name:/container[:mode]` a named volume (as dockerd's parser, a source not
 * starting with `/` is a volume name; `nocopy` is a volume's mode only).
 */
export const parseBind = (bind: string): Result.Result<BindMount | VolumeBind, string> => {
  const parts = bind.split(":")
  if (parts.length < 2 || parts.length > 3) return Result.fail(`invalid volume specification: '${bind}'`)
  const [source = "", destination = "", mode = ""] = parts
  if (source === "") return Result.fail(`invalid volume specification: '${bind}'`)
  if (!destination.startsWith("/")) return Result.fail(`invalid volume specification: '${bind}': the container path must be absolute`)
  const volume = !source.startsWith("/")
  const type = volume ? "volume" : "bind"
  if (isRoot(destination)) return Result.fail(`invalid volume specification: '${bind}': invalid mount config for type "${type}": ${ROOT_DESTINATION}`)
  const modes = mode === "" ? [] : mode.split(",")
  if (!modes.every((m) => BIND_MODES.includes(m) || (volume && m === "nocopy"))) return Result.fail(`invalid mode: ${mode}`)
  const readonly = modes.includes("ro")
  return Result.succeed(volume ? { type: "volume", name: source, destination, readonly, mode, copy: !modes.includes("nocopy") } : { type: "bind", source, destination, readonly })
}

/** The named volumes a stored container uses, from its create request (the record keeps no second list). */
export const volumeBindsOf = (stored: StoredContainer): ReadonlyArray<VolumeBind> =>
  (stored.HostConfig.Binds ?? []).flatMap((bind) =>
    Result.match(parseBind(bind), { onSuccess: (m) => (m.type === "volume" ? [m] : []), onFailure: () => [] }))

/**
 * What a network mode asks for, as dockerd's `container.NetworkMode`: no network
 * but loopback, the host's, Docker's default bridge (``, `default`, `bridge`),
 * a user network by name or id, or another container's network namespace.
 */
export type NetworkMode =
  | { readonly _tag: "None" }
  | { readonly _tag: "Host" }
  | { readonly _tag: "Bridge" }
  | { readonly _tag: "Network"; readonly ref: string }
  | { readonly _tag: "Container"; readonly ref: string }

/** `HostConfig.NetworkMode`. */
export const parseNetwork = (mode: string | null | undefined): Result.Result<NetworkMode, string> => {
  const text = mode ?? ""
  switch (text) {
    case "none":
      return Result.succeed({ _tag: "None" })
    case "host":
      return Result.succeed({ _tag: "Host" })
    case "":
    case "default":
    case "bridge":
      return Result.succeed({ _tag: "Bridge" })
  }
  if (text.startsWith("container:")) {
    const ref = text.slice("container:".length)
    return ref === "" ? Result.fail("Invalid network mode: invalid container format container:<name|id>") : Result.succeed({ _tag: "Container", ref })
  }
  return Result.succeed({ _tag: "Network", ref: text })
}

/** The namespace a mode gives the process: the host's, or one of its own (set up by CNI or joined). */
export const namespaceKind = (mode: NetworkMode): "none" | "host" => mode._tag === "Host" ? "host" : "none"

/** `HostConfig.LogConfig`, checked: only json-file, with a positive `max-size` and `max-file`. */
export const checkLogConfig = (log: HostConfig["LogConfig"]): Result.Result<void, string> => {
  if (log?.Type !== undefined && log.Type !== null && log.Type !== "" && log.Type !== "json-file") {
    return Result.fail(`logging driver ${JSON.stringify(log.Type)} is not supported: use json-file`)
  }
  const maxSize = log?.Config?.["max-size"]
  if (maxSize !== undefined && (parseSize(maxSize) ?? 0) <= 0) {
    return Result.fail(`invalid log option max-size=${JSON.stringify(maxSize)}: use a size such as 10m`)
  }
  const maxFile = log?.Config?.["max-file"]
  if (maxFile !== undefined && !/^[1-9]\d*$/.test(maxFile)) {
    return Result.fail(`invalid log option max-file=${JSON.stringify(maxFile)}: use a positive number`)
  }
  return Result.void
}

/** The container's log options, as its create request set them (dockerd's defaults: no rotation, one file). */
export const logConfigOf = (stored: StoredContainer): LogConfig => {
  const config = stored.HostConfig.LogConfig?.Config ?? {}
  const maxSize = parseSize(config["max-size"])
  const maxFiles = Number(config["max-file"] ?? 1) || 1
  return maxSize === undefined ? { maxFiles } : { maxSize, maxFiles }
}

/** `Cmd`/`Entrypoint` as an argv: the API also takes one string, which dockerd keeps whole. */
export const argv = (value: ReadonlyArray<string> | string | null | undefined): ReadonlyArray<string> | undefined =>
  value === null || value === undefined ? undefined : typeof value === "string" ? [value] : value

/** Go's `strconv.ParseBool`: the value, or `undefined` for anything else (the empty string too). */
export const goBool = (text: string): boolean | undefined =>
  ["1", "t", "T", "TRUE", "true", "True"].includes(text)
    ? true
    : ["0", "f", "F", "FALSE", "false", "False"].includes(text)
    ? false
    : undefined

/** What `HostConfig.SecurityOpt` asks for. */
export interface SecurityOptions {
  readonly noNewPrivileges: boolean
  /** Docker's default profile, none, or a profile in Docker's format (the JSON the CLI read from the file). */
  readonly seccomp: { readonly _tag: "Default" } | { readonly _tag: "Unconfined" } | { readonly _tag: "Profile"; readonly json: string }
}

/**
 * `HostConfig.SecurityOpt`, as dockerd's `parseSecurityOpt`: `no-new-privileges`
 * (alone, or `=`/`:` and a Go boolean) sets the process's no_new_privs, off unless
 * asked, as dockerd's default; `seccomp=unconfined`, `seccomp=builtin` or a
 * profile (`systempaths=unconfined` is the CLI's: it sends empty `MaskedPaths`
 * and `ReadonlyPaths` instead). Malformed options get dockerd's messages.
 * This daemon applies no AppArmor profile or SELinux label: asking for none
 * (`apparmor=unconfined`, `label=disable`) is what it does, anything else is
 * refused (dockerd accepts and ignores them on a host without AppArmor or SELinux).
 */
export const parseSecurityOpt = (options: ReadonlyArray<string> | null | undefined): Result.Result<SecurityOptions, string> => {
  let noNewPrivileges = false
  let seccomp: SecurityOptions["seccomp"] = { _tag: "Default" }
  for (const option of options ?? []) {
    if (option === "no-new-privileges") {
      noNewPrivileges = true
      continue
    }
    if (option === "disable") continue
    const separator = option.includes("=") ? "=" : option.includes(":") ? ":" : undefined
    if (separator === undefined) return Result.fail(`invalid --security-opt 1: ${JSON.stringify(option)}`)
    const at = option.indexOf(separator)
    const key = option.slice(0, at)
    const value = option.slice(at + 1)
    const invalid = Result.fail(`invalid --security-opt 2: ${JSON.stringify(option)}`)
    switch (key) {
      case "no-new-privileges": {
        const parsed = goBool(value)
        if (parsed === undefined) return invalid
        noNewPrivileges = parsed
        continue
      }
      case "seccomp":
        seccomp = value === "unconfined"
          ? { _tag: "Unconfined" }
          : value === "builtin" || value === ""
          ? { _tag: "Default" }
          : { _tag: "Profile", json: value }
        continue
      case "label":
        if (value === "disable") continue
        return Result.fail(
          `SecurityOpt ${JSON.stringify(option)} (--security-opt) is not supported: this daemon applies no SELinux labels (label=disable is what it does)`
        )
      case "apparmor":
        if (value === "unconfined") continue
        return Result.fail(
          `SecurityOpt ${JSON.stringify(option)} (--security-opt) is not supported: this daemon applies no AppArmor profile (apparmor=unconfined is what it does)`
        )
      default:
        return invalid
    }
  }
  return Result.succeed({ noNewPrivileges, seccomp })
}

/** `HostConfig.OomScoreAdj`, in the kernel's range as dockerd checks it (`verifyPlatformContainerSettings`). */
export const checkOomScoreAdj = (value: number | null | undefined): Result.Result<number, string> => {
  const adj = value ?? 0
  return adj < -1000 || adj > 1000
    ? Result.fail(`Invalid value ${adj}, range for oom score adj is [-1000, 1000]`)
    : Result.succeed(adj)
}
