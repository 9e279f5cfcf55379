import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { defaultCapabilities, fromMask } from "../../../src/domain/Capabilities.ts"
import { applyOptions, defaultSpec, maskedPaths } from "../../../src/domain/OciSpec.ts"
import { isolationOf, isolationSpec, type Platform, runtimeOf } from "../../../src/daemon/engine/Security.ts"

const platform: Platform = {
  arch: "x64",
  kernel: [6, 1],
  capabilities: fromMask("000001fffeffffff"),
  runtimes: new Map([["logging", "/opt/bin/logging-runc"]])
}

describe("a create's isolation", () => {
  it("runtimeOf: runc (by its names) or a configured runtime; anything else is dockerd's message", () => {
    for (const name of [undefined, null, "", "runc", "io.containerd.runc.v2"]) assert.deepStrictEqual(runtimeOf(name, platform), Result.succeed(undefined))
    assert.deepStrictEqual(runtimeOf("logging", platform), Result.succeed("/opt/bin/logging-runc"))
    assert.deepStrictEqual(runtimeOf("/bin/sh", platform), Result.fail("Unknown runtime specified /bin/sh"))
    assert.deepStrictEqual(runtimeOf("io.containerd.runsc.v1", platform), Result.fail("Unknown runtime specified io.containerd.runsc.v1"))
  })

  it("by default: Docker's capabilities, masked paths and seccomp profile", () => {
    const isolation = Result.getOrThrow(isolationOf({}, platform))
    assert.deepStrictEqual(isolation.capabilities, defaultCapabilities)
    assert.deepStrictEqual(isolation.seccomp, { _tag: "Default" })
    const spec = applyOptions(defaultSpec({ namespace: "n", id: "c" }), isolationSpec(isolation, platform, []))
    assert.strictEqual(spec.linux.seccomp?.defaultAction, "SCMP_ACT_ERRNO")
    assert.deepStrictEqual(spec.linux.maskedPaths, maskedPaths)
    assert.isFalse(spec.process.noNewPrivileges)
  })

  it("privileged: every capability the daemon holds, no seccomp (even with a profile), nothing masked; the profile is still checked", () => {
    const isolation = Result.getOrThrow(isolationOf({ Privileged: true, SecurityOpt: ["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"] }, platform))
    assert.deepStrictEqual(isolation.capabilities, platform.capabilities)
    assert.deepStrictEqual(isolation.seccomp, { _tag: "None" })
    const spec = applyOptions(defaultSpec({ namespace: "n", id: "c" }), isolationSpec(isolation, platform, []))
    assert.isUndefined(spec.linux.seccomp)
    assert.deepStrictEqual(spec.linux.maskedPaths, [])
    assert.isTrue(Result.isFailure(isolationOf({ Privileged: true, SecurityOpt: ["seccomp={"] }, platform)))
  })

  it("a profile of one's own is converted for the container's capabilities; empty MaskedPaths unmask", () => {
    const json = JSON.stringify({
      defaultAction: "SCMP_ACT_ALLOW",
      syscalls: [{ names: ["mount"], action: "SCMP_ACT_ERRNO", excludes: { caps: ["CAP_SYS_ADMIN"] } }]
    })
    const without = Result.getOrThrow(isolationOf({ SecurityOpt: [`seccomp=${json}`], MaskedPaths: [], ReadonlyPaths: [] }, platform))
    assert.deepStrictEqual(without.seccomp, {
      _tag: "Profile",
      profile: { defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["mount"], action: "SCMP_ACT_ERRNO" }] }
    })
    assert.deepStrictEqual(without.systemPaths, { masked: [], readonly: [] })
    const withAdmin = Result.getOrThrow(isolationOf({ SecurityOpt: [`seccomp=${json}`], CapAdd: ["SYS_ADMIN"] }, platform))
    assert.deepStrictEqual(withAdmin.seccomp, { _tag: "Profile", profile: { defaultAction: "SCMP_ACT_ALLOW", syscalls: [] } })
  })

  it("refuses bad input with the field's message, before anything is made", () => {
    const failure = (host: Parameters<typeof isolationOf>[0]) => Result.match(isolationOf(host, platform), { onFailure: (m) => m, onSuccess: () => "accepted" })
    assert.strictEqual(failure({ CapAdd: ["FOO"] }), `invalid CapAdd: unknown capability: "CAP_FOO"`)
    assert.strictEqual(failure({ Runtime: "/bin/sh" }), "Unknown runtime specified /bin/sh")
    assert.match(failure({ SecurityOpt: ["seccomp=[]"] }), /^Decoding seccomp profile failed/)
    assert.match(failure({ SecurityOpt: ["apparmor=docker-default"] }), /not supported/)
  })
})
