/**
 * Docker's image view over resolved records: grouping by config digest, what
 * a name finds, the filters and sizes of `GET /images/json`, and inspect —
 * all from the library's resolved images, with no content read.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Result } from "effect"
import { inspectJson } from "../../../src/daemon/images/Inspect.ts"
import { type Entry, find, groupEntries, imageSize, summaryOf } from "../../../src/daemon/images/Listing.ts"
import { parseReferenceResult } from "../../../src/domain/Reference.ts"
import type { ResolvedImage } from "../../../src/services/Images.ts"

const CONFIG_A = `sha256:${"a".repeat(64)}`
const CONFIG_B = `sha256:${"b".repeat(64)}`
const MANIFEST = `sha256:${"c".repeat(64)}`

const entry = (name: string, configDigest: string, labels: Record<string, string> = {}): Entry => {
  const resolved: ResolvedImage = {
    name,
    target: { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: MANIFEST, size: 500 },
    manifestDigest: MANIFEST,
    configDigest,
    configSize: 100,
    config: {
      created: "2024-01-02T03:04:05Z",
      architecture: "amd64",
      os: "linux",
      config: { Labels: labels, Cmd: ["sh"] },
      rootfs: { type: "layers", diff_ids: ["sha256:d1"] }
    },
    layers: [
      { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: "sha256:l1", size: 1000 },
      { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: "sha256:l2", size: 2000 }
    ],
    chainId: "sha256:d1"
  }
  return {
    record: { name, target: resolved.target, labels: {}, createdAt: undefined, updatedAt: undefined },
    reference: Result.getOrUndefined(parseReferenceResult(name)),
    resolved
  }
}

const all: ReadonlyArray<Entry> = [
  entry("docker.io/library/busybox:latest", CONFIG_A, { app: "web" }),
  entry("docker.io/library/busybox:1.36", CONFIG_A, { app: "web" }),
  entry("localhost:5000/team/app:v1", CONFIG_B)
]

describe("Listing", () => {
  it("groups records by config digest", () => {
    const groups = groupEntries(all)
    assert.deepStrictEqual(groups.map((g) => [g.id, g.entries.length]), [[CONFIG_A, 2], [CONFIG_B, 1]])
  })

  it("sizes an image as its config and compressed layers", () => {
    assert.strictEqual(imageSize(all[0]!.resolved), 3100)
  })

  // filters → the RepoTags of the images kept (undefined: dropped), per group
  const filterCases: ReadonlyArray<readonly [string, Record<string, ReadonlyArray<string>> | undefined, ReadonlyArray<ReadonlyArray<string> | undefined>]> = [
    ["none", undefined, [["busybox:latest", "busybox:1.36"], ["localhost:5000/team/app:v1"]]],
    ["label key", { label: ["app"] }, [["busybox:latest", "busybox:1.36"], undefined]],
    ["label value", { label: ["app=db"] }, [undefined, undefined]],
    ["reference glob", { reference: ["busybox:1.*"] }, [["busybox:1.36"], undefined]],
    ["dangling=false", { dangling: ["false"] }, [["busybox:latest", "busybox:1.36"], ["localhost:5000/team/app:v1"]]]
  ]
  for (const [name, filters, expected] of filterCases) {
    it(`summaries with filters: ${name}`, () => {
      const shown = groupEntries(all).map((group) =>
        Option.getOrUndefined(Result.getOrThrow(summaryOf(group, filters)))?.RepoTags
      )
      assert.deepStrictEqual(shown, expected)
    })
  }

  it("summaries carry the config's creation time, labels and the size", () => {
    const summary = Option.getOrThrow(Result.getOrThrow(summaryOf(groupEntries(all)[0]!, undefined)))
    assert.strictEqual(summary.Created, Date.parse("2024-01-02T03:04:05Z") / 1000)
    assert.deepStrictEqual(summary.Labels, { app: "web" })
    assert.strictEqual(summary.Size, 3100)
    assert.deepStrictEqual(summary.RepoDigests, [`busybox@${MANIFEST}`])
  })

  it("rejects a bad dangling filter", () => {
    assert.isTrue(Result.isFailure(summaryOf(groupEntries(all)[0]!, { dangling: ["maybe"] })))
  })

  // name → the image ID found, or the status of the failure
  const findCases: ReadonlyArray<readonly [string, string | number]> = [
    ["busybox", CONFIG_A],
    ["busybox:1.36", CONFIG_A],
    ["localhost:5000/team/app:v1", CONFIG_B],
    [CONFIG_B, CONFIG_B],
    ["b".repeat(64), CONFIG_B],
    ["bbbb", CONFIG_B],
    ["nothing:here", 404],
    [`sha256:${"e".repeat(64)}`, 404]
  ]
  for (const [name, expected] of findCases) {
    it.effect(`find ${name}`, () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(find(all, name))
        if (typeof expected === "string") assert.strictEqual(Exit.isSuccess(exit) ? exit.value.id : undefined, expected)
        else assert.strictEqual(Exit.isFailure(exit) ? Option.getOrThrow(Exit.findErrorOption(exit)).status : undefined, expected)
      }))
  }

  it("inspects an image from what the library resolved", () => {
    const inspected = inspectJson(groupEntries(all)[0]!)
    assert.strictEqual(inspected.Id, CONFIG_A)
    assert.strictEqual(inspected.Created, "2024-01-02T03:04:05Z")
    assert.strictEqual(inspected.Size, 3100)
    assert.deepStrictEqual(inspected.RootFS, { Type: "layers", Layers: ["sha256:d1"] })
    assert.deepStrictEqual(inspected.Config["Cmd"], ["sh"])
    assert.strictEqual(inspected.Config["ExposedPorts"], null)
    // docker-compose 1.29 reads it on a recreate.
    assert.strictEqual(inspected.ContainerConfig["Volumes"], null)
  })
})
