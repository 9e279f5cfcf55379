import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { startContainerd } from "./ContainerdHarness.ts"
import { buildFixtureImage, FIXTURE_IMAGE, importArchive } from "./FixtureImage.ts"
import { bundlesOf, isAlive, mountsUnder } from "./Processes.ts"
import { startRegistry } from "./RegistryHarness.ts"
import { uniqueNamespace } from "./SharedContainerd.ts"

describe("test harness", () => {
  it.live("destroying a containerd stops it and every shim and container it started", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      // Closed by the test below; this finalizer only covers a failure before that.
      yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
      const instance = yield* startContainerd.pipe(Scope.provide(scope))
      const image = yield* buildFixtureImage(instance.dir, { name: FIXTURE_IMAGE })
      // runc's state root is shared by every containerd on the host: keep names unique.
      const namespace = uniqueNamespace("harness")
      yield* importArchive(instance.address, namespace, image.archive)
      for (const id of ["one", "two"]) {
        execFileSync("ctr", ["-a", instance.address, "-n", namespace, "run", "-d", FIXTURE_IMAGE, id, "sleep", "600"])
      }
      const bundles = bundlesOf(instance.state)
      assert.deepStrictEqual(bundles.map((b) => b.id).sort(), ["one", "two"])
      const pids = [instance.pid()!, ...bundles.flatMap((b) => [...b.shimPids, b.initPid!])]
      assert.strictEqual(pids.length, 5)
      assert.isTrue(pids.every(isAlive))

      yield* Scope.close(scope, Exit.void)

      assert.deepStrictEqual(pids.filter(isAlive), [])
      assert.isFalse(fs.existsSync(instance.dir))
      assert.deepStrictEqual(mountsUnder(instance.dir), [])
      assert.isTrue(bundles.every((b) => b.shimSocket !== undefined && !fs.existsSync(b.shimSocket)))
      assert.deepStrictEqual(fs.readdirSync("/sys/fs/cgroup").filter((c) => fs.existsSync(`/sys/fs/cgroup/${c}/${namespace}`)), [])
      assert.isFalse(fs.existsSync(`/run/containerd/runc/${namespace}`))
    }))

  it.live("a private registry accepts an image pushed by skopeo", () =>
    Effect.gen(function*() {
      const registry = yield* startRegistry
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ectr-fixture-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
      const image = yield* buildFixtureImage(dir, { name: FIXTURE_IMAGE })
      const reference = yield* registry.push(image.archive, "fixtures/busybox", "v1")
      assert.strictEqual(reference, `${registry.host}/fixtures/busybox:v1`)
      const tags = yield* Effect.promise(() =>
        fetch(`http://${registry.host}/v2/fixtures/busybox/tags/list`).then((r) => r.json() as Promise<unknown>)
      )
      assert.deepStrictEqual(tags, { name: "fixtures/busybox", tags: ["v1"] })
    }))
})
