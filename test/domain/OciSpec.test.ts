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
  withCapabilities,
  withDefaultSeccomp,
  withPrivileged,
  withSeccomp,
  withSystemPaths,
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

describe("OCI spec security options", () => {
  const base = defaultSpec({ namespace: "ns", id: "web" })

  it("seccomp: none by default; withDefaultSeccomp is Docker's for the capabilities the spec has when it runs", () => {
    assert.isUndefined(base.linux.seccomp)
    const x64 = { arch: "x64", kernel: [6, 1] as const }
    const plain = applyOptions(base, [withDefaultSeccomp(x64)])
    const allows = (spec: typeof base, name: string) =>
      (spec.linux.seccomp?.syscalls ?? []).some((rule) => rule.action === "SCMP_ACT_ALLOW" && rule.args === undefined && rule.names.includes(name))
    assert.isFalse(allows(plain, "unshare"))
    assert.isTrue(allows(plain, "chroot"))
    const admin = applyOptions(base, [withCapabilities(["CAP_SYS_ADMIN"]), withDefaultSeccomp(x64)])
    assert.deepStrictEqual(admin.process.capabilities, { bounding: ["CAP_SYS_ADMIN"], effective: ["CAP_SYS_ADMIN"], permitted: ["CAP_SYS_ADMIN"] })
    assert.isTrue(allows(admin, "unshare"))
    assert.isFalse(allows(admin, "chroot"))
    assert.isUndefined(applyOptions(admin, [withSeccomp(undefined)]).linux.seccomp)
    assert.deepStrictEqual(applyOptions(base, [withSeccomp({ defaultAction: "SCMP_ACT_ALLOW" })]).linux.seccomp, { defaultAction: "SCMP_ACT_ALLOW" })
  })

  it("withPrivileged: the given devices, every device allowed, nothing masked, /sys writable unless the root is read-only", () => {
    const device = { path: "/dev/loop0", type: "b" as const, major: 7, minor: 0, fileMode: 0o660, uid: 0, gid: 6 }
    const spec = applyOptions(base, [withPrivileged([device])])
    assert.deepStrictEqual(spec.linux.devices, [device])
    assert.deepStrictEqual(spec.linux.resources?.devices, [{ allow: true, access: "rwm" }])
    assert.deepStrictEqual([spec.linux.maskedPaths, spec.linux.readonlyPaths], [[], []])
    const sys = (s: typeof base, path: string) => s.mounts.find((m) => m.destination === path)?.options?.includes("ro")
    assert.isFalse(sys(spec, "/sys"))
    assert.isFalse(sys(spec, "/sys/fs/cgroup"))
    const readonlyRoot = applyOptions(base, [withReadonlyRootfs(true), withPrivileged([])])
    assert.isTrue(sys(readonlyRoot, "/sys"))
    assert.isFalse(sys(readonlyRoot, "/sys/fs/cgroup"))
    assert.deepStrictEqual(applyOptions(base, [withSystemPaths({ masked: ["/proc/x"], readonly: [] })]).linux.maskedPaths, ["/proc/x"])
  })
})
