/**
 * `docker cp`'s routes, as moby's `daemon/archive.go`: the stat of a container
 * path (`HEAD`, and the `X-Docker-Container-Path-Stat` of a `GET`), a tar of it
 * streamed out (`GET`: the path's basename as its top member, a link archived
 * as a link), and a tar streamed into a container directory (`PUT`,
 * `Extract.ts`). Paths are resolved in the container's scope (`ScopedPath.ts`)
 * on its filesystem for the request (`ContainerFs.ts`).
 *
 * Gotcha: sockets, devices and fifos are left out of a `GET`'s archive (dockerd
 * leaves out sockets and writes devices; the tar writer has no device members).
 */
import { NodeStream } from "@effect/platform-node"
import { Effect, Exit, Scope, Stream } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { resolveInScope, type ResolvedPath } from "../../internal/ScopedPath.ts"
import { type TarMember, type TarMeta, tarStream } from "../../internal/TarWriter.ts"
import { badRequest, DockerError, internal, notFound } from "../DockerError.ts"
import type { Environment } from "./Environment.ts"
import { containerFs, type ContainerFs } from "./ContainerFs.ts"
import { extractArchive, type ExtractOptions } from "./Extract.ts"
import type { Entry } from "./Store.ts"

/** What `X-Docker-Container-Path-Stat` carries (moby's `ContainerPathStat`, in its field order). */
export interface PathStat {
  readonly name: string
  readonly size: number
  /** Go's `os.FileMode`: permission bits, and the type in the high bits. */
  readonly mode: number
  /** RFC 3339 with nanoseconds, as Go's `time.Time` marshals. */
  readonly mtime: string
  /** A link's target, fully resolved in the container; empty otherwise. */
  readonly linkTarget: string
}

/** Go's `os.FileMode` type bits. */
const GO_MODE = {
  dir: 2 ** 31,
  symlink: 2 ** 27,
  device: 2 ** 26,
  namedPipe: 2 ** 25,
  socket: 2 ** 24,
  setuid: 2 ** 23,
  setgid: 2 ** 22,
  charDevice: 2 ** 21,
  sticky: 2 ** 20
}

/** An `lstat`'s mode as Go's `os.FileMode` (what the CLI decodes). */
export const goFileMode = (stats: fs.Stats): number => {
  let mode = stats.mode & 0o777
  if (stats.isDirectory()) mode += GO_MODE.dir
  else if (stats.isSymbolicLink()) mode += GO_MODE.symlink
  else if (stats.isBlockDevice()) mode += GO_MODE.device
  else if (stats.isCharacterDevice()) mode += GO_MODE.device + GO_MODE.charDevice
  else if (stats.isFIFO()) mode += GO_MODE.namedPipe
  else if (stats.isSocket()) mode += GO_MODE.socket
  if ((stats.mode & 0o4000) !== 0) mode += GO_MODE.setuid
  if ((stats.mode & 0o2000) !== 0) mode += GO_MODE.setgid
  if ((stats.mode & 0o1000) !== 0) mode += GO_MODE.sticky
  return mode
}

/** Nanoseconds since the epoch as Go's RFC3339Nano in UTC (trailing zeros of the fraction dropped). */
export const rfc3339Nano = (ns: bigint): string => {
  const seconds = ns / 1_000_000_000n
  const fraction = (ns % 1_000_000_000n).toString().padStart(9, "0").replace(/0+$/, "")
  const base = new Date(Number(seconds) * 1000).toISOString().slice(0, 19)
  return `${base}${fraction === "" ? "" : `.${fraction}`}Z`
}

const fileNotFound = (p: string, ref: string) => notFound(`Could not find the file ${p} in container ${ref}`)

/** `p` resolved in scope (its last link kept unless `followLast`) and its lstat; 404 when missing. */
const locate = (fsys: ContainerFs, p: string, ref: string, followLast: boolean) =>
  Effect.gen(function*() {
    const resolved = resolveInScope(fsys.scope, p, followLast)
    if (resolved._tag === "Failure") return yield* Effect.fail(badRequest(resolved.failure))
    const stats = yield* Effect.try({ try: () => fs.lstatSync(resolved.success.hostPath, { bigint: true }), catch: () => fileNotFound(p, ref) })
    return { resolved: resolved.success, stats, plain: fs.lstatSync(resolved.success.hostPath) }
  })

const statJson = (fsys: ContainerFs, resolved: ResolvedPath, stats: fs.BigIntStats, plain: fs.Stats): PathStat => {
  const target = plain.isSymbolicLink() ? resolveInScope(fsys.scope, resolved.path, true) : undefined
  return {
    name: resolved.path === "/" ? "/" : path.posix.basename(resolved.path),
    size: Number(stats.size),
    mode: goFileMode(plain),
    mtime: rfc3339Nano(stats.mtimeNs),
    linkTarget: target?._tag === "Success" ? target.success.path : ""
  }
}

