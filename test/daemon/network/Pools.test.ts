import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import {
  allocate,
  DEFAULT_POOLS,
  defaultBridgeName,
  formatSubnet,
  overlaps,
  parseAddressPool,
  parseBip,
  parseSubnet,
  routeSubnets
} from "../../../src/daemon/network/Pools.ts"

const subnet = (text: string) => Result.getOrThrow(parseSubnet(text))

describe("Pools", () => {
  it("subnets parse as Go's ParseCIDR (masked), with dockerd's words for a bad one", () => {
    assert.strictEqual(formatSubnet(subnet("10.1.2.3/24")), "10.1.2.0/24")
    assert.deepStrictEqual(parseSubnet("10.254.300.0/24"), Result.fail("Invalid subnet 10.254.300.0/24 : invalid CIDR address: 10.254.300.0/24"))
    for (const bad of ["10.0.0.0", "10.0.0.0/33", "10.0.0/8", "01.0.0.0/8", "a.b.c.d/8"]) assert.isTrue(Result.isFailure(parseSubnet(bad)), bad)
    assert.isTrue(overlaps(subnet("10.0.0.0/8"), subnet("10.9.0.0/16")))
    assert.isFalse(overlaps(subnet("10.0.0.0/25"), subnet("10.0.0.128/25")))
  })

  it("Docker's default pools: 172.17/16 first, then the next free one, skipping networks and host routes; 192.168 in /20s", () => {
    assert.strictEqual(formatSubnet(allocate(DEFAULT_POOLS, [])!), "172.17.0.0/16")
    assert.strictEqual(formatSubnet(allocate(DEFAULT_POOLS, [subnet("172.17.0.0/16"), subnet("172.18.5.0/24")])!), "172.19.0.0/16")
    const all172 = Array.from({ length: 15 }, (_, i) => subnet(`172.${17 + i}.0.0/16`))
    assert.strictEqual(formatSubnet(allocate(DEFAULT_POOLS, [...all172, subnet("192.168.0.0/20")])!), "192.168.16.0/20")
    assert.isUndefined(allocate([{ base: subnet("10.0.0.0/30"), size: 30 }], [subnet("10.0.0.0/8")]))
  })

  it("--default-address-pool and --bip as dockerd reads them", () => {
    assert.deepStrictEqual(Result.map(parseAddressPool("base=10.10.0.0/16,size=24"), (p) => [formatSubnet(p.base), p.size]), Result.succeed(["10.10.0.0/16", 24]))
    assert.deepStrictEqual(Result.map(parseAddressPool("size=26,base=198.18.0.0/22"), (p) => p.size), Result.succeed(26))
    assert.isTrue(Result.isFailure(parseAddressPool("base=10.10.0.0/16,size=8")))
    assert.isTrue(Result.isFailure(parseAddressPool("base=10.10.0.0/16,size=24,color=red")))
    const bip = Result.getOrThrow(parseBip("10.9.0.1/24"))
    assert.strictEqual(formatSubnet(bip.subnet), "10.9.0.0/24")
    assert.isTrue(Result.isFailure(parseBip("10.9.0.0/24")), "the network address is no bridge address")
  })

  it("host routes from ip -j route, the default route left out; bridge names within IFNAMSIZ and per data root", () => {
    const routes = routeSubnets(JSON.stringify([{ dst: "default", gateway: "192.0.2.1" }, { dst: "192.0.2.0/24" }, { dst: "10.1.1.1" }]))
    assert.deepStrictEqual(routes.map(formatSubnet), ["192.0.2.0/24", "10.1.1.1/32"])
    assert.deepStrictEqual(routeSubnets("not json"), [])
    assert.isTrue(defaultBridgeName("/var/lib/a").length <= 15)
    assert.notStrictEqual(defaultBridgeName("/var/lib/a"), defaultBridgeName("/var/lib/b"))
  })
})
