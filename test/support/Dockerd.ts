/**
 * dockerd 20.10 (Debian's `docker.io`, when installed) on a private
 * containerd, for side-by-side figures with the engine the issues quote. It
 * gets its own containerd namespace, data root and socket, overlay2 (as our
 * overlayfs snapshotter), no networking of its own (`--bridge=none`, as our
 * daemon's default), and the fixture image converted by skopeo to the
 * docker-archive form its `docker load` reads.
 *
 * With `bridge` it runs Docker's own bridge networking instead (docker0 on the
 * given `--bip`, iptables, docker-proxy), for the networking benchmark: what
 * dockerd does on a machine, beside ours. Its bridge and chains stay after it
 * stops, as dockerd leaves them on any machine; they touch none of ours.
 */
import { Effect, Option, Schedule, type Scope } from "effect"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { removeTree } from "../../src/internal/Files.ts"
import { requestOver } from "./DaemonHarness.ts"

/** A running dockerd: its API socket. */
export interface Dockerd {
  readonly socket: string
  readonly pid: number
}

const run = (command: string, args: ReadonlyArray<string>) =>
  Effect.callback<void, Error>((resume) => {
    execFile(command, args, { timeout: 120_000 }, (error, _stdout, stderr) =>
      resume(error ? Effect.fail(new Error(`${command} ${args.join(" ")}: ${stderr || error.message}`)) : Effect.void))
  })

const onPath = (binary: string) =>
  (process.env["PATH"] ?? "").split(":").some((dir) => fs.existsSync(path.join(dir, binary)))

/** Starts dockerd with `image` loaded; none when dockerd (or skopeo) is not installed. Stopped with the scope. */
export const startDockerd = (
  containerd: string,
  image: { readonly archive: string; readonly name: string },
  options?: { readonly bridge?: { readonly bip: string } | undefined }
): Effect.Effect<Option.Option<Dockerd>, Error, Scope.Scope> =>
  Effect.gen(function*() {
    if (!onPath("dockerd") || !onPath("skopeo")) return Option.none()
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-dockerd-"))),
      // dockerd leaves its own netns pinned under its exec root when it stops: unpinned first.
      (dir) => Effect.andThen(Effect.ignore(run("umount", ["-l", path.join(dir, "exec", "netns", "default")])), removeTree(dir))
    )
    const socket = path.join(dir, "docker.sock")
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const log = fs.openSync(path.join(dir, "dockerd.log"), "a")
        const spawned = spawn("dockerd", [
          "--host", `unix://${socket}`,
          "--containerd", containerd,
          "--containerd-namespace", "bench-dockerd",
          "--containerd-plugins-namespace", "bench-dockerd-plugins",
          "--data-root", path.join(dir, "data"),
          "--exec-root", path.join(dir, "exec"),
          "--pidfile", path.join(dir, "dockerd.pid"),
          "--storage-driver=overlay2",
          ...(options?.bridge === undefined
            ? ["--bridge=none", "--iptables=false", "--ip-masq=false"]
            : [`--bip=${options.bridge.bip}`])
        ], { stdio: ["ignore", log, log] })
        fs.closeSync(log)
        // A failed spawn leaves no pid and fails the ping below; the event needs a listener.
        spawned.on("error", () => {})
        return spawned
      }),
      (child: ChildProcess) =>
        Effect.callback<void>((resume) => {
          if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
          const timer = setTimeout(() => child.kill("SIGKILL"), 20_000)
          child.once("exit", () => {
            clearTimeout(timer)
            resume(Effect.void)
          })
          child.kill("SIGTERM")
        })
    )
    yield* requestOver(socket)("GET", "/_ping").pipe(
      Effect.filterOrFail((r) => r.status === 200, () => new Error("dockerd is not ready")),
      Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 300, while: () => child.exitCode === null })
    )
    const archive = path.join(dir, "image.docker.tar")
    yield* run("skopeo", ["copy", "-q", `oci-archive:${image.archive}`, `docker-archive:${archive}:${image.name}`])
    yield* run("docker", ["--host", `unix://${socket}`, "load", "-q", "-i", archive])
    return Option.some({ socket, pid: child.pid! })
  })
