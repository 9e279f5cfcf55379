import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { FIELDS, review } from "../../../src/daemon/engine/CreateFields.ts"
import { CreateBody, HostConfig } from "../../../src/daemon/Model.ts"

describe("CreateFields", () => {
  it("every field of the body model is in the table, and nothing else", () => {
    const modelled = [
      ...Object.keys(CreateBody.fields),
      ...Object.keys(HostConfig.fields).map((key) => `HostConfig.${key}`)
    ].sort()
    assert.deepStrictEqual(Object.keys(FIELDS).sort(), modelled)
  })

  it("a sample of fields gets the declared treatment", () => {
    const cases: Array<[CreateBody, "ok" | "warn" | "reject", string?]> = [
      [{ Image: "i", Cmd: ["sh"], Env: ["A=1"], HostConfig: { Memory: 64 * 1024 ** 2, CpuShares: 512 } }, "ok"],
      // Checked by HostConfig's parsers (no-new-privileges; the kernel's range).
      [{ Image: "i", HostConfig: { SecurityOpt: ["no-new-privileges"], OomScoreAdj: 500 } }, "ok"],
      // Published at start (engine/Ports.ts); --link stays refused.
      [{ Image: "i", ExposedPorts: { "80/tcp": {} }, HostConfig: { PortBindings: { "80/tcp": [{ HostIp: "", HostPort: "" }] }, PublishAllPorts: true } }, "ok"],
      [{ Image: "i", HostConfig: { Links: ["db:db"] } }, "reject", "Links"],
      // Checked by Security.isolationOf (known capabilities, runtimes).
      [{ Image: "i", HostConfig: { Privileged: true, CapAdd: ["NET_ADMIN"], CapDrop: ["ALL"], Runtime: "runc", MaskedPaths: [] } }, "ok"],
      // Checked by engine/Resources.ts.
      [{ Image: "i", HostConfig: { Devices: [{ PathOnHost: "/dev/fuse" }], NanoCpus: 1e9, PidsLimit: 100, Init: true } }, "ok"],
      [{ Image: "i", HostConfig: { BlkioWeight: 100 } }, "reject", "BlkioWeight"],
      [{ Image: "i", HostConfig: { Mounts: [{ Type: "volume" }] } }, "reject", "Mounts"],
      [{ Image: "i", Volumes: { "/data": {} } }, "reject", "Volumes"],
      [{ Image: "i", HostConfig: { MemorySwappiness: 10 } }, "reject", "MemorySwappiness"],
      [{ Image: "i", HostConfig: { OomKillDisable: true } }, "warn", "OomKillDisable"],
      // The container's resolv.conf and hosts files (network/ResolvConf.ts, network/EtcHosts.ts).
      [{ Image: "i", Domainname: "x", HostConfig: { Dns: ["8.8.8.8"], DnsSearch: ["a"], DnsOptions: ["b"], ExtraHosts: ["h:1.2.3.4"] } }, "ok"],
      // Run by engine/Health.ts.
      [{ Image: "i", Healthcheck: { Test: ["CMD", "true"] } }, "ok"],
      [{ Image: "i", NetworkingConfig: { EndpointsConfig: { mynet: { Aliases: ["a"] } } } }, "ok"],
      [{ Image: "i", MacAddress: "02:42:ac:11:00:02" }, "warn", "MacAddress"]
    ]
    for (const [body, expected, field] of cases) {
      const result = review(body)
      const label = JSON.stringify(body)
      if (expected === "ok") assert.deepStrictEqual(result, Result.succeed([]), label)
      if (expected === "reject") assert.isTrue(Result.isFailure(result) && result.failure.startsWith(field!), label)
      if (expected === "warn") {
        assert.isTrue(Result.isSuccess(result) && result.success.length === 1 && result.success[0]!.startsWith(field!), label)
      }
    }
  })

  it("what the docker CLI sends for a plain `docker run` (unset fields as null, zero, empty, -1) passes without warnings", () => {
    const body: CreateBody = {
      Image: "i",
      Hostname: "",
      Domainname: "",
      AttachStdout: true,
      AttachStderr: true,
      ExposedPorts: {},
      Volumes: {},
      OnBuild: null,
      Labels: {},
      MacAddress: "",
      NetworkingConfig: { EndpointsConfig: { default: { IPAMConfig: null, Links: null, Aliases: null, MacAddress: "", DriverOpts: null } } },
      HostConfig: {
        NetworkMode: "default",
        PortBindings: {},
        RestartPolicy: { Name: "no", MaximumRetryCount: 0 },
        ConsoleSize: [0, 0],
        CapAdd: null,
        Dns: [],
        CgroupnsMode: "",
        MemorySwappiness: -1,
        OomKillDisable: false,
        PidsLimit: null,
        ShmSize: 0,
        Isolation: "",
        LogConfig: { Type: "", Config: {} }
      }
    }
    assert.deepStrictEqual(review(body), Result.succeed([]))
  })

  it("the first refused field wins; warnings gather", () => {
    assert.deepStrictEqual(
      review({ Image: "i", MacAddress: "02:42:ac:11:00:02", HostConfig: { OomKillDisable: true } }).pipe(Result.map((w) => w.length)),
      Result.succeed(2)
    )
    assert.isTrue(Result.isFailure(review({ Image: "i", HostConfig: { OomKillDisable: true, BlkioWeight: 100 } })))
  })
})
