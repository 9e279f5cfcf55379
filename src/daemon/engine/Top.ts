/**
 * `docker top`, as moby's `daemon/top_unix.go`: the pids of the container's
 * cgroup from containerd (`Tasks.ListPids`), then the host's `ps` with the
 * client's arguments (default `-ef`), its lines kept for those pids only, in
 * its own columns.
 *
 * Unlike dockerd, a process that is still `runc init` (the container's init
 * before it has exec'd its command, right after a start; an exec being set up)
 * is never listed: the listing is taken again until none is left, and one still
 * there at the deadline is left out.
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import { Effect, Result, Schedule } from "effect"
import { type DockerError, internal } from "../DockerError.ts"
import { type Environment, lib, publish, taskOf } from "./Environment.ts"
import type { Entry } from "./Store.ts"

/** What `GET /containers/{id}/top` answers: `ps`'s titles and, per process, its columns. */
export interface TopJson {
  readonly Titles: ReadonlyArray<string>
  readonly Processes: ReadonlyArray<ReadonlyArray<string>>
}

/** How often, and how many times, `top` looks again for a `runc init` among the container's processes to have exec'd (1 s). */
const INIT_POLL = Schedule.spaced("10 millis")
const INIT_POLLS = 100

/**
 * dockerd's check of `ps_args`: a `key=PID...` column rename is refused unless
 * it renames `pid` (the PID column must stay findable).
 */
export const checkPsArgs = (psArgs: string): Result.Result<void, string> => {
  for (const [, key, value] of psArgs.matchAll(/\s+(\S*)=\s*(PID\S*)/g)) {
    if (key !== "pid") return Result.fail(`specifying "${key}=${value}" is not allowed`)
  }
  return Result.void
}

/** Go's `strings.Fields` over ASCII whitespace only, as dockerd splits ps's lines. */
const fields = (line: string) => line.split(/[\t\n\f\r ]+/).filter((field) => field !== "")

/**
 * `ps`'s output kept for `pids` (moby's `parsePSOutput`): the titles from its
 * first line, the PID column found by name, a line's overhanging fields joined
 * into the last column, and thread lines (`-` for a PID, with `-m`) kept after
 * a kept process.
 */
export const parsePsOutput = (output: string, pids: ReadonlyArray<number>): Result.Result<TopJson, string> => {
  const lines = output.split("\n")
  const titles = fields(lines[0] ?? "")
  const pidIndex = titles.indexOf("PID")
  if (pidIndex === -1) return Result.fail("Couldn't find PID field in ps output")
  const processes: Array<ReadonlyArray<string>> = []
  const row = (columns: ReadonlyArray<string>) => [
    ...columns.slice(0, titles.length - 1),
    columns.slice(titles.length - 1).join(" ")
  ]
  let keptLast = false
  for (const line of lines.slice(1)) {
    if (line.length === 0) continue
    const columns = fields(line)
    const pid = columns[pidIndex] ?? ""
    if (pid === "-") {
      if (keptLast) processes.push(row(columns))
      continue
    }
    if (!/^[+-]?\d+$/.test(pid)) return Result.fail(`Unexpected pid '${pid}': strconv.Atoi: parsing "${pid}": invalid syntax`)
    keptLast = pids.includes(Number(pid))
    if (keptLast) processes.push(row(columns))
  }
  // In dockerd's order: its ContainerTopOKBody has Processes first.
  return Result.succeed({ Processes: processes, Titles: titles })
}

/** Whether `pid` is still `runc init` (runc names its stages `runc:[0:PARENT]` … `runc:[2:INIT]`). */
const isRuncInit = (pid: number): boolean => {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, "utf8").startsWith("runc:[")
  } catch {
    return false
  }
}

/** Runs `ps` with `args`; fails with the first line of what it printed on stderr (dockerd's message). */
const ps = (args: ReadonlyArray<string>) =>
  Effect.callback<string, string>((resume) => {
    const child = execFile("ps", args, { timeout: 10_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error === null) return resume(Effect.succeed(stdout))
      const line = stderr.split("\n", 1)[0] ?? ""
      resume(Effect.fail(line.length > 0 ? line : error.message))
    })
    return Effect.sync(() => child.kill())
  })

/** `ps` of the container's processes, with `psArgs` (default `-ef`). */
export const top = (env: Environment, entry: Entry, psArgs: string | undefined): Effect.Effect<TopJson, DockerError> =>
  Effect.gen(function*() {
    const args = psArgs === undefined || psArgs === "" ? "-ef" : psArgs
    const task = yield* taskOf(env, entry)
    const pids = yield* lib(task.pids).pipe(
      Effect.repeat({ schedule: INIT_POLL, times: INIT_POLLS, until: (listed) => !listed.some(isRuncInit) }),
      // Still setting up at the deadline: left out, as it runs nothing of the container's yet.
      Effect.map((listed) => listed.filter((pid) => !isRuncInit(pid)))
    )
    const split = args.split(" ")
    // Some ps options (such as f) cannot be used with -q: dockerd tries again without it.
    const output = yield* ps([...split, `-q${pids.join(",")}`]).pipe(
      Effect.catch(() => ps(split)),
      Effect.mapError((message) => internal(`ps: ${message}`))
    )
    const listing = yield* Result.match(parsePsOutput(output, pids), {
      onSuccess: Effect.succeed,
      onFailure: (message) => Effect.fail(internal(message))
    })
    yield* publish(env, entry, "top")
    return listing
  })
