/**
 * The json-file log: entries cut and written as dockerd's copier and
 * jsonfilelog write them, rotation as its LogFile rotates, and the reader's
 * filters and follow mode. Time comes from the TestClock, except in the follow
 * tests, which wait on the file system for real.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Queue, Stream } from "effect"
import { TestClock } from "effect/testing"
import { makeWriter } from "../../src/daemon/JsonLog.ts"
import { type LogEntry, parseLogTime, readLogs, type ReadOptions } from "../../src/daemon/JsonLogReader.ts"
import { formatDockerTimestamp, MAX_LINE } from "../../src/daemon/JsonLogFile.ts"

// 2026-12-02T03:04:05Z
const T0 = Date.UTC(2026, 11, 2, 3, 4, 5)

const bytes = (text: string) => new TextEncoder().encode(text)
const text = (data: Uint8Array) => Buffer.from(data).toString("utf8")

const tempLog = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "jsonlog-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => path.join(dir, "c-json.log")))

const rawLines = (file: string): Array<string> => fs.readFileSync(file, "utf8").split("\n").filter((line) => line !== "")

/** The stored entries as [stream, log] pairs. */
const stored = (file: string): Array<[string, string]> =>
  rawLines(file).map((line) => {
    const entry = JSON.parse(line) as { log: string; stream: string }
    return [entry.stream, entry.log]
  })

const read = (options: Omit<ReadOptions, "stdout" | "stderr"> & { readonly stdout?: boolean; readonly stderr?: boolean }) =>
  Stream.runCollect(readLogs({ stdout: true, stderr: true, ...options })).pipe(
    Effect.map((entries) => entries.map((entry): [string, string] => [entry.stream, text(entry.log)]))
  )

