/**
 * Pulling a cold image from a local docker-registry, ours vs `ctr images pull`,
 * side by side against one private containerd:
 * - the image is generated here: a busybox layer and 8 layers of 8 MiB of random
 *   (incompressible) bytes, gzipped, 65 MB in all;
 * - before every measurement everything is removed from containerd (image
 *   records, then a synchronous GC: no content, no snapshot is left) and the
 *   page cache's dirty pages are flushed, so every pull fetches and unpacks everything;
 * - 1 pull, ours and ctr's; 20 concurrent pulls, ours and ctr's (20 `ctr`
 *   processes). Ours and ctr's single pulls and our concurrent pulls alternate
 *   (order rotated each run), 9 runs each, and the medians are reported; ctr's
 *   20 pulls run once (they are slow).
 * Targets: our 20 concurrent pulls within 1.1x our single pull; our single pull
 * no slower than ctr's.
 */
import { Context, Effect, Layer, Stream } from "effect"
import { execFile, execFileSync } from "node:child_process"
import * as Live from "../src/layers/Live.ts"
import { Containerd } from "../src/services/Containerd.ts"
import { Images } from "../src/services/Images.ts"
import { startContainerd } from "../test/support/ContainerdHarness.ts"
import { buildLayeredImage } from "../test/support/FixtureImage.ts"
import { startRegistry } from "../test/support/RegistryHarness.ts"
import { percentile, report } from "./Report.ts"
import { timed } from "./Setup.ts"

const NAMESPACE = "bench"
const LAYERS = 8
const LAYER_SIZE = 8 * 1024 * 1024
const CONCURRENT = 20
const RUNS = 9

export const pullBench = Effect.gen(function*() {
  const instance = yield* startContainerd
  const registry = yield* startRegistry
  const image = yield* buildLayeredImage(instance.dir, { name: "bench/pull:v1", layers: LAYERS, layerSize: LAYER_SIZE })
  const reference = yield* registry.push(image.archive, "bench/pull", "v1")
  const context = yield* Layer.build(
    Live.images().pipe(Layer.provideMerge(Containerd.layer({ address: instance.address, namespace: NAMESPACE })))
  )
  const client = Context.get(context, Containerd)
  const images = Context.get(context, Images)

  /** Removes every image, collects garbage at once, and checks that nothing is left. */
  const cold = Effect.gen(function*() {
    const { images: records } = yield* client.images.list({})
    for (const [i, record] of records.entries()) {
      yield* client.images.delete({ name: record.name, sync: i === records.length - 1 })
    }
    const blobs = yield* client.content.list({}).pipe(Stream.runCollect, Effect.map((pages) => pages.flatMap((p) => p.info)))
    const snapshots = yield* client.snapshots.list({ snapshotter: "overlayfs" }).pipe(
      Stream.runCollect,
      Effect.map((pages) => pages.flatMap((p) => p.info))
    )
    if (blobs.length > 0 || snapshots.length > 0) {
      return yield* Effect.fail(new Error(`not cold: ${blobs.length} blobs and ${snapshots.length} snapshots left`))
    }
    // Flush what the last run left dirty, so its writeback is not billed to the next.
    execFileSync("sync")
  })

  const ctrPull = Effect.callback<void, Error>((resume) => {
    execFile(
      "ctr",
      ["--address", instance.address, "--namespace", NAMESPACE, "images", "pull", "--plain-http", reference],
      { maxBuffer: 64 * 1024 * 1024 },
      (error, _stdout, stderr) => resume(error ? Effect.fail(new Error(`ctr pull: ${stderr || error.message}`)) : Effect.void)
    )
  })
  const ourPull = images.pull(reference)

  /** Wall time of `effect`, started cold. */
  const coldMs = <A, E>(effect: Effect.Effect<A, E>) =>
    Effect.andThen(cold, Effect.map(timed(effect), ({ ms }) => ms))
  const median = (xs: ReadonlyArray<number>) => percentile(xs, 50)
  const concurrently = <A, E>(effect: Effect.Effect<A, E>) =>
    Effect.all(Array.from({ length: CONCURRENT }, () => effect), { concurrency: "unbounded", discard: true })

  // A first pull each way warms the page cache and the code paths; it is not counted.
  yield* coldMs(ourPull)
  yield* coldMs(ctrPull)
  // The three measurements alternate, in an order rotated every run, so drift in
  // the machine and the after-effects of one run on the next (writeback, GC in
  // containerd) fall on each alike.
  const oursOnes: Array<number> = []
  const ctrOnes: Array<number> = []
  const oursManys: Array<number> = []
  const measurements = [
    () => Effect.map(coldMs(ourPull), (ms) => oursOnes.push(ms)),
    () => Effect.map(coldMs(ctrPull), (ms) => ctrOnes.push(ms)),
    () => Effect.map(coldMs(concurrently(ourPull)), (ms) => oursManys.push(ms))
  ]
  for (let i = 0; i < RUNS; i++) {
    for (let j = 0; j < measurements.length; j++) yield* measurements[(i + j) % measurements.length]!()
  }
  const oursOne = median(oursOnes)
  const ctrOne = median(ctrOnes)
  const oursMany = median(oursManys)
  const ctrMany = yield* coldMs(concurrently(ctrPull))
  yield* cold

  const size = image.layerDigests.length
  const seconds = (ms: number) => Math.round(ms / 10) / 100
  const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100
  yield* report(
    `pull: cold image of ${size} layers (${LAYERS} x ${LAYER_SIZE / 1024 / 1024} MiB random + busybox), ours vs ctr (same containerd and registry, one run)`,
    [
      { name: "1 pull, ours (median of 9)", value: seconds(oursOne), unit: "s" },
      { name: "1 pull, ctr (median of 9)", value: seconds(ctrOne), unit: "s" },
      { name: `${CONCURRENT} concurrent pulls, ours (median of 9)`, value: seconds(oursMany), unit: "s" },
      { name: `${CONCURRENT} concurrent pulls, ctr`, value: seconds(ctrMany), unit: "s" },
      { name: `ratio ours ${CONCURRENT} / ours 1 (target <= 1.1)`, value: ratio(oursMany, oursOne), unit: "x" },
      { name: "ratio ours 1 / ctr 1 (target <= 1)", value: ratio(oursOne, ctrOne), unit: "x" },
      { name: `ratio ctr ${CONCURRENT} / ours ${CONCURRENT}`, value: ratio(ctrMany, oursMany), unit: "x" }
    ]
  )
}).pipe(Effect.scoped)
