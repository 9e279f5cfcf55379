/**
 * Builds the shim logger (`logger.c`) for this machine: the program containerd's
 * shim runs for every container logged with `binary://`. It is compiled with the
 * system's C compiler at daemon start, into `<dir>/logger-<hash of the source>`,
 * so a changed source is rebuilt and an unchanged one costs nothing. The shim
 * gives it no environment but CONTAINER_ID and CONTAINER_NAMESPACE; the log
 * root is its one argument, exec'd directly (no shell on the start path).
 * Without a compiler the daemon logs every container through its FIFOs instead
 * (and says so).
 */
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** `logger.c`: beside this module in the sources, under `src/` from the build in `dist/`. */
const sourceOf = (): string | undefined => {
  const here = path.dirname(fileURLToPath(import.meta.url))
  return [path.join(here, "logger.c"), path.join(here, "..", "..", "..", "src", "daemon", "logger.c")].find((file) =>
    fs.existsSync(file)
  )
}

const compile = (source: string, output: string) =>
  Effect.callback<void, string>((resume) => {
    // Built beside the output and renamed into place, so a half-written binary is never run.
    const partial = `${output}.${process.pid}.tmp`
    const child = execFile("cc", ["-O2", "-o", partial, source], (error, _stdout, stderr) => {
      try {
        if (error !== null) throw new Error(stderr || error.message)
        fs.renameSync(partial, output)
        resume(Effect.void)
      } catch (cause) {
        fs.rmSync(partial, { force: true })
        resume(Effect.fail(cause instanceof Error ? cause.message : String(cause)))
      }
    })
    return Effect.sync(() => {
      child.kill()
      fs.rmSync(partial, { force: true })
    })
  })

/**
 * The shim logger (a program for `Stdio.binary`, given the log root as its
 * argument), built under `dir`; `undefined` when it cannot be built here.
 */
export const buildShimLogger = (dir: string): Effect.Effect<string | undefined> =>
  Effect.gen(function*() {
    const source = sourceOf()
    if (source === undefined) {
      yield* Effect.logWarning("logger.c is missing: containers' output goes through the daemon's FIFOs")
      return undefined
    }
    const hash = crypto.createHash("sha256").update(fs.readFileSync(source)).digest("hex").slice(0, 12)
    const binary = path.join(dir, `logger-${hash}`)
    fs.mkdirSync(dir, { recursive: true })
    // Loggers built from older sources are no longer run by new containers; running shims keep theirs open.
    for (const file of fs.readdirSync(dir)) {
      if (file.startsWith("logger-") && path.join(dir, file) !== binary) fs.rmSync(path.join(dir, file), { force: true })
    }
    if (!fs.existsSync(binary)) {
      const built = yield* Effect.result(compile(source, binary))
      if (built._tag === "Failure") {
        yield* Effect.logWarning(
          `could not compile the shim logger (${built.failure.trim()}): containers' output goes through the daemon's FIFOs`
        )
        return undefined
      }
    }
    return binary
  })
