/**
 * What `/version` and `/info` are made of, from fixed host facts: the fields the
 * docker CLI reads must be there whatever the host has.
 */
import { assert, describe, it } from "@effect/vitest"
import { type HostFacts, infoJson, parseRuncVersion, versionJson } from "../../src/daemon/System.ts"

const facts: HostFacts = {
  serverVersion: "0.1.0",
  buildTime: "2024-01-01T00:00:00.000Z",
  kernelVersion: "6.1.0",
  operatingSystem: "Debian GNU/Linux 12 (bookworm)",
  osVersion: "12",
  machine: "x86_64",
  arch: "amd64",
  ncpu: 4,
  memTotal: 8 * 1024 ** 3,
  hostname: "host",
  cgroupVersion: "2",
  runc: { version: "", commit: "" },
  engineId: "id"
}

describe("System", () => {
  it("parseRuncVersion reads runc's version and commit lines", () => {
    const output = "runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev\ngo: go1.19.8\n"
    assert.deepStrictEqual(parseRuncVersion(output), { version: "1.1.5+ds1", commit: "1.1.5+ds1-1+deb12u1" })
    assert.deepStrictEqual(parseRuncVersion(""), { version: "", commit: "" })
  })

  it("versionJson leaves out the components that did not answer", () => {
    const version = versionJson(facts, undefined)
    assert.deepStrictEqual(version.Components.map((c) => c.Name), ["Engine"])
    assert.strictEqual(version.Components[0]!.Details["ApiVersion"], "1.47")
    assert.strictEqual(version.Arch, "amd64")
  })

  it("infoJson lists the insecure registries as dockerd's IndexConfigs", () => {
    const info = infoJson(facts, {
      dataRoot: "/d",
      containerdAddress: "/c.sock",
      namespace: "ns",
      insecureRegistries: ["registry.local:5000"]
    }, {
      containers: { total: 3, running: 1, paused: 1, stopped: 1 },
      images: 2,
      containerd: undefined,
      now: "2024-01-01T00:00:00Z"
    })
    assert.deepStrictEqual(info["RegistryConfig"], {
      AllowNondistributableArtifactsCIDRs: null,
      AllowNondistributableArtifactsHostnames: null,
      InsecureRegistryCIDRs: ["::1/128", "127.0.0.0/8"],
      IndexConfigs: {
        "docker.io": { Name: "docker.io", Mirrors: [], Secure: true, Official: true },
        "registry.local:5000": { Name: "registry.local:5000", Mirrors: [], Secure: false, Official: false }
      },
      Mirrors: null
    })
    assert.strictEqual(info.ContainersRunning, 1)
    assert.strictEqual(info["Architecture"], "x86_64")
    assert.deepStrictEqual(info["Containerd"], { Address: "/c.sock", Namespaces: { Containers: "ns", Plugins: "" } })
  })
})
