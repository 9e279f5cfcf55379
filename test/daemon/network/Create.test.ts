import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { checkCreate, type Existing } from "../../../src/daemon/network/Create.ts"
import { parseSubnet } from "../../../src/daemon/network/Pools.ts"
import { networkFilter } from "../../../src/daemon/Filters.ts"

const existing: Existing = {
  names: new Set(["bridge", "host", "none", "web"]),
  subnets: [Result.getOrThrow(parseSubnet("10.1.0.0/16"))],
  bridges: new Set(["ec-taken"])
}
const refusal = (body: Parameters<typeof checkCreate>[0]) =>
  Result.match(checkCreate(body, existing), { onSuccess: () => undefined, onFailure: (e) => [e.status, e.message] })

describe("network create checks", () => {
  it("dockerd's statuses and words for what it refuses", () => {
    assert.deepStrictEqual(refusal({ Name: "web" }), [409, "network with name web already exists"])
    assert.deepStrictEqual(refusal({ Name: "host" }), [403, "operation is not permitted on predefined host network "])
    assert.deepStrictEqual(refusal({ Name: "n", IPAM: { Config: [{ Subnet: "10.1.2.0/24" }] } }), [403, "Pool overlaps with other one on this address space"])
    assert.deepStrictEqual(refusal({ Name: "n", IPAM: { Config: [{ Subnet: "10.2.0.0/24" }, { Subnet: "10.3.0.0/24" }] } }), [403, "bridge driver doesn't support multiple subnets"])
    assert.deepStrictEqual(refusal({ Name: "n", Driver: "weave" }), [404, `plugin "weave" not found`])
    assert.deepStrictEqual(refusal({ Name: "n", IPAM: { Config: [{ Subnet: "10.2.0.0/24", Gateway: "10.3.0.1" }] } }), [400, "failed to allocate gateway (10.3.0.1): Requested address is out of range"])
    assert.strictEqual(refusal({ Name: "n", Driver: "overlay" })?.[0], 501)
    assert.strictEqual(refusal({ Name: "n", EnableIPv6: true })?.[0], 400)
    assert.strictEqual(refusal({ Name: "n", Options: { "com.docker.network.bridge.enable_icc": "false" } })?.[0], 400)
    assert.strictEqual(refusal({ Name: "n", Options: { "com.docker.network.bridge.name": "ec-taken" } })?.[0], 400)
  })

  it("a good create: the pool, gateway and range as given; unknown options said in the Warning", () => {
    const plan = Result.getOrThrow(checkCreate({
      Name: "n",
      Internal: true,
      IPAM: { Config: [{ Subnet: "10.2.0.0/24", IPRange: "10.2.0.128/25" }] },
      Options: { "com.docker.network.driver.mtu": "1400", "x.y": "z" },
      Labels: { a: "b" }
    }, existing))
    assert.deepStrictEqual([plan.internal, plan.mtu, plan.labels, plan.gateway], [true, 1400, { a: "b" }, (10 << 24 | 2 << 16 | 1) >>> 0])
    assert.include(plan.warning, "x.y")
  })

  it("network list filters as dockerd's", () => {
    const facts = { name: "web", id: "abc123", driver: "bridge", labels: { tier: "front" }, predefined: false, inUse: false }
    const keeps = (filters: Record<string, ReadonlyArray<string>>) => Result.map(networkFilter(filters), (f) => f(facts))
    assert.deepStrictEqual(keeps({ name: ["we"] }), Result.succeed(true))
    assert.deepStrictEqual(keeps({ driver: ["host"] }), Result.succeed(false))
    assert.deepStrictEqual(keeps({ label: ["tier=front"], type: ["custom"], dangling: ["true"] }), Result.succeed(true))
    assert.deepStrictEqual(keeps({ type: ["builtin"] }), Result.succeed(false))
    assert.isTrue(Result.isFailure(keeps({ type: ["xx"] })))
    assert.isTrue(Result.isFailure(keeps({ dangling: ["maybe"] })))
  })
})
