/**
 * vitest global setup: one private containerd for the whole run, shared by test
 * files through `inject("containerd")` (each file works in its own namespaces),
 * and the busybox fixture image built once. Teardown stops the daemon and every
 * shim it started.
 */
import { Effect } from "effect"
import type { TestProject } from "vitest/node"
import { startContainerdUnscoped } from "./ContainerdHarness.ts"
import { buildFixtureImage, FIXTURE_IMAGE } from "./FixtureImage.ts"

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
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
