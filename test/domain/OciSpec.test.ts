import { assert, describe, it } from "@effect/vitest"
import * as crypto from "node:crypto"
import { chainId, hostPlatform, type ImageIndex, selectManifest } from "../../src/domain/Image.ts"
import {
  applyOptions,
  defaultCapabilities,
  defaultSpec,
  withCpuShares,
  withMemoryLimit,
  withNetwork,
  withReadonlyRootfs,
  withUser
} from "../../src/domain/OciSpec.ts"

describe("OCI runtime spec", () => {
  const base = defaultSpec({ namespace: "ns", id: "web" })

  it("starts from sane Linux defaults", () => {
    assert.deepStrictEqual(base.linux.namespaces.map((n) => n.type), ["pid", "ipc", "uts", "mount", "network"])
    assert.deepStrictEqual(base.mounts.map((m) => m.destination), [
      "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"
    ])
    assert.isTrue(base.mounts.find((m) => m.destination === "/sys")?.options?.includes("ro"))
    assert.isTrue(base.mounts.find((m) => m.destination === "/sys/fs/cgroup")?.options?.includes("ro"))
    assert.deepStrictEqual(base.process.capabilities?.bounding, defaultCapabilities)
    assert.strictEqual(defaultCapabilities.length, 14)
    assert.isTrue(base.process.noNewPrivileges)
    assert.deepStrictEqual(base.process.rlimits?.map((r) => r.type), ["RLIMIT_NOFILE"])
    assert.isTrue(base.linux.maskedPaths?.includes("/proc/kcore"))
    assert.isTrue(base.linux.readonlyPaths?.includes("/proc/sys"))
    assert.strictEqual(base.linux.cgroupsPath, "/ns/web")
  })

  it("applies each option as a pure function", () => {
    const spec = applyOptions(base, [
      withNetwork("host"),
      withReadonlyRootfs(true),
      withMemoryLimit(32 * 1024 * 1024),
      withCpuShares(512),
      withUser({ uid: 1, gid: 2, additionalGids: [2] })
    ])
    assert.isFalse(spec.linux.namespaces.some((n) => n.type === "network"))
    assert.includeMembers(spec.mounts.map((m) => m.destination), ["/etc/hosts", "/etc/resolv.conf"])
    assert.isTrue(spec.root.readonly)
    assert.strictEqual(spec.linux.resources?.memory?.limit, 33554432)
    assert.strictEqual(spec.linux.resources?.cpu?.shares, 512)
    assert.deepStrictEqual(spec.process.user, { uid: 1, gid: 2, additionalGids: [2] })
    assert.strictEqual(base.root.readonly, false, "the input spec is untouched")
    assert.strictEqual(applyOptions(base, [withNetwork("none")]), base)
  })
})

describe("images", () => {
  it("computes chain IDs as the OCI image spec defines them", () => {
    const a = `sha256:${"a".repeat(64)}`
    const b = `sha256:${"b".repeat(64)}`
    const c = `sha256:${"c".repeat(64)}`
    const ab = `sha256:${crypto.createHash("sha256").update(`${a} ${b}`).digest("hex")}`
    assert.strictEqual(chainId([a]), a)
    assert.strictEqual(chainId([a, b]), ab)
    assert.strictEqual(chainId([a, b, c]), `sha256:${crypto.createHash("sha256").update(`${ab} ${c}`).digest("hex")}`)
  })

  it("selects this host's manifest from an index", () => {
    const index: ImageIndex = {
      schemaVersion: 2,
      manifests: [
        { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: "sha256:s390", size: 1, platform: { os: "linux", architecture: "s390x" } },
        { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: "sha256:here", size: 1, platform: hostPlatform() }
      ]
    }
    assert.strictEqual(selectManifest(index, hostPlatform())?.digest, "sha256:here")
    assert.isUndefined(selectManifest(index, { os: "linux", architecture: "riscv64" }))
  })
})
