import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { packMessage } from "../../src/domain/Any.ts"
import { CgroupV1TypeUrl, CgroupV2TypeUrl, decodeTaskMetrics } from "../../src/domain/TaskMetrics.ts"
import { Metrics } from "../../src/gen/io/containerd/cgroups/v1/metrics.ts"

const reasonOf = (exit: Exit.Exit<unknown, { readonly reason: { readonly _tag: string } }>) =>
  Exit.isFailure(exit) ? Exit.findErrorOption(exit).pipe((found) => (found._tag === "Some" ? found.value.reason._tag : "defect")) : "success"

describe("decodeTaskMetrics", () => {
  it.effect("refuses a cgroup v2 payload as Unimplemented, and no payload as NotFound", () =>
    Effect.gen(function*() {
      const v2 = yield* Effect.exit(decodeTaskMetrics("t", undefined, { typeUrl: CgroupV2TypeUrl, value: Buffer.alloc(0) }))
      assert.strictEqual(reasonOf(v2), "Unimplemented")
      assert.strictEqual(reasonOf(yield* Effect.exit(decodeTaskMetrics("t", undefined, undefined))), "NotFound")
      const bad = yield* Effect.exit(decodeTaskMetrics("t", undefined, { typeUrl: CgroupV1TypeUrl, value: Buffer.from([0xff]) }))
      assert.strictEqual(reasonOf(bad), "Unknown")
    }))

  it.effect("keeps uint64 counters above 2^53 exact", () =>
    Effect.gen(function*() {
      const unlimited = 9223372036854771712n
      const any = packMessage(Metrics, Metrics.fromPartial({ memory: { hierarchicalMemoryLimit: unlimited, usage: { usage: 1234n } } }))
      const sample = yield* decodeTaskMetrics("t", new Date(0), any)
      assert.strictEqual(sample.cgroup.memory?.hierarchicalMemoryLimit, unlimited)
      assert.strictEqual(sample.cgroup.memory?.usage?.usage, 1234n)
    }))
})
