/**
 * The shim logger (logger.c), run as the shim runs it: fds 3 and 4 are the
 * container's stdout and stderr, fd 5 closes when it is ready. Its log must be
 * the one the daemon's own writer (JsonLogFile.ts) writes for the same output,
 * entry for entry, and rotate as asked.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { Writable } from "node:stream"
import { Appender, type LogStream } from "../../src/daemon/JsonLogFile.ts"
import { logConfigPath, logPath } from "../../src/daemon/LogFiles.ts"
import { buildShimLogger } from "../../src/daemon/ShimLogger.ts"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "ectr-shimlog-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

type Chunk = readonly [LogStream, Uint8Array]

/** Runs the logger for container `id` on `chunks`, as the shim would (`?<root>`: `root ""`), until it exits. */
const runLogger = (program: string, root: string, id: string, chunks: ReadonlyArray<Chunk>) =>
  Effect.callback<number>((resume) => {
    const child = spawn(program, [root, ""], {
      env: { CONTAINER_ID: id, CONTAINER_NAMESPACE: "test" },
      stdio: ["ignore", "ignore", "inherit", "pipe", "pipe", "pipe"]
    })
    const [, , , stdout, stderr, ready] = child.stdio as unknown as [unknown, unknown, unknown, Writable, Writable, NodeJS.ReadableStream]
    ready.on("data", () => {})
    ready.once("end", () => {
      // Ready: the output as the container would write it, in order, then the ends.
      for (const [stream, data] of chunks) (stream === "stdout" ? stdout : stderr).write(data)
      stdout.end()
      stderr.end()
    })
    child.once("exit", (code) => resume(Effect.succeed(code ?? -1)))
  })

/** Each stream's entries of a log file, the time left out (the two writers run at different moments). */
const entriesOf = (text: string) => {
  const byStream: Record<LogStream, Array<string>> = { stdout: [], stderr: [] }
  for (const line of text.split("\n").filter((l) => l !== "")) {
    const stream = (JSON.parse(line) as { stream: LogStream }).stream
    byStream[stream].push(line.replace(/,"time":"[^"]*"\}$/, "}"))
  }
  return byStream
}

const bytes = (text: string) => new TextEncoder().encode(text)

describe("the shim logger", () => {
  it.live("writes what the daemon's own writer writes, entry for entry", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const root = path.join(dir, "containers")
      const program = yield* buildShimLogger(path.join(dir, "bin"))
      assert.isDefined(program, "the logger builds with the system's C compiler")
      const long = "x".repeat(40 * 1024)
      const chunks: ReadonlyArray<Chunk> = [
        ["stdout", bytes("hello\n")],
        ["stdout", bytes("par")],
        ["stderr", bytes("err\twith <tags> & \"quotes\" \\ and \u2028 \u0001\n")],
        ["stdout", bytes("tial\n")],
        ["stdout", bytes(long.slice(0, 10_000))],
        ["stdout", bytes(`${long.slice(10_000)}\nnext\n`)],
        ["stdout", bytes("x".repeat(16 * 1024) + "\n")],
        ["stderr", new Uint8Array([0x61, 0xff, 0x62, 0xe2, 0x82, 0x63, 0xf0, 0x9f, 0x98, 0x80, 0x0a])],
        ["stdout", bytes("no newline at the end")]
      ]
      assert.strictEqual(yield* runLogger(program!, root, "c1", chunks), 0)

      const reference = path.join(dir, "reference.log")
      const appender = new Appender(reference, -1, 1)
      appender.open()
      chunks.forEach(([stream, data], i) => appender.write(stream, data, BigInt(i)))
      appender.flushPartials(99n)
      appender.closeFile()

      const ours = entriesOf(fs.readFileSync(logPath(root, "c1"), "utf8"))
      const theirs = entriesOf(fs.readFileSync(reference, "utf8"))
      assert.deepStrictEqual(ours, theirs)
      assert.strictEqual(ours.stdout.length, 9)
      assert.match(fs.readFileSync(logPath(root, "c1"), "utf8"), /"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z"\}\n$/)
    }).pipe(Effect.scoped))

  it.live("rotates before a write would pass max-size, keeping max-file files, nothing lost among them", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const root = path.join(dir, "containers")
      const program = yield* buildShimLogger(path.join(dir, "bin"))
      fs.mkdirSync(path.join(root, "c2"), { recursive: true })
      fs.writeFileSync(logConfigPath(root, "c2"), JSON.stringify({ maxSize: 4096, maxFiles: 3 }))
      const lines = Array.from({ length: 500 }, (_, i) => `line ${String(i).padStart(4, "0")}\n`)
      assert.strictEqual(yield* runLogger(program!, root, "c2", lines.map((l) => ["stdout", bytes(l)] as const)), 0)

      const file = logPath(root, "c2")
      const names = [`${file}.2`, `${file}.1`, file]
      for (const name of names) assert.isAtMost(fs.statSync(name).size, 4096)
      assert.isFalse(fs.existsSync(`${file}.3`))
      const kept = names.flatMap((name) =>
        fs.readFileSync(name, "utf8").split("\n").filter((l) => l !== "").map((l) => (JSON.parse(l) as { log: string }).log)
      )
      assert.strictEqual(kept.at(-1), "line 0499\n")
      assert.deepStrictEqual(kept, lines.slice(lines.length - kept.length))
    }).pipe(Effect.scoped))
})
