/**
 * A tiny OCI image built at test time from busybox-static, so container tests
 * need no network: one layer with /bin/busybox and symlinks for the applets the
 * tests use, a minimal /etc/passwd and /etc/group, and an image config the test
 * can shape (Env, Cmd, WorkingDir, User, ...). Written as an OCI image layout in a
 * tar archive, the format `Images.importArchive`, `ctr images import` and
 * `skopeo copy oci-archive:` read.
 */
import { execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as zlib from "node:zlib"
import { Effect, Layer } from "effect"
import * as Live from "../../src/layers/Live.ts"
import { Containerd } from "../../src/services/Containerd.ts"
import { Images } from "../../src/services/Images.ts"
import { HarnessError } from "./ContainerdHarness.ts"

/** The name the shared busybox fixture is built and imported under. */
export const FIXTURE_IMAGE = "effect-containerd.test/busybox:latest"

/** The applets linked into /bin. */
const applets = [
  "sh", "echo", "sleep", "cat", "true", "false", "env", "ls", "id", "head", "tail", "tr", "dd", "yes",
  "kill", "ps", "mkdir", "touch", "rm", "wc", "printf", "grep", "pwd", "whoami", "hostname", "stat", "seq",
  "date", "uname", "test", "expr", "stty", "mount", "top",
  // Networking (issue 18): servers to publish, clients to reach them, and a look at the interfaces.
  "httpd", "nc", "wget", "ping", "ip", "nslookup"
]

/** The parts of an OCI image config the fixtures set. */
export interface ImageConfig {
  readonly Entrypoint?: ReadonlyArray<string>
  readonly Cmd?: ReadonlyArray<string>
  readonly Env?: ReadonlyArray<string>
  readonly WorkingDir?: string
  readonly User?: string
  readonly Labels?: Readonly<Record<string, string>>
  readonly StopSignal?: string
}

/** A built fixture image. */
export interface FixtureImage {
  /** The image name recorded in the archive, e.g. "effect-containerd.test/busybox:latest". */
  readonly name: string
  /** Path of the OCI archive (a tar of an OCI image layout). */
  readonly archive: string
  readonly manifestDigest: string
  readonly configDigest: string
  readonly diffIds: ReadonlyArray<string>
  /** The digests of the layer blobs, as stored (compressed or not). */
  readonly layerDigests: ReadonlyArray<string>
}

/** The image config every fixture starts from. */
export const defaultImageConfig: ImageConfig = {
  Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
  Cmd: ["sh"]
}

const goArch = (): string => (process.arch === "x64" ? "amd64" : process.arch)

const sha256 = (data: Buffer): string => `sha256:${crypto.createHash("sha256").update(data).digest("hex")}`

const writeBlob = (layout: string, data: Buffer): { digest: string; size: number } => {
  const digest = sha256(data)
  fs.writeFileSync(path.join(layout, "blobs", "sha256", digest.slice("sha256:".length)), data)
  return { digest, size: data.length }
}

const writeRootfs = (rootfs: string): void => {
  for (const dir of ["bin", "etc", "root", "home/app", "tmp", "proc", "sys", "dev"]) {
    fs.mkdirSync(path.join(rootfs, dir), { recursive: true })
  }
  fs.chmodSync(path.join(rootfs, "tmp"), 0o1777)
  fs.copyFileSync("/bin/busybox", path.join(rootfs, "bin", "busybox"))
  fs.chmodSync(path.join(rootfs, "bin", "busybox"), 0o755)
  for (const applet of applets) fs.symlinkSync("busybox", path.join(rootfs, "bin", applet))
  fs.writeFileSync(
    path.join(rootfs, "etc", "passwd"),
    "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
  )
  fs.writeFileSync(path.join(rootfs, "etc", "group"), "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n")
}

/** A layer to put in a fixture: a tar, stored as is or gzipped. */
interface LayerInput {
  readonly tar: Buffer
  readonly gzip?: boolean
}

/** Writes an OCI archive of one image (config defaults merged with `config`) and returns what it holds. */
const writeImageArchive = (
  dir: string,
  name: string,
  layers: ReadonlyArray<LayerInput>,
  config: ImageConfig | undefined
): FixtureImage => {
  const slug = name.replace(/[^A-Za-z0-9]+/g, "-")
  const layout = fs.mkdtempSync(path.join(dir, `${slug}-`))
  fs.mkdirSync(path.join(layout, "blobs", "sha256"), { recursive: true })
  const written = layers.map(({ tar, gzip }) => ({
    ...writeBlob(layout, gzip === true ? zlib.gzipSync(tar, { level: 1 }) : tar),
    mediaType: `application/vnd.oci.image.layer.v1.tar${gzip === true ? "+gzip" : ""}`,
    diffId: sha256(tar)
  }))
  const configBlob = writeBlob(
    layout,
    Buffer.from(JSON.stringify({
      architecture: goArch(),
      os: "linux",
      config: { ...defaultImageConfig, ...config },
      rootfs: { type: "layers", diff_ids: written.map((layer) => layer.diffId) },
      history: written.map(() => ({ created_by: "effect-containerd test fixture" }))
    }))
  )
  const manifest = writeBlob(
    layout,
    Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...configBlob },
      layers: written.map(({ mediaType, digest, size }) => ({ mediaType, digest, size }))
    }))
  )
  fs.writeFileSync(path.join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }))
  fs.writeFileSync(
    path.join(layout, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        ...manifest,
        annotations: { "io.containerd.image.name": name, "org.opencontainers.image.ref.name": name }
      }]
    })
  )
  const archive = path.join(dir, `${slug}.oci.tar`)
  execFileSync("tar", ["-C", layout, "-cf", archive, "."])
  fs.rmSync(layout, { recursive: true, force: true })
  return {
    name,
    archive,
    manifestDigest: manifest.digest,
    configDigest: configBlob.digest,
    diffIds: written.map((layer) => layer.diffId),
    layerDigests: written.map((layer) => layer.digest)
  }
}

