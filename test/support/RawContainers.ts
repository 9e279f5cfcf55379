/**
 * Running a process with nothing but the raw client: a snapshot on the fixture's
 * layer, a container with a minimal OCI spec, a task. For tests of the layers
 * below the handles (the event stream, the exit hub), which must not depend on
 * the handles they exist to support.
 */
import { Effect } from "effect"
import { OciSpecTypeUrl, packJson } from "../../src/domain/Any.ts"
import type { Containerd } from "../../src/services/Containerd.ts"

/** A spec runc accepts: own namespaces, /proc and /dev, no capabilities, the given command. */
const minimalSpec = (namespace: string, id: string, args: ReadonlyArray<string>) => ({
  ociVersion: "1.0.2",
  process: {
    terminal: false,
    user: { uid: 0, gid: 0 },
    args,
    env: ["PATH=/bin"],
    cwd: "/",
    noNewPrivileges: true
  },
  root: { path: "rootfs" },
  hostname: id,
  mounts: [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] }
  ],
  linux: {
    namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }, { type: "network" }],
    cgroupsPath: `/${namespace}/${id}`
  }
})

/**
 * Creates a container and its (not yet started) task; returns the init's PID.
 * The container is created before its snapshot: its snapshot key is a GC
 * reference, so the snapshot is never unreferenced and no lease is needed.
 */
export const createRawTask = (
  client: Containerd["Service"],
  options: { readonly id: string; readonly args: ReadonlyArray<string>; readonly chainId: string }
) =>
  Effect.gen(function*() {
    const namespace = yield* client.currentNamespace
    yield* client.containers.create({
      container: {
        id: options.id,
        runtime: { name: "io.containerd.runc.v2" },
        spec: packJson(OciSpecTypeUrl, minimalSpec(namespace, options.id, options.args)),
        snapshotter: "overlayfs",
        snapshotKey: options.id
      }
    })
    const { mounts } = yield* client.snapshots.prepare({
      snapshotter: "overlayfs",
      key: options.id,
      parent: options.chainId
    })
    const { pid } = yield* client.tasks.create({ containerId: options.id, rootfs: mounts })
    return pid
  })

/**
 * Deletes a stopped task, its snapshot and its container — the snapshot while
 * the container still references it, or containerd's GC may remove it first.
 */
export const deleteRawTask = (client: Containerd["Service"], id: string) =>
  Effect.gen(function*() {
    yield* client.tasks.delete({ containerId: id })
    yield* client.snapshots.remove({ snapshotter: "overlayfs", key: id })
    yield* client.containers.delete({ id })
  })
