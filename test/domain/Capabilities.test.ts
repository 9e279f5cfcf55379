import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { allCapabilities, defaultCapabilities, fromMask, normalize, tweak } from "../../src/domain/Capabilities.ts"

describe("capabilities as Docker combines them", () => {
  const all = allCapabilities

  it("knows the kernel's 41 by bit, and reads a /proc mask", () => {
    assert.strictEqual(allCapabilities.length, 41)
    assert.strictEqual(allCapabilities[21], "CAP_SYS_ADMIN")
    assert.strictEqual(allCapabilities[40], "CAP_CHECKPOINT_RESTORE")
    // Docker's default set, as /proc/<pid>/status shows it.
    assert.sameMembers([...fromMask("00000000a80425fb")], [...defaultCapabilities])
    // A host without CAP_SYS_RESOURCE (bit 24).
    const host = fromMask("000001fffeffffff")
    assert.strictEqual(host.length, 40)
    assert.notInclude(host, "CAP_SYS_RESOURCE")
  })

  it("normalises names as moby: upper case, CAP_ optional, ALL; an unknown one is dockerd's message", () => {
    assert.deepStrictEqual(normalize("CapAdd", ["net_admin", "CAP_sys_time", "all"]), Result.succeed(["CAP_NET_ADMIN", "CAP_SYS_TIME", "ALL"]))
    assert.deepStrictEqual(normalize("CapAdd", ["FOO"]), Result.fail(`invalid CapAdd: unknown capability: "CAP_FOO"`))
    assert.deepStrictEqual(normalize("CapDrop", ["cap_all"]), Result.fail(`invalid CapDrop: unknown capability: "CAP_ALL"`))
    assert.deepStrictEqual(normalize("CapAdd", [""]), Result.fail(`invalid CapAdd: unknown capability: "CAP_"`))
  })

  it("tweaks the default set as moby's TweakCapabilities", () => {
    assert.deepStrictEqual(tweak({}, all), Result.succeed(defaultCapabilities))
    assert.deepStrictEqual(tweak({ drop: ["ALL"] }, all), Result.succeed([]))
    assert.deepStrictEqual(tweak({ drop: ["all"], add: ["net_admin", "NET_ADMIN"] }, all), Result.succeed(["CAP_NET_ADMIN"]))
    assert.deepStrictEqual(
      tweak({ drop: ["chown", "KILL"], add: ["sys_admin"] }, all),
      Result.succeed([...defaultCapabilities.filter((c) => c !== "CAP_CHOWN" && c !== "CAP_KILL"), "CAP_SYS_ADMIN"])
    )
    // An add wins over a drop of the same name, as dockerd.
    assert.include(Result.getOrThrow(tweak({ add: ["sys_admin"], drop: ["sys_admin"] }, all)), "CAP_SYS_ADMIN")
    // ALL is what the caller can grant, minus the drops.
    const host = fromMask("000001fffeffffff")
    assert.deepStrictEqual(tweak({ add: ["ALL"], drop: ["net_raw"] }, host), Result.succeed(host.filter((c) => c !== "CAP_NET_RAW")))
    assert.deepStrictEqual(tweak({ privileged: true, drop: ["ALL"] }, host), Result.succeed(host))
    assert.deepStrictEqual(tweak({ add: ["bogus"], privileged: false }, all), Result.fail(`invalid CapAdd: unknown capability: "CAP_BOGUS"`))
  })
})
