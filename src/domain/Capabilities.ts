/**
 * Linux capabilities as Docker names and combines them: the kernel's list (by
 * number, `CAP_` names), Docker's default set, and `--cap-add`/`--cap-drop`
 * (moby's `oci/caps`: names upper-cased, `CAP_` optional, `ALL` on either side,
 * an unknown name refused). Pure, so a create can be checked before anything is
 * made.
 */
import { Result } from "effect"

/** Every capability the kernel defines, in bit order (`CAP_CHOWN` is bit 0). */
export const allCapabilities: ReadonlyArray<string> = [
  "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
  "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
  "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
  "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
  "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
  "CHECKPOINT_RESTORE"
].map((name) => `CAP_${name}`)

/** The capabilities Docker grants by default, in Docker's order. */
export const defaultCapabilities: ReadonlyArray<string> = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE"
]

/**
 * The capabilities of a mask (a `CapBnd:` line of /proc/<pid>/status, in hex):
 * what "all capabilities" can mean for a process that does not hold them all.
 */
export const fromMask = (hex: string): ReadonlyArray<string> => {
  const mask = BigInt(`0x${hex}`)
  return allCapabilities.filter((_, bit) => ((mask >> BigInt(bit)) & 1n) === 1n)
}

/** `--cap-add`/`--cap-drop` names as moby normalises them: `ALL`, or a known `CAP_` name; else its message. */
export const normalize = (field: string, names: ReadonlyArray<string>): Result.Result<ReadonlyArray<string>, string> => {
  const normalized: Array<string> = []
  for (const name of names) {
    const upper = name.toUpperCase()
    if (upper === "ALL") {
      normalized.push(upper)
      continue
    }
    const capability = upper.startsWith("CAP_") ? upper : `CAP_${upper}`
    if (!allCapabilities.includes(capability)) return Result.fail(`invalid ${field}: unknown capability: ${JSON.stringify(capability)}`)
    normalized.push(capability)
  }
  return Result.succeed(normalized)
}

/** What a container asks of its capabilities. */
export interface CapabilityRequest {
  readonly add?: ReadonlyArray<string> | undefined
  readonly drop?: ReadonlyArray<string> | undefined
  readonly privileged?: boolean | undefined
}

/**
 * The capability set of a container, as moby's `TweakCapabilities`: privileged
 * or `--cap-add ALL` (minus the drops) is `all`; `--cap-drop ALL` leaves only the
 * adds; otherwise the defaults minus the drops, then the adds (an add wins over a
 * drop of the same name). `all` is what the caller can grant (the daemon: its
 * own bounding set; moby uses the kernel's whole list, which fails to start on a
 * host that withholds some).
 */
export const tweak = (
  request: CapabilityRequest,
  all: ReadonlyArray<string>
): Result.Result<ReadonlyArray<string>, string> => {
  if (request.privileged === true) return Result.succeed(all)
  const adds = request.add ?? []
  const drops = request.drop ?? []
  if (adds.length === 0 && drops.length === 0) return Result.succeed(defaultCapabilities)
  return Result.flatMap(normalize("CapDrop", drops), (drop) =>
    Result.map(normalize("CapAdd", adds), (add) => {
      if (add.includes("ALL")) return all.filter((c) => !drop.includes(c))
      if (drop.includes("ALL")) return unique(add)
      return unique([...defaultCapabilities.filter((c) => !drop.includes(c)), ...add])
    }))
}

const unique = (names: ReadonlyArray<string>): ReadonlyArray<string> => [...new Set(names)]
