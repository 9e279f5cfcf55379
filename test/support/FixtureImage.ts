/**
 * A tiny OCI image built at test time from busybox-static, so container tests
 * need no network: one layer with /bin/busybox and symlinks for the applets the
 * tests use, a minimal /etc/passwd and /etc/group, and an image config the test
 * can shape (Env, Cmd, WorkingDir, User, ...). Written as an OCI image layout in a
 * tar archive, the format `ctr images import` and `skopeo copy oci-archive:` read.
 */
import { execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import { HarnessError } from "./ContainerdHarness.ts"

/** The name the shared busybox fixture is built and imported under. */
export const FIXTURE_IMAGE = "effect-containerd.test/busybox:latest"

/** The applets linked into /bin. */
const applets = [
  "sh", "echo", "sleep", "cat", "true", "false", "env", "ls", "id", "head", "tail", "tr", "dd", "yes",
  "kill", "ps", "mkdir", "touch", "rm", "wc", "printf", "grep", "pwd", "whoami", "hostname", "stat", "seq",
  "date", "uname", "test", "expr", "stty", "mount", "top"
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

/**
 * Builds a fixture image into `dir/<slug>.oci.tar`. The layer is deterministic
 * (sorted, owned by root, mtime 0), so every fixture shares one layer digest.
 */
export const buildFixtureImage = (
  dir: string,
  options: { readonly name: string; readonly config?: ImageConfig }
): Effect.Effect<FixtureImage, HarnessError> =>
  Effect.try({
    try: () => {
      const slug = options.name.replace(/[^A-Za-z0-9]+/g, "-")
      const work = fs.mkdtempSync(path.join(dir, `${slug}-`))
      const rootfs = path.join(work, "rootfs")
      const layout = path.join(work, "layout")
      writeRootfs(rootfs)
      fs.mkdirSync(path.join(layout, "blobs", "sha256"), { recursive: true })
      const layerTar = execFileSync("tar", [
        "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "-C", rootfs, "-cf", "-", "."
      ], { maxBuffer: 64 * 1024 * 1024 })
      const layer = writeBlob(layout, layerTar)
      const config = writeBlob(
        layout,
        Buffer.from(JSON.stringify({
          architecture: goArch(),
          os: "linux",
          config: { ...defaultImageConfig, ...options.config },
          rootfs: { type: "layers", diff_ids: [layer.digest] },
          history: [{ created_by: "effect-containerd test fixture" }]
        }))
      )
      const manifest = writeBlob(
        layout,
        Buffer.from(JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
          layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }]
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
            annotations: { "io.containerd.image.name": options.name, "org.opencontainers.image.ref.name": options.name }
          }]
        })
      )
      const archive = path.join(dir, `${slug}.oci.tar`)
      execFileSync("tar", ["-C", layout, "-cf", archive, "."])
      fs.rmSync(work, { recursive: true, force: true })
      return {
        name: options.name,
        archive,
        manifestDigest: manifest.digest,
        configDigest: config.digest,
        diffIds: [layer.digest]
      }
    },
    catch: (cause) => new HarnessError({ message: `could not build fixture image ${options.name}`, cause })
  })

/** Imports an archive into a namespace with containerd's `ctr` (and unpacks it). */
export const importWithCtr = (
  address: string,
  namespace: string,
  archive: string
): Effect.Effect<void, HarnessError> =>
  Effect.try({
    try: () => {
      execFileSync("ctr", ["--address", address, "--namespace", namespace, "images", "import", archive], {
        stdio: "pipe"
      })
    },
    catch: (cause) => new HarnessError({ message: `ctr could not import ${archive} into ${namespace}`, cause })
  })