describe("JsonLog writer", () => {
  it.effect("cuts output into lines across chunks, keeping each newline", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      yield* TestClock.adjust(Duration.nanos(123_456_789n))
      const file = yield* tempLog
      const writer = yield* makeWriter({ path: file })
      yield* writer.write("stdout", bytes("hel"))
      yield* writer.write("stdout", bytes("lo\nwor"))
      assert.deepStrictEqual(stored(file), [["stdout", "hello\n"]])
      yield* writer.write("stdout", bytes("ld\nagain\n\nta"))
      yield* writer.write("stdout", bytes("il"))
      yield* writer.close
      // What is left when the writer closes is written without a newline.
      assert.deepStrictEqual(stored(file), [
        ["stdout", "hello\n"],
        ["stdout", "world\n"],
        ["stdout", "again\n"],
        ["stdout", "\n"],
        ["stdout", "tail"]
      ])
      assert.strictEqual(rawLines(file)[0], `{"log":"hello\\n","stream":"stdout","time":"2026-12-02T03:04:05.123456789Z"}`)
      // Closed: later output is dropped.
      yield* writer.write("stdout", bytes("late\n"))
      assert.strictEqual(rawLines(file).length, 5)
    }))

  it.effect("writes a line that reaches 16 KiB without a newline as an entry of its own", () =>
    Effect.gen(function*() {
      const file = yield* tempLog
      const writer = yield* makeWriter({ path: file })
      yield* writer.write("stdout", bytes("a".repeat(MAX_LINE + 100)))
      assert.deepStrictEqual(stored(file), [["stdout", "a".repeat(MAX_LINE)]])
      yield* writer.write("stdout", bytes("b\n"))
      // Exactly 16 KiB before the newline: dockerd's buffer is full before it sees it.
      yield* writer.write("stdout", bytes(`${"c".repeat(MAX_LINE)}\n`))
      // Partial lines count across chunks.
      yield* writer.write("stdout", bytes("d".repeat(10_000)))
      yield* writer.write("stdout", bytes("d".repeat(10_000)))
      yield* writer.close
      assert.deepStrictEqual(stored(file), [
        ["stdout", "a".repeat(MAX_LINE)],
        ["stdout", `${"a".repeat(100)}b\n`],
        ["stdout", "c".repeat(MAX_LINE)],
        ["stdout", "\n"],
        ["stdout", "d".repeat(MAX_LINE)],
        ["stdout", "d".repeat(20_000 - MAX_LINE)]
      ])
    }))

  it.effect("keeps stdout and stderr apart, each with its own partial line", () =>
    Effect.gen(function*() {
      const file = yield* tempLog
      const writer = yield* makeWriter({ path: file })
      yield* writer.write("stdout", bytes("out "))
      yield* writer.write("stderr", bytes("err\n"))
      yield* writer.write("stdout", bytes("line\n"))
      yield* writer.write("stderr", bytes("no newline"))
      yield* writer.write("stdout", bytes("also none"))
      yield* writer.close
      assert.deepStrictEqual(stored(file), [
        ["stderr", "err\n"],
        ["stdout", "out line\n"],
        ["stdout", "also none"],
        ["stderr", "no newline"]
      ])
      assert.deepStrictEqual(yield* read({ path: file, stderr: false }), [
        ["stdout", "out line\n"],
        ["stdout", "also none"]
      ])
      assert.deepStrictEqual(yield* read({ path: file, stdout: false }), [
        ["stderr", "err\n"],
        ["stderr", "no newline"]
      ])
    }))

  it.effect("stores times as Go's RFC3339Nano and strings with Go's escaping", () =>
    Effect.gen(function*() {
      const nanos = BigInt(T0) * 1_000_000n
      assert.strictEqual(formatDockerTimestamp(nanos + 123_456_789n), "2026-12-02T03:04:05.123456789Z")
      assert.strictEqual(formatDockerTimestamp(nanos + 120_000_000n), "2026-12-02T03:04:05.120000000Z")
      assert.strictEqual(formatDockerTimestamp(nanos), "2026-12-02T03:04:05.000000000Z")
      assert.strictEqual(parseLogTime("2026-12-02T03:04:05.123456789Z"), nanos + 123_456_789n)
      assert.strictEqual(parseLogTime("2026-12-02T03:04:05.12Z"), nanos + 120_000_000n)
      assert.strictEqual(parseLogTime("2026-12-02T05:04:05+02:00"), nanos)
      assert.strictEqual(parseLogTime("yesterday"), undefined)

      const file = yield* tempLog
      const writer = yield* makeWriter({ path: file })
      yield* TestClock.setTime(T0 + 120)
      yield* writer.write("stdout", bytes("<a & b>\t\"q\" \\ \u2028\u00e9\r\n"))
      yield* TestClock.setTime(T0 + 1000)
      yield* writer.write("stderr", new Uint8Array([0xff, 0x41, 0x0a]))
      yield* writer.close
      // Byte for byte what dockerd writes: the fraction's trailing zeros dropped, a whole second without one.
      // (Invalid UTF-8 becomes U+FFFD, stored as the character where dockerd writes `\ufffd`.)
      assert.deepStrictEqual(rawLines(file), [
        `{"log":"\\u003ca \\u0026 b\\u003e\\u0009\\"q\\" \\\\ \\u2028\u00e9\\r\\n","stream":"stdout","time":"2026-12-02T03:04:05.12Z"}`,
        `{"log":"\ufffdA\\n","stream":"stderr","time":"2026-12-02T03:04:06Z"}`
      ])
      const entries = yield* Stream.runCollect(readLogs({ path: file, stdout: true, stderr: true }))
      assert.deepStrictEqual(entries.map((entry) => [entry.time, entry.timeMs, entry.timeNanos, text(entry.log)]), [
        ["2026-12-02T03:04:05.12Z", T0 + 120, nanos + 120_000_000n, "<a & b>\t\"q\" \\ \u2028\u00e9\r\n"],
        ["2026-12-02T03:04:06Z", T0 + 1000, nanos + 1_000_000_000n, "\ufffdA\n"]
      ])
    }))

  it.effect("rotates as dockerd: x.log → x.log.1 → x.log.2, at most maxFiles files", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const file = yield* tempLog
      // Every entry `line-NN\n` at a whole second is the same size; three fit in a file.
      const entrySize = Buffer.byteLength(`{"log":"line-00\\n","stream":"stdout","time":"2026-12-02T03:04:05Z"}\n`)
      const writer = yield* makeWriter({ path: file, maxSize: 3 * entrySize, maxFiles: 3 })
      const line = (i: number) => `line-${String(i).padStart(2, "0")}\n`
      // Ten in one chunk (rotating within it), then one at a time.
      yield* writer.write("stdout", bytes(Array.from({ length: 10 }, (_, i) => line(i)).join("")))
      for (let i = 10; i < 20; i++) yield* writer.write("stdout", bytes(line(i)))
      yield* writer.close

      const dir = path.dirname(file)
      assert.deepStrictEqual(fs.readdirSync(dir).sort(), ["c-json.log", "c-json.log.1", "c-json.log.2"])
      const logs = (name: string) => stored(path.join(dir, name)).map(([, log]) => log)
      assert.deepStrictEqual(logs("c-json.log.2"), [line(12), line(13), line(14)])
      assert.deepStrictEqual(logs("c-json.log.1"), [line(15), line(16), line(17)])
      assert.deepStrictEqual(logs("c-json.log"), [line(18), line(19)])
      for (const name of fs.readdirSync(dir)) assert.isAtMost(fs.statSync(path.join(dir, name)).size, 3 * entrySize)
      // Read back oldest first, nothing lost within the kept files.
      const all = yield* read({ path: file })
      assert.deepStrictEqual(all.map(([, log]) => log), Array.from({ length: 8 }, (_, i) => line(12 + i)))
    }))

  it.effect("truncates in place with maxFiles 1", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const file = yield* tempLog
      const entrySize = Buffer.byteLength(`{"log":"line-0\\n","stream":"stdout","time":"2026-12-02T03:04:05Z"}\n`)
      const writer = yield* makeWriter({ path: file, maxSize: 3 * entrySize })
      yield* writer.write("stdout", bytes("line-0\n"))
      const inode = fs.statSync(file).ino
      for (let i = 1; i < 7; i++) yield* writer.write("stdout", bytes(`line-${i}\n`))
      yield* writer.close
      assert.deepStrictEqual(fs.readdirSync(path.dirname(file)), ["c-json.log"])
      assert.strictEqual(fs.statSync(file).ino, inode)
      assert.deepStrictEqual(stored(file), [["stdout", "line-6\n"]])
    }))

  it.effect("rejects options dockerd rejects, and an unwritable path", () =>
    Effect.gen(function*() {
      const file = yield* tempLog
      const noFiles = yield* Effect.exit(makeWriter({ path: file, maxFiles: 0 }))
      assert.isTrue(Exit.isFailure(noFiles))
      const noSize = yield* Effect.exit(makeWriter({ path: file, maxSize: 0 }))
      assert.isTrue(Exit.isFailure(noSize))
      fs.writeFileSync(path.join(path.dirname(file), "plain"), "")
      const error = yield* Effect.flip(makeWriter({ path: path.join(path.dirname(file), "plain", "x.log") }))
      assert.strictEqual(error._tag, "JsonLogError")
    }))
})