const metaOf = (stats: fs.Stats): TarMeta => ({ mode: stats.mode & 0o7777, uid: stats.uid, gid: stats.gid, mtime: Math.floor(stats.mtimeMs / 1000) })

const readFailed = (hostPath: string) => (cause: unknown) => internal(`cannot read ${hostPath}: ${String(cause)}`, cause)

/** The members of the tree at `hostPath`, named from `name`; a file with several links after the first is a hard link to it. */
const membersOf = (hostPath: string, name: string, firsts: Map<string, string>): Stream.Stream<TarMember<DockerError>, DockerError> =>
  Stream.unwrap(Effect.try({ try: () => fs.lstatSync(hostPath), catch: readFailed(hostPath) }).pipe(Effect.map((stats): Stream.Stream<TarMember<DockerError>, DockerError> => {
    const meta = metaOf(stats)
    if (stats.isDirectory()) {
      const children = Stream.unwrap(Effect.try({ try: () => fs.readdirSync(hostPath).sort(), catch: readFailed(hostPath) }).pipe(
        Effect.map((names) => Stream.flatMap(Stream.fromIterable(names), (child) => membersOf(path.join(hostPath, child), `${name}/${child}`, firsts), { concurrency: 1 }))
      ))
      return Stream.concat(Stream.succeed({ _tag: "Directory", name, meta }), children)
    }
    if (stats.isSymbolicLink()) {
      return Stream.fromEffect(Effect.try({ try: () => fs.readlinkSync(hostPath), catch: readFailed(hostPath) }).pipe(
        Effect.map((target): TarMember<DockerError> => ({ _tag: "Symlink", name, target, meta }))
      ))
    }
    if (!stats.isFile()) return Stream.empty
    const inode = `${stats.dev}:${stats.ino}`
    const first = stats.nlink > 1 ? firsts.get(inode) : undefined
    if (first !== undefined) return Stream.succeed({ _tag: "Hardlink", name, target: first, meta })
    if (stats.nlink > 1) firsts.set(inode, name)
    return Stream.succeed({
      _tag: "File",
      name,
      size: stats.size,
      meta,
      data: NodeStream.fromReadable({ evaluate: () => fs.createReadStream(hostPath), onError: readFailed(hostPath) })
    })
  })))

/** `HEAD /containers/{id}/archive`: the path's stat. */
export const statPath = (env: Environment, entry: Entry, ref: string, p: string): Effect.Effect<PathStat, DockerError> =>
  Effect.scoped(Effect.gen(function*() {
    const fsys = yield* containerFs(env, entry)
    const { resolved, stats, plain } = yield* locate(fsys, p, ref, false)
    return statJson(fsys, resolved, stats, plain)
  }))

/** `GET /containers/{id}/archive`: the stat, and the tar streamed; the container's filesystem stays reachable until the tar ends. */
export const archivePath = (env: Environment, entry: Entry, ref: string, p: string) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const close = Scope.close(scope, Exit.void)
    return yield* Effect.gen(function*() {
      const fsys = yield* containerFs(env, entry)
      const { resolved, stats, plain } = yield* locate(fsys, p, ref, false)
      const stat = statJson(fsys, resolved, stats, plain)
      const top = stat.name === "/" ? "." : stat.name
      const tar: Stream.Stream<Uint8Array, unknown> = tarStream(membersOf(resolved.hostPath, top, new Map())).pipe(Stream.ensuring(close))
      return { stat, tar }
    }).pipe(Scope.provide(scope), Effect.onError(() => close))
  })

/** `PUT /containers/{id}/archive`: the tar `body` extracted into the directory `p`. */
export const extractToPath = <E>(
  env: Environment,
  entry: Entry,
  ref: string,
  p: string,
  body: Stream.Stream<Uint8Array, E>,
  options: ExtractOptions
): Effect.Effect<void, DockerError> =>
  Effect.scoped(Effect.gen(function*() {
    const fsys = yield* containerFs(env, entry)
    const { resolved, plain } = yield* locate(fsys, p, ref, true)
    if (!plain.isDirectory()) return yield* Effect.fail(badRequest("extraction point is not a directory"))
    if (resolved.bind?.readOnly === true) return yield* Effect.fail(new DockerError({ status: 403, message: "mounted volume is marked read-only" }))
    if (resolved.bind === undefined && fsys.readOnlyRootfs) {
      return yield* Effect.fail(new DockerError({ status: 403, message: "container rootfs is marked read-only" }))
    }
    yield* extractArchive(fsys.scope, resolved.path, body, options)
  }))
