/**
 * vitest global setup: one private containerd for the whole run, shared by test
 * files through `inject("containerd")` (each file works in its own namespaces),
 * and the busybox fixture image built once. Teardown stops the daemon and every
 * shim it started.
 *
 * It also compiles `src/` once (`tsconfig.daemon.json`, incremental, into
 * `.build/`) for the daemon processes the tests start: from JavaScript a daemon
 * starts in ~1.2 s against ~2.3 s from the sources (Node strips the types of
 * every module at each start; two CPU-seconds per start over ~100 starts).
 * The build is of the sources as they are, so nothing stale is tested.
 */
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { createRequire } from "node:module"
import * as path from "node:path"
import type { TestProject } from "vitest/node"
import { startContainerdUnscoped } from "./ContainerdHarness.ts"
import { buildFixtureImage, FIXTURE_IMAGE } from "./FixtureImage.ts"

const ROOT = path.resolve(import.meta.dirname, "../..")

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const tsc = path.join(path.dirname(createRequire(import.meta.url).resolve("typescript/package.json")), "bin", "tsc")
  execFileSync(process.execPath, [tsc, "-p", path.join(ROOT, "tsconfig.daemon.json")], { stdio: "inherit" })
  // Read by test/support/DaemonHarness.ts in the test workers, which inherit it.
  process.env["EFFECT_CONTAINERD_DAEMON_MAIN"] = path.join(ROOT, ".build", "src", "daemon", "main.js")
  const { instance, stop } = await startContainerdUnscoped()
  try {
    const image = await Effect.runPromise(buildFixtureImage(instance.dir, { name: FIXTURE_IMAGE }))
    project.provide("containerd", {
      address: instance.address,
      state: instance.state,
      fixtureArchive: image.archive,
      // One uncompressed layer: its chain ID is its diff ID.
      fixtureChainId: image.diffIds[0]!
    })
  } catch (error) {
    await stop()
    throw error
  }
  return stop
}
