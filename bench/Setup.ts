/**
 * What the containerd benchmarks share: a private containerd with the fixture
 * image in a namespace, our runtime over it (directly or through the counting
 * proxy), and `ctr` run against the same daemon for comparison.
 */
import { Effect, Layer } from "effect"
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import * as Live from "../src/layers/Live.ts"
import { ContainersDefinition } from "../src/gen/containerd/services/containers/v1/containers.ts"
import { ContentDefinition } from "../src/gen/containerd/services/content/v1/content.ts"
import { DiffDefinition } from "../src/gen/containerd/services/diff/v1/diff.ts"
import { EventsDefinition } from "../src/gen/containerd/services/events/v1/events.ts"
import { ImagesDefinition } from "../src/gen/containerd/services/images/v1/images.ts"
import { IntrospectionDefinition } from "../src/gen/containerd/services/introspection/v1/introspection.ts"
import { LeasesDefinition } from "../src/gen/containerd/services/leases/v1/leases.ts"
import { NamespacesDefinition } from "../src/gen/containerd/services/namespaces/v1/namespace.ts"
import { SnapshotsDefinition } from "../src/gen/containerd/services/snapshots/v1/snapshots.ts"
import { TasksDefinition } from "../src/gen/containerd/services/tasks/v1/tasks.ts"
import { VersionDefinition } from "../src/gen/containerd/services/version/v1/version.ts"
import { Containerd } from "../src/services/Containerd.ts"
import type { RuntimeOptions } from "../src/services/Runtime.ts"
import { startContainerd } from "../test/support/ContainerdHarness.ts"
import { buildFixtureImage, FIXTURE_IMAGE, importArchive } from "../test/support/FixtureImage.ts"
import { startGrpcProxy } from "../test/support/GrpcProxy.ts"

export const NAMESPACE = "bench"
export { FIXTURE_IMAGE }

/** Every service of our proto subset, so ctr can go through the proxy too. */
const allServices = [
  ContainersDefinition, ContentDefinition, DiffDefinition, EventsDefinition, ImagesDefinition, IntrospectionDefinition,
  LeasesDefinition, NamespacesDefinition, SnapshotsDefinition, TasksDefinition, VersionDefinition
]

/** A private containerd with the fixture imported, a counting proxy in front of it, and helpers. */
export const benchDaemon = Effect.gen(function*() {
  const instance = yield* startContainerd
  const image = yield* buildFixtureImage(instance.dir, { name: FIXTURE_IMAGE })
  yield* importArchive(instance.address, NAMESPACE, image.archive)
  const proxy = yield* startGrpcProxy(instance.address, allServices)
  const runtime = (address: string, options?: RuntimeOptions) =>
    Live.services({ runtime: { fifoDir: path.join(instance.dir, "fifo"), ...options } }).pipe(
      Layer.provideMerge(Containerd.layer({ address, namespace: NAMESPACE }).pipe(Layer.orDie))
    )
  /** Runs ctr against `address` (the daemon's socket, or the proxy's). */
  const ctr = (address: string, args: ReadonlyArray<string>) =>
    Effect.callback<string, Error>((resume) => {
      execFile("ctr", ["--address", address, "--namespace", NAMESPACE, ...args], (error, stdout, stderr) =>
        resume(error ? Effect.fail(new Error(`ctr ${args.join(" ")}: ${stderr || error.message}`)) : Effect.succeed(stdout)))
    })
  return { instance, image, proxy, runtime, ctr }
})

/** The calls a proxy saw while `effect` ran. */
export const countedBy = <A, E, R>(proxy: { counts: () => ReadonlyMap<string, number> }, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const before = proxy.counts()
    const value = yield* effect
    const after = proxy.counts()
    let calls = 0
    for (const [method, n] of after) calls += n - (before.get(method) ?? 0)
    return { value, calls }
  })

/** Wall time of `effect` in milliseconds. */
export const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    const value = yield* effect
    return { value, ms: performance.now() - start }
  })

/**
 * The CPU time (user + system, in ms) process `pid` and its waited-for children
 * have used: the CNI plugins and iptables ours runs, the docker-proxy and
 * iptables dockerd runs.
 */
export const cpuMs = (pid: number): number => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "").split(" ")
  return ((Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) * 1000) / 100
}