/** A deterministic tar of a directory (sorted, owned by root, mtime 0). */
const tarOf = (root: string): Buffer =>
  execFileSync("tar", [
    "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "-C", root, "-cf", "-", "."
  ], { maxBuffer: 256 * 1024 * 1024 })

/** The busybox layer (a root filesystem tar, as `docker import` takes); `unique` adds a random /etc/image-id so that no other image shares it. */
export const busyboxLayer = (dir: string, unique = false): Buffer => {
  const rootfs = fs.mkdtempSync(path.join(dir, "rootfs-"))
  try {
    writeRootfs(rootfs)
    if (unique) fs.writeFileSync(path.join(rootfs, "etc", "image-id"), crypto.randomBytes(16).toString("hex"))
    return tarOf(rootfs)
  } finally {
    fs.rmSync(rootfs, { recursive: true, force: true })
  }
}

/**
 * Builds a fixture image into `dir/<slug>.oci.tar`. The layer is deterministic
 * (sorted, owned by root, mtime 0), so every fixture shares one layer digest.
 */
export const buildFixtureImage = (
  dir: string,
  options: { readonly name: string; readonly config?: ImageConfig }
): Effect.Effect<FixtureImage, HarnessError> =>
  Effect.try({
    try: () => writeImageArchive(dir, options.name, [{ tar: busyboxLayer(dir) }], options.config),
    catch: (cause) => new HarnessError({ message: `could not build fixture image ${options.name}`, cause })
  })

/**
 * Builds an image of a busybox layer (unless `base` is false) and `layers`
 * more, each one file of `layerSize` random (incompressible) bytes, gzipped as
 * registries serve them. Every layer is unique to the image, so a pull of it
 * is cold even on a daemon that holds other fixtures.
 */
export const buildLayeredImage = (
  dir: string,
  options: { readonly name: string; readonly layers: number; readonly layerSize: number; readonly base?: boolean }
): Effect.Effect<FixtureImage, HarnessError> =>
  Effect.try({
    try: () => {
      const random = Array.from({ length: options.layers }, (_, i) => {
        const root = fs.mkdtempSync(path.join(dir, "layer-"))
        try {
          fs.mkdirSync(path.join(root, "data"))
          fs.writeFileSync(path.join(root, "data", `layer-${i}.bin`), crypto.randomBytes(options.layerSize))
          return { tar: tarOf(root), gzip: true }
        } finally {
          fs.rmSync(root, { recursive: true, force: true })
        }
      })
      const base = options.base === false ? [] : [{ tar: busyboxLayer(dir, true), gzip: true }]
      return writeImageArchive(dir, options.name, [...base, ...random], undefined)
    },
    catch: (cause) => new HarnessError({ message: `could not build layered image ${options.name}`, cause })
  })

/** Imports an archive into a namespace of the daemon at `address` with our own import (and unpacks it). */
export const importArchive = (
  address: string,
  namespace: string,
  archive: string
): Effect.Effect<void, HarnessError> =>
  Images.use((images) => images.importArchive(archive)).pipe(
    Effect.provide(Live.images().pipe(Layer.provide(Containerd.layer({ address, namespace })))),
    Effect.mapError((cause) => new HarnessError({ message: `could not import ${archive} into ${namespace}`, cause }))
  )