describe("JsonLog reader", () => {
  // Six entries a second apart, alternating stdout and stderr, over several rotated files.
  const sixEntries = Effect.gen(function*() {
    yield* TestClock.setTime(T0)
    const file = yield* tempLog
    const entrySize = Buffer.byteLength(`{"log":"e0\\n","stream":"stdout","time":"2026-12-02T03:04:05Z"}\n`)
    const writer = yield* makeWriter({ path: file, maxSize: 2 * entrySize, maxFiles: 10 })
    for (let i = 0; i < 6; i++) {
      yield* writer.write(i % 2 === 0 ? "stdout" : "stderr", bytes(`e${i}\n`))
      yield* TestClock.adjust(Duration.seconds(1))
    }
    yield* writer.close
    assert.strictEqual(fs.readdirSync(path.dirname(file)).length, 3)
    return file
  })
  const logsOf = (entries: ReadonlyArray<[string, string]>) => entries.map(([, log]) => log.trim())

  it.effect("tail counts the last entries after the stream filter, across rotated files", () =>
    Effect.gen(function*() {
      const file = yield* sixEntries
      assert.deepStrictEqual(logsOf(yield* read({ path: file })), ["e0", "e1", "e2", "e3", "e4", "e5"])
      assert.deepStrictEqual(logsOf(yield* read({ path: file, tail: 2 })), ["e4", "e5"])
      assert.deepStrictEqual(logsOf(yield* read({ path: file, tail: 3 })), ["e3", "e4", "e5"])
      assert.deepStrictEqual(logsOf(yield* read({ path: file, tail: 2, stderr: false })), ["e2", "e4"])
      assert.deepStrictEqual(logsOf(yield* read({ path: file, tail: 100 })), ["e0", "e1", "e2", "e3", "e4", "e5"])
      assert.deepStrictEqual(logsOf(yield* read({ path: file, tail: 0 })), [])
      assert.deepStrictEqual(logsOf(yield* read({ path: file, tail: -1 })).length, 6)
    }))

  it.effect("since and until bound the entries by time, both inclusive", () =>
    Effect.gen(function*() {
      const file = yield* sixEntries
      assert.deepStrictEqual(logsOf(yield* read({ path: file, since: T0 + 2000 })), ["e2", "e3", "e4", "e5"])
      assert.deepStrictEqual(logsOf(yield* read({ path: file, since: T0 + 1500 })), ["e2", "e3", "e4", "e5"])
      assert.deepStrictEqual(logsOf(yield* read({ path: file, until: T0 + 3000 })), ["e0", "e1", "e2", "e3"])
      assert.deepStrictEqual(logsOf(yield* read({ path: file, since: T0 + 1000, until: T0 + 4000, tail: 2 })), ["e3", "e4"])
      assert.deepStrictEqual(logsOf(yield* read({ path: file, since: T0 + 4000, tail: 5 })), ["e4", "e5"])
      assert.deepStrictEqual(logsOf(yield* read({ path: file, since: T0 + 9000 })), [])
    }))

  it.effect("skips malformed lines and a half-written last line", () =>
    Effect.gen(function*() {
      const file = yield* tempLog
      const entry = (log: string, stream: string, time: string) => JSON.stringify({ log, stream, time })
      fs.writeFileSync(
        file,
        [
          entry("first\n", "stdout", "2026-12-02T03:04:05.1Z"),
          "garbage",
          "",
          entry("x\n", "stdin", "2026-12-02T03:04:05.2Z"),
          entry("y\n", "stdout", "yesterday"),
          "{}",
          // dockerd's own lines may carry attrs.
          `{"log":"second\\n","stream":"stderr","attrs":{"tag":"t"},"time":"2026-12-02T03:04:05.3Z"}`,
          `{"log":"torn`
        ].join("\n")
      )
      assert.deepStrictEqual(yield* read({ path: file }), [["stdout", "first\n"], ["stderr", "second\n"]])
      assert.deepStrictEqual(yield* read({ path: file, tail: 1 }), [["stderr", "second\n"]])
      assert.deepStrictEqual(yield* read({ path: file, tail: 5 }), [["stdout", "first\n"], ["stderr", "second\n"]])
    }))

  it.effect("a missing log is empty", () =>
    Effect.gen(function*() {
      const file = yield* tempLog
      assert.deepStrictEqual(yield* read({ path: file }), [])
      assert.deepStrictEqual(yield* read({ path: file, tail: 3 }), [])
    }))
})

