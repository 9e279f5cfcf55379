import { assert, describe, it } from "@effect/vitest"
import { stringifyJson } from "../../../src/daemon/api/Json.ts"
import { parseNetDev, parseProcStat } from "../../../src/daemon/engine/Stats.ts"

describe("Stats", () => {
  it("the host's CPU time: the first seven fields of the cpu line, ticks as ns; the cpuN lines counted", () => {
    const text = [
      "cpu  10 1 20 300 4 5 6 7 0 0",
      "cpu0 5 1 10 150 2 2 3 3 0 0",
      "cpu1 5 0 10 150 2 3 3 4 0 0",
      "intr 12345",
      "ctxt 678"
    ].join("\n")
    // 10+1+20+300+4+5+6 = 346 ticks of 10 ms (steal and guests are not counted, as moby).
    assert.deepStrictEqual(parseProcStat(text), { systemCpuUsage: 3_460_000_000n, onlineCpus: 2 })
    assert.isUndefined(parseProcStat("intr 1\n"))
    assert.isUndefined(parseProcStat("cpu  1 2 x 4 5 6 7\n"))
  })

  it("the interfaces of net/dev but lo, rx and tx counters; none when only lo is there", () => {
    const header = [
      "Inter-|   Receive                                                |  Transmit",
      " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed"
    ]
    const lo = "    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0"
    const eth0 = "  eth0:    1234      12    1    2    0     0          0         0      567       6    3    4    0     0       0          0"
    assert.deepStrictEqual(parseNetDev([...header, lo, eth0, ""].join("\n")), {
      eth0: {
        rx_bytes: 1234n,
        rx_packets: 12n,
        rx_errors: 1n,
        rx_dropped: 2n,
        tx_bytes: 567n,
        tx_packets: 6n,
        tx_errors: 3n,
        tx_dropped: 4n
      }
    })
    assert.isUndefined(parseNetDev([...header, lo].join("\n")))
  })

  it("bigints are written as their digits, exactly; undefined fields left out, in their order", () => {
    assert.strictEqual(
      stringifyJson({ b: 9223372036854771712n, skipped: undefined, a: [1n, "x", null, undefined], nested: { ok: true } }),
      `{"b":9223372036854771712,"a":[1,"x",null,null],"nested":{"ok":true}}`
    )
  })
})
