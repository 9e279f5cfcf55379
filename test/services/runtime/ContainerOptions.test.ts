import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import * as os from "node:os"
import type { MergedProcess } from "../../../src/domain/ContainerConfig.ts"
import {
  containerSpec,
  type CreateContainerOptions,
  makeUserFiles,
  sameUser,
  validateOptions
} from "../../../src/services/runtime/ContainerOptions.ts"

const base: CreateContainerOptions = { id: "web", image: "busybox" }

describe("validateOptions", () => {
  // options → the start of the message it is rejected with (undefined: accepted)
  const cases: ReadonlyArray<readonly [string, Partial<CreateContainerOptions>, string | undefined]> = [
    ["plain", {}, undefined],
    ["bad id", { id: "-web" }, "invalid container id"],
    ["no image", { image: "" }, "an image is required"],
    ["relative mount", { mounts: [{ type: "tmpfs", destination: "tmp" }] }, "mount destination"],
    ["missing bind source", { mounts: [{ type: "bind", source: "/no/such/dir", destination: "/x" }] }, "bind source"],
    ["bind of a real dir", { mounts: [{ type: "bind", source: os.tmpdir(), destination: "/x" }] }, undefined],
    ["tmpfs size 0", { mounts: [{ type: "tmpfs", destination: "/t", size: 0 }] }, "tmpfs size 0"],
    ["tmpfs over the root", { mounts: [{ type: "tmpfs", destination: "/" }] }, "is the container's root"],
    ["bind over the root", { mounts: [{ type: "bind", source: os.tmpdir(), destination: "//." }] }, "is the container's root"],
    ["tmpfs uid -1", { mounts: [{ type: "tmpfs", destination: "/t", uid: -1 }] }, "tmpfs uid -1"],
    ["tmpfs gid 2^32 - 1", { mounts: [{ type: "tmpfs", destination: "/t", gid: 2 ** 32 - 1 }] }, "tmpfs gid 4294967295"],
    ["tmpfs owner", { mounts: [{ type: "tmpfs", destination: "/t", uid: 1000, gid: 0 }] }, undefined],
    ["memory below 6 MiB", { resources: { memory: 1024 } }, "memory limit 1024 is invalid"],
    ["memory of 6 MiB", { resources: { memory: 6 * 1024 * 1024 } }, undefined],
    ["one CPU share", { resources: { cpuShares: 1 } }, "CPU shares 1 is invalid"],
    ["bad hostname", { hostname: "-x" }, "invalid hostname"],
    ["relative runtime binary", { runtimeBinary: "runc" }, "runtime binary \"runc\" is not an absolute path"],
    ["absolute runtime binary", { runtimeBinary: "/usr/sbin/runc" }, undefined]
  ]
  for (const [name, options, rejected] of cases) {
    it.effect(name, () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(validateOptions("test", { ...base, ...options }))
        if (rejected === undefined) return assert.isTrue(Exit.isSuccess(exit))
        assert.isTrue(Exit.isFailure(exit))
        const message = Exit.isFailure(exit) ? String(exit.cause) : ""
        assert.include(message, rejected)
      }))
  }
})

describe("containerSpec", () => {
  const merged: MergedProcess = { args: ["sh"], env: ["A=1"], workingDir: "/w", user: "" }
  const user = { uid: 1, gid: 2, additionalGids: [2] }

  it("applies the merged process, the user and the options", () => {
    const spec = containerSpec("ns", {
      ...base,
      tty: true,
      readonlyRootfs: true,
      mounts: [{ type: "tmpfs", destination: "/t", size: 1024, mode: 0o1777 }],
      resources: { memory: 8 * 1024 * 1024, cpuShares: 512 }
    }, merged, user)
    assert.deepStrictEqual(spec.process.args, ["sh"])
    assert.strictEqual(spec.process.cwd, "/w")
    assert.deepStrictEqual(spec.process.user, user)
    assert.isTrue(spec.process.terminal)
    assert.strictEqual(spec.hostname, "web")
    assert.isTrue(spec.root.readonly)
    assert.deepStrictEqual(spec.mounts.find((m) => m.destination === "/t")?.options, ["nosuid", "nodev", "noexec", "size=1024", "mode=1777"])
    assert.isTrue(spec.process.env?.includes("A=1"))
    assert.isTrue(spec.process.env?.includes("HOSTNAME=web"))
  })

  it("mounts a tmpfs with its owner, and its flags over Docker's defaults (each replaces its opposite)", () => {
    const spec = containerSpec("ns", {
      ...base,
      mounts: [{ type: "tmpfs", destination: "/t", mode: 0o700, uid: 1000, gid: 1001, flags: ["ro", "exec", "suid", "noexec"] }]
    }, merged, user)
    assert.deepStrictEqual(spec.mounts.find((m) => m.destination === "/t")?.options, ["nodev", "ro", "suid", "noexec", "mode=700", "uid=1000", "gid=1001"])
  })

  it("binds read-only when asked, and defaults the hostname to the id's first 63 characters", () => {
    const id = "a".repeat(70)
    const spec = containerSpec("ns", {
      ...base,
      id,
      mounts: [{ type: "bind", source: "/src", destination: "/dst", readonly: true }]
    }, merged, user)
    assert.deepStrictEqual(spec.mounts.find((m) => m.destination === "/dst")?.options, ["rbind", "ro"])
    assert.strictEqual(spec.hostname, id.slice(0, 63))
  })

  it("on networks, joins the pinned netns it is given (one network namespace, nothing of the host's mounted)", () => {
    const spec = containerSpec("ns", { ...base, network: { networks: [{ network: "n1" }] } }, merged, user, "/run/x/netns/ns-web")
    assert.deepStrictEqual(spec.linux.namespaces.filter((n) => n.type === "network"), [{ type: "network", path: "/run/x/netns/ns-web" }])
    assert.isUndefined(spec.mounts.find((m) => m.destination === "/etc/resolv.conf"))
  })
})

describe("user files", () => {
  it("are kept per namespace and config digest", () => {
    const files = makeUserFiles()
    files.set("ns", "sha256:a", { passwd: "root:x:0:0::/:/bin/sh", group: undefined })
    assert.strictEqual(files.get("ns", "sha256:a")?.passwd, "root:x:0:0::/:/bin/sh")
    assert.isUndefined(files.get("other", "sha256:a"))
    assert.isUndefined(files.get("ns", undefined))
  })

  it("sameUser compares resolved users by value", () => {
    assert.isTrue(sameUser({ uid: 0, gid: 0, additionalGids: [0] }, { uid: 0, gid: 0, additionalGids: [0] }))
    assert.isFalse(sameUser({ uid: 0, gid: 0, additionalGids: [0] }, { uid: 1, gid: 0, additionalGids: [0] }))
  })
})
