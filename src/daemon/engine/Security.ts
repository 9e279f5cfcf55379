/**
 * The isolation of a container, as dockerd gives it (moby's `oci_linux.go`):
 * Docker's default capabilities tweaked by `CapAdd`/`CapDrop`, Docker's default
 * seccomp profile for them (or none, or the caller's), the masked and read-only
 * /proc paths (or the request's: the CLI's `systempaths=unconfined` sends none), no_new_privs when asked, and `Privileged` (every capability the
 * daemon holds, the host's devices, no seccomp, nothing masked, /sys writable).
 * The OCI runtime is `runc` or one the daemon was started with
 * (`--add-runtime name=path`). All of it is checked before anything is created.
 */
import { Effect, Result } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as Capabilities from "../../domain/Capabilities.ts"
import * as Oci from "../../domain/OciSpec.ts"
import { fromDockerProfile, type LinuxSeccomp } from "../../domain/Seccomp.ts"
import type { HostConfig } from "../Model.ts"
import { parseSecurityOpt } from "./HostConfig.ts"

/** What the daemon can grant, learned once at its start. */
export interface Platform {
  /** Node's `process.arch`. */
  readonly arch: string
  /** The kernel's major and minor version. */
  readonly kernel: readonly [number, number]
  /** The daemon's own bounding set: what "all capabilities" can be here. */
  readonly capabilities: ReadonlyArray<string>
  /** The runtimes configured with `--add-runtime`: name → runc-compatible binary. */
  readonly runtimes: ReadonlyMap<string, string>
}

/** The names that mean the default runtime: Docker's, and the containerd shim's it stands for. */
const DEFAULT_RUNTIMES = new Set(["", "runc", "io.containerd.runc.v2"])

/** The platform of this process, with the runtimes the daemon was given. */
export const readPlatform = (runtimes: ReadonlyMap<string, string>): Effect.Effect<Platform> =>
  Effect.sync(() => {
    const status = fs.readFileSync("/proc/self/status", "utf8")
    const bounding = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status)?.[1]
    const [major = 0, minor = 0] = os.release().split(/[.-]/).map(Number)
    return {
      arch: process.arch,
      kernel: [major, minor],
      capabilities: bounding === undefined ? Capabilities.allCapabilities : Capabilities.fromMask(bounding),
      runtimes
    }
  })

/** The isolation a create asks for, checked. */
export interface Isolation {
  readonly privileged: boolean
  readonly capabilities: ReadonlyArray<string>
  /** `CapAdd` and `CapDrop` as dockerd stores them (`CAP_` names, upper case); absent when not given. */
  readonly capAdd: ReadonlyArray<string> | undefined
  readonly capDrop: ReadonlyArray<string> | undefined
  readonly noNewPrivileges: boolean
  /** Docker's default profile (for the capabilities), none, or the caller's. */
  readonly seccomp: { readonly _tag: "Default" } | { readonly _tag: "None" } | { readonly _tag: "Profile"; readonly profile: LinuxSeccomp }
  /** The paths masked and read-only in /proc and /sys: Docker's, unless the request lists its own. */
  readonly systemPaths: { readonly masked: ReadonlyArray<string>; readonly readonly: ReadonlyArray<string> }
  /** A runc-compatible binary for the shim to run instead of runc (a configured runtime). */
  readonly runtimeBinary: string | undefined
}

/** `HostConfig.Runtime`: the default, or a configured one (its binary); dockerd's message for any other. */
export const runtimeOf = (name: string | null | undefined, platform: Platform): Result.Result<string | undefined, string> => {
  if (DEFAULT_RUNTIMES.has(name ?? "")) return Result.succeed(undefined)
  const binary = platform.runtimes.get(name!)
  return binary === undefined ? Result.fail(`Unknown runtime specified ${name}`) : Result.succeed(binary)
}

/** What `host` asks of a container's isolation on `platform`, or the 400's message. */
export const isolationOf = (host: HostConfig, platform: Platform): Result.Result<Isolation, string> =>
  Result.gen(function*() {
    const security = yield* parseSecurityOpt(host.SecurityOpt)
    const privileged = host.Privileged === true
    const capabilities = yield* Capabilities.tweak(
      { add: host.CapAdd ?? [], drop: host.CapDrop ?? [], privileged },
      platform.capabilities
    )
    const target = { arch: platform.arch, kernel: platform.kernel, capabilities }
    // Checked even when privileged, which applies none, so a broken profile is never stored.
    const custom = security.seccomp._tag === "Profile" ? yield* fromDockerProfile(security.seccomp.json, target) : undefined
    const seccomp: Isolation["seccomp"] = privileged || security.seccomp._tag === "Unconfined"
      ? { _tag: "None" }
      : custom === undefined
      ? { _tag: "Default" }
      : { _tag: "Profile", profile: custom }
    return {
      privileged,
      capabilities,
      capAdd: host.CapAdd ? yield* Capabilities.normalize("CapAdd", host.CapAdd) : undefined,
      capDrop: host.CapDrop ? yield* Capabilities.normalize("CapDrop", host.CapDrop) : undefined,
      noNewPrivileges: security.noNewPrivileges,
      seccomp,
      systemPaths: { masked: host.MaskedPaths ?? Oci.maskedPaths, readonly: host.ReadonlyPaths ?? Oci.readonlyPaths },
      runtimeBinary: yield* runtimeOf(host.Runtime, platform)
    }
  })

/**
 * The spec options of an isolation, in the order they need: capabilities first
 * (the default seccomp profile depends on them), `withPrivileged` after the
 * library's `withReadonlyRootfs` (these come after it, as `spec` options do).
 */
export const isolationSpec = (
  isolation: Isolation,
  platform: Platform,
  hostDevices: ReadonlyArray<Oci.Device>
): ReadonlyArray<Oci.SpecOption> => [
  Oci.withCapabilities(isolation.capabilities),
  Oci.withNoNewPrivileges(isolation.noNewPrivileges),
  Oci.withSystemPaths(isolation.systemPaths),
  ...(isolation.privileged ? [Oci.withPrivileged(hostDevices)] : []),
  isolation.seccomp._tag === "Default"
    ? Oci.withDefaultSeccomp(platform)
    : Oci.withSeccomp(isolation.seccomp._tag === "Profile" ? isolation.seccomp.profile : undefined)
]
