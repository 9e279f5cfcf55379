/**
 * Extracting a `docker cp` archive into a container directory as it arrives
 * (`PUT /containers/{id}/archive`), as moby's `archive.Untar` under its chroot:
 * each member's parent is resolved in the container's scope (`ScopedPath.ts`),
 * so a member under a link — one the archive itself made, absolute or `../` —
 * lands inside the container, never outside; a member whose own name climbs out
 * of the target (`../x`) is refused. An existing member is replaced (a
 * directory merged), or, with `noOverwriteDirNonDir`, a directory/non-directory
 * clash refused. Modes, mtimes and (with `copyUIDGID`) the archive's owners are
 * kept; without it everything is root's, as dockerd writes it.
 *
 * Gotcha: a bad archive stops the extraction where it is (what came before it
 * stays, as with dockerd); devices and fifos are refused (400), not made.
 */
import { Effect, Stream } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { readTar, type TarEntry, type TarEntrySink, TarFormatError } from "../../internal/TarReader.ts"
import { resolveInScope, type ScopedRoot } from "../../internal/ScopedPath.ts"
import { badRequest, DockerError, internal } from "../DockerError.ts"

/** `PUT` archive's query options. */
export interface ExtractOptions {
  readonly noOverwriteDirNonDir: boolean
  readonly copyUIDGID: boolean
}

const fileWork = <A>(what: string, f: () => A) =>
  Effect.try({ try: f, catch: (cause) => internal(`${what}: ${cause instanceof Error ? cause.message : String(cause)}`, cause) })

const lstatOrUndefined = (hostPath: string): fs.Stats | undefined => {
  try {
    return fs.lstatSync(hostPath)
  } catch {
    return undefined
  }
}

/** An archive name relative to the target, or undefined when it climbs out of it. */
const relativeName = (name: string): string | undefined => {
  const clean = path.posix.normalize(name.replace(/^\/+/, ""))
  return clean === ".." || clean.startsWith("../") ? undefined : clean.replace(/\/$/, "")
}

const NOTHING: TarEntrySink<never, never> = { write: () => Effect.void, end: Effect.void }

/** Extracts the tar `body` into the container directory `target` (resolved, link-free, existing). */
export const extractArchive = <E>(
  scope: ScopedRoot,
  target: string,
  body: Stream.Stream<Uint8Array, E>,
  options: ExtractOptions
): Effect.Effect<void, DockerError> =>
  Effect.suspend(() => {
    // Directories' mtimes are set last: what is extracted into them afterwards changes them.
    const directoryTimes: Array<{ readonly hostPath: string; readonly mtime: number }> = []

    const applyMeta = (entry: TarEntry, hostPath: string) =>
      fileWork(`cannot set the owner, mode or time of ${entry.name}`, () => {
        const [uid, gid] = options.copyUIDGID ? [entry.uid, entry.gid] : [0, 0]
        fs.lchownSync(hostPath, uid, gid)
        // After the owner: a chown clears setuid and setgid.
        if (entry.kind !== "Symlink") fs.chmodSync(hostPath, entry.mode)
        if (entry.kind === "Directory") directoryTimes.push({ hostPath, mtime: entry.mtime })
        else fs.lutimesSync(hostPath, entry.mtime, entry.mtime)
      })

    const onEntry = (entry: TarEntry): Effect.Effect<TarEntrySink<DockerError, never>, DockerError> =>
      Effect.gen(function*() {
        const rel = relativeName(entry.name)
        if (rel === undefined) return yield* Effect.fail(badRequest(`invalid archive member ${JSON.stringify(entry.name)}: it is outside of ${target}`))
        // The target itself (`./`): it exists already.
        if (rel === ".") return NOTHING
        if (entry.kind === "Other") {
          return yield* Effect.fail(badRequest(`archive member ${entry.name} is of type ${JSON.stringify(entry.typeflag)}: devices and fifos cannot be copied into containers`))
        }
        const containerPath = path.posix.join(target, rel)
        const parent = resolveInScope(scope, path.posix.dirname(containerPath), true)
        if (parent._tag === "Failure") return yield* Effect.fail(badRequest(parent.failure))
        yield* fileWork(`cannot create ${path.posix.dirname(containerPath)}`, () => fs.mkdirSync(parent.success.hostPath, { recursive: true, mode: 0o755 }))
        const hostPath = path.join(parent.success.hostPath, path.posix.basename(containerPath))
        const existing = lstatOrUndefined(hostPath)
        const isDir = entry.kind === "Directory"
        if (existing !== undefined) {
          if (options.noOverwriteDirNonDir && existing.isDirectory() && !isDir) {
            return yield* Effect.fail(badRequest(`cannot overwrite directory "${containerPath}" with non-directory "${entry.name}"`))
          }
          if (options.noOverwriteDirNonDir && !existing.isDirectory() && isDir) {
            return yield* Effect.fail(badRequest(`cannot overwrite non-directory "${containerPath}" with directory "${entry.name}"`))
          }
          if (!(existing.isDirectory() && isDir)) yield* fileWork(`cannot replace ${containerPath}`, () => fs.rmSync(hostPath, { recursive: true, force: true }))
        }
        switch (entry.kind) {
          case "Directory":
            if (existing === undefined || !existing.isDirectory()) yield* fileWork(`cannot create ${containerPath}`, () => fs.mkdirSync(hostPath, { mode: 0o700 }))
            yield* applyMeta(entry, hostPath)
            return NOTHING
          case "Symlink":
            yield* fileWork(`cannot create ${containerPath}`, () => fs.symlinkSync(entry.linkname, hostPath))
            yield* applyMeta(entry, hostPath)
            return NOTHING
          case "Hardlink": {
            const linkRel = relativeName(entry.linkname)
            if (linkRel === undefined) return yield* Effect.fail(badRequest(`invalid hardlink ${JSON.stringify(entry.name)} -> ${JSON.stringify(entry.linkname)}`))
            const source = resolveInScope(scope, path.posix.join(target, linkRel), false)
            if (source._tag === "Failure") return yield* Effect.fail(badRequest(source.failure))
            yield* fileWork(`cannot link ${containerPath}`, () => fs.linkSync(source.success.hostPath, hostPath))
            return NOTHING
          }
          case "File": {
            // O_NOFOLLOW | O_EXCL: what was there is gone, so nothing put there since is followed.
            const fd = yield* fileWork(
              `cannot create ${containerPath}`,
              () => fs.openSync(hostPath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600)
            )
            const sink: TarEntrySink<DockerError, never> = {
              write: (chunk) =>
                fileWork(`cannot write ${containerPath}`, () => {
                  let at = 0
                  while (at < chunk.byteLength) at += fs.writeSync(fd, chunk, at)
                }),
              end: Effect.andThen(fileWork(`cannot write ${containerPath}`, () => fs.closeSync(fd)), applyMeta(entry, hostPath))
            }
            return sink
          }
        }
      })

    return readTar(body, onEntry).pipe(
      Effect.andThen(fileWork("cannot set directory times", () => {
        for (const { hostPath, mtime } of directoryTimes.reverse()) fs.utimesSync(hostPath, mtime, mtime)
      })),
      Effect.mapError((error) =>
        error instanceof DockerError
          ? error
          : error instanceof TarFormatError
          ? badRequest(`Error processing tar file: ${error.message}`)
          : internal(`reading the archive: ${String(error)}`, error)
      )
    )
  })
