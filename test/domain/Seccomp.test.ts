import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { defaultCapabilities } from "../../src/domain/Capabilities.ts"
import { defaultProfile, fromDockerProfile, type LinuxSeccomp, type Syscall } from "../../src/domain/Seccomp.ts"

const x64 = { arch: "x64", kernel: [6, 1] as const, capabilities: defaultCapabilities }

/** The rules that name `syscall`. */
const rulesFor = (profile: LinuxSeccomp, syscall: string): ReadonlyArray<Syscall> =>
  (profile.syscalls ?? []).filter((rule) => rule.names.includes(syscall))

describe("Docker's default seccomp profile", () => {
  it("refuses with EPERM what it does not allow, for the host's architectures", () => {
    const profile = defaultProfile(x64)
    assert.strictEqual(profile.defaultAction, "SCMP_ACT_ERRNO")
    assert.isUndefined(profile.defaultErrnoRet)
    assert.deepStrictEqual(profile.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    assert.strictEqual(profile.syscalls?.[0]?.names.length, 346)
    for (const refused of ["unshare", "mount", "setns", "reboot", "init_module", "kexec_load", "open_by_handle_at", "bpf", "keyctl"]) {
      assert.deepStrictEqual(rulesFor(profile, refused), [], refused)
    }
    assert.deepStrictEqual(rulesFor(profile, "arch_prctl").map((r) => r.action), ["SCMP_ACT_ALLOW"])
    assert.deepStrictEqual(rulesFor(defaultProfile({ ...x64, arch: "arm64" }), "arch_prctl"), [])
    assert.deepStrictEqual(defaultProfile({ ...x64, arch: "arm64" }).architectures, ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
  })

  it("without CAP_SYS_ADMIN: clone may not make namespaces, clone3 answers ENOSYS; with it, both and mount/unshare are allowed", () => {
    const plain = defaultProfile(x64)
    assert.deepStrictEqual(rulesFor(plain, "clone"), [{
      names: ["clone"],
      action: "SCMP_ACT_ALLOW",
      args: [{ index: 0, value: 0x7e020000, op: "SCMP_CMP_MASKED_EQ" }]
    }])
    assert.deepStrictEqual(rulesFor(plain, "clone3"), [{ names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: 38 }])
    assert.strictEqual(rulesFor(defaultProfile({ ...x64, arch: "s390x" }), "clone")[0]?.args?.[0]?.index, 1, "s390's flags are the second argument")
    const admin = defaultProfile({ ...x64, capabilities: [...defaultCapabilities, "CAP_SYS_ADMIN"] })
    const adminRule = rulesFor(admin, "unshare")
    assert.strictEqual(adminRule.length, 1)
    assert.isTrue(adminRule[0]!.names.includes("mount") && adminRule[0]!.names.includes("clone3"))
    assert.isUndefined(rulesFor(admin, "clone").find((rule) => rule.args !== undefined), "no masked clone rule")
    assert.isUndefined(rulesFor(admin, "clone3").find((rule) => rule.action === "SCMP_ACT_ERRNO"))
  })

  it("allows what each capability needs, in Docker's order, and ptrace only from kernel 4.8", () => {
    const none = defaultProfile({ ...x64, capabilities: [] })
    assert.deepStrictEqual(rulesFor(none, "chroot"), [], "CAP_SYS_CHROOT is a default, not a given")
    assert.strictEqual(rulesFor(defaultProfile(x64), "chroot").length, 1)
    const many = defaultProfile({ ...x64, capabilities: ["CAP_SYS_TIME", "CAP_SYS_BOOT", "CAP_DAC_READ_SEARCH", "CAP_SYSLOG"] })
    assert.deepStrictEqual(
      many.syscalls!.slice(-6).map((rule) => rule.names.join(" ")),
      ["open_by_handle_at", "clone", "clone3", "reboot", "settimeofday stime clock_settime", "syslog"]
    )
    assert.deepStrictEqual(rulesFor(defaultProfile({ ...x64, kernel: [4, 4] }), "ptrace"), [])
    assert.strictEqual(rulesFor(defaultProfile({ ...x64, kernel: [4, 8] }), "ptrace").length, 1)
  })
})

describe("Docker's profile format", () => {
  it("takes names or name, the native archMap entry, and only the rules whose filters hold", () => {
    const json = JSON.stringify({
      defaultAction: "SCMP_ACT_ERRNO",
      defaultErrnoRet: 1,
      archMap: [
        { architecture: "SCMP_ARCH_AARCH64", subArchitectures: ["SCMP_ARCH_ARM"] },
        { architecture: "SCMP_ARCH_X86_64", subArchitectures: ["SCMP_ARCH_X86", "SCMP_ARCH_X32"] }
      ],
      syscalls: [
        { names: ["read", "write"], action: "SCMP_ACT_ALLOW", args: [] },
        { name: "mount", action: "SCMP_ACT_ALLOW", includes: { caps: ["CAP_SYS_ADMIN"] } },
        { name: "arch_prctl", action: "SCMP_ACT_ALLOW", includes: { arches: ["amd64"] } },
        { name: "cacheflush", action: "SCMP_ACT_ALLOW", includes: { arches: ["arm64"] } },
        { name: "clone", action: "SCMP_ACT_ERRNO", errnoRet: 38, excludes: { caps: ["CAP_SYS_ADMIN"] } },
        { name: "futex_waitv", action: "SCMP_ACT_ALLOW", includes: { minKernel: "5.16" } }
      ]
    })
    const converted = fromDockerProfile(json, x64)
    assert.deepStrictEqual(converted, Result.succeed({
      defaultAction: "SCMP_ACT_ERRNO",
      defaultErrnoRet: 1,
      architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
      syscalls: [
        { names: ["read", "write"], action: "SCMP_ACT_ALLOW", args: [] },
        { names: ["arch_prctl"], action: "SCMP_ACT_ALLOW" },
        { names: ["clone"], action: "SCMP_ACT_ERRNO", errnoRet: 38 },
        { names: ["futex_waitv"], action: "SCMP_ACT_ALLOW" }
      ]
    }))
    const admin = fromDockerProfile(json, { ...x64, kernel: [5, 10], capabilities: ["CAP_SYS_ADMIN"] })
    assert.deepStrictEqual(Result.map(admin, (p) => p.syscalls?.map((r) => r.names[0])), Result.succeed(["read", "mount", "arch_prctl"]))
  })

  it("refuses what dockerd refuses, and what runc could not apply, with a message", () => {
    const failure = (json: string) => Result.match(fromDockerProfile(json, x64), { onFailure: (message) => message, onSuccess: () => "accepted" })
    assert.match(failure("{not json"), /^Decoding seccomp profile failed: /)
    assert.match(failure(JSON.stringify({ defaultAction: "SCMP_ACT_MAYBE" })), /^Decoding seccomp profile failed: /)
    assert.match(failure(JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["x"], action: "SCMP_ACT_ALLOW", args: [{ index: 0, value: 1, op: "SCMP_CMP_SOMETIMES" }] }] })), /^Decoding seccomp profile failed: /)
    assert.strictEqual(
      failure(JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW", architectures: ["SCMP_ARCH_X86_64"], archMap: [{ architecture: "SCMP_ARCH_X86_64" }] })),
      "'architectures' and 'archMap' were specified in the seccomp profile, use either 'architectures' or 'archMap'"
    )
    assert.strictEqual(
      failure(JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ name: "a", names: ["b"], action: "SCMP_ACT_ALLOW" }] })),
      "'name' and 'names' were specified in the seccomp profile, use either 'name' or 'names'"
    )
  })
})
