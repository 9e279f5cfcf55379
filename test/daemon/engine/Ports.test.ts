import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { mappingsOf, parsePorts, portsJson, summaryPorts } from "../../../src/daemon/engine/Ports.ts"

const parse = (request: Partial<Parameters<typeof parsePorts>[0]>) =>
  parsePorts({ exposedPorts: undefined, imageExposedPorts: undefined, portBindings: undefined, publishAll: false, ...request })

describe("Ports", () => {
  it("exposed ports are the request's, the image's and every binding's; -P publishes the unbound ones on random ports", () => {
    const ports = Result.getOrThrow(parse({
      exposedPorts: { "81/tcp": {} },
      imageExposedPorts: { "53/udp": {} },
      portBindings: { "80/tcp": [{ HostIp: "", HostPort: "8080" }, { HostIp: "127.0.0.1", HostPort: "" }] },
      publishAll: true
    }))
    assert.deepStrictEqual(ports.exposed, [{ port: 53, protocol: "udp" }, { port: 80, protocol: "tcp" }, { port: 81, protocol: "tcp" }])
    assert.deepStrictEqual(ports.bindings, [
      { port: 53, protocol: "udp", hostIp: "", hostPorts: [0, 0] },
      { port: 80, protocol: "tcp", hostIp: "", hostPorts: [8080, 8080] },
      { port: 80, protocol: "tcp", hostIp: "127.0.0.1", hostPorts: [0, 0] },
      { port: 81, protocol: "tcp", hostIp: "", hostPorts: [0, 0] }
    ])
  })

  it("bad ports are 400s with dockerd's words; sctp and IPv6 host addresses are refused", () => {
    assert.deepStrictEqual(parse({ portBindings: { "80/tcp": [{ HostPort: "abc" }] } }), Result.fail(`invalid port specification: "abc"`))
    assert.isTrue(Result.isFailure(parse({ portBindings: { "80/tcp": [{ HostPort: "9000-8000" }] } })))
    assert.isTrue(Result.isFailure(parse({ exposedPorts: { "70000/tcp": {} } })))
    assert.isTrue(Result.isFailure(parse({ exposedPorts: { "80/sctp": {} } })))
    assert.isTrue(Result.isFailure(parse({ portBindings: { "80/tcp": [{ HostIp: "::", HostPort: "1" }] } })))
  })

  it("a host range takes its first port no other container publishes; views show the chosen ones", () => {
    const { bindings, exposed } = Result.getOrThrow(parse({ exposedPorts: { "90/tcp": {} }, portBindings: { "80/tcp": [{ HostPort: "8000-8002" }] } }))
    const mappings = mappingsOf(bindings, new Set(["tcp/8000"]))
    assert.deepStrictEqual(mappings, [{ hostPort: 8001, containerPort: 80, protocol: "tcp" }])
    assert.deepStrictEqual(portsJson(exposed, mappings), { "80/tcp": [{ HostIp: "0.0.0.0", HostPort: "8001" }], "90/tcp": null })
    assert.deepStrictEqual(summaryPorts(exposed, mappings), [
      { IP: "0.0.0.0", PrivatePort: 80, PublicPort: 8001, Type: "tcp" },
      { PrivatePort: 90, Type: "tcp" }
    ])
  })
})