describe("JsonLog follow", () => {
  const within = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.timeout(effect, "5 seconds")

  /** Follows `file` into a queue of log texts; the fiber ends with the stream. */
  const follow = (options: Omit<ReadOptions, "stdout" | "stderr">) =>
    Effect.gen(function*() {
      const received = yield* Queue.unbounded<string>()
      const fiber = yield* readLogs({ stdout: true, stderr: true, follow: true, ...options }).pipe(
        Stream.runForEach((entry: LogEntry) => Queue.offer(received, text(entry.log))),
        Effect.forkScoped
      )
      return { fiber, next: within(Queue.take(received)), rest: Queue.clear(received) }
    })

  it.live("emits appended entries, completes a torn line, and ends after done", () =>
    Effect.gen(function*() {
      const file = yield* tempLog
      const writer = yield* makeWriter({ path: file })
      yield* writer.write("stdout", bytes("one\n"))
      const done = yield* Deferred.make<void>()
      const { fiber, next, rest } = yield* follow({ path: file, done: Deferred.await(done) })
      assert.strictEqual(yield* next, "one\n")
      yield* writer.write("stderr", bytes("two\nthr"))
      assert.strictEqual(yield* next, "two\n")
      // A line written in two halves is emitted once it is whole.
      const line = `{"log":"half and half\\n","stream":"stdout","time":"2026-12-02T03:04:05Z"}\n`
      fs.appendFileSync(file, line.slice(0, 20))
      yield* Effect.sleep("250 millis")
      fs.appendFileSync(file, line.slice(20))
      assert.strictEqual(yield* next, "half and half\n")
      yield* writer.write("stderr", bytes("ee"))
      yield* writer.close
      yield* Deferred.succeed(done, undefined)
      yield* within(Fiber.join(fiber))
      assert.deepStrictEqual(yield* rest, ["three"])
    }))

  it.live("follows across rotations, and catches up on several at once", () =>
    Effect.gen(function*() {
      const file = yield* tempLog
      const entrySize = Buffer.byteLength(`{"log":"r00\\n","stream":"stdout","time":"2026-12-02T03:04:05.123456789Z"}\n`)
      const writer = yield* makeWriter({ path: file, maxSize: 2 * entrySize, maxFiles: 3 })
      const done = yield* Deferred.make<void>()
      const { fiber, next, rest } = yield* follow({ path: file, done: Deferred.await(done) })
      const line = (i: number) => `r${String(i).padStart(2, "0")}\n`
      for (let i = 0; i < 9; i++) {
        yield* writer.write("stdout", bytes(line(i)))
        assert.strictEqual(yield* next, line(i))
      }
      // Three rotations in one write: the file the follower holds is deleted, two more are rotated past it.
      yield* writer.write("stdout", bytes(Array.from({ length: 6 }, (_, i) => line(9 + i)).join("")))
      const burst: Array<string> = []
      for (let i = 0; i < 6; i++) burst.push(yield* next)
      assert.deepStrictEqual(burst, Array.from({ length: 6 }, (_, i) => line(9 + i)))
      yield* writer.close
      yield* Deferred.succeed(done, undefined)
      yield* within(Fiber.join(fiber))
      assert.deepStrictEqual(yield* rest, [])
    }))

  it.live("waits for a missing file, and starts over when it is truncated in place (maxFiles 1)", () =>
    Effect.gen(function*() {
      const file = yield* tempLog
      // Started before the file exists: it waits for it.
      const { next } = yield* follow({ path: file })
      yield* Effect.sleep("200 millis")
      const entrySize = Buffer.byteLength(`{"log":"t0\\n","stream":"stdout","time":"2026-12-02T03:04:05.123456789Z"}\n`)
      const writer = yield* makeWriter({ path: file, maxSize: 3 * entrySize })
      for (let i = 0; i < 7; i++) {
        yield* writer.write("stdout", bytes(`t${i}\n`))
        assert.strictEqual(yield* next, `t${i}\n`)
      }
    }))

  it.live("stops once until has passed", () =>
    Effect.gen(function*() {
      const file = yield* tempLog
      const writer = yield* makeWriter({ path: file })
      yield* writer.write("stdout", bytes("before\n"))
      const { fiber, rest } = yield* follow({ path: file, until: Date.now() + 300 })
      yield* within(Fiber.join(fiber))
      assert.deepStrictEqual(yield* rest, ["before\n"])
    }))
})
