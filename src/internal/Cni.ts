/**
 * Running CNI plugins as the CNI spec 1.0.0 says a runtime does, without
 * libcni: the plugin `<pluginDir>/<type>` is executed with the CNI_* variables
 * and its network configuration on stdin, and prints a result or an error
 * object. A conflist is run plugin by plugin: ADD in order, each one given the
 * previous one's result as `prevResult`; DEL in reverse with the result cached
 * at ADD (we keep that cache in the attachment record, as libcni keeps
 * `/var/lib/cni/results`), going on past failures so one missing resource does
 * not strand the others.
 *
 * Gotchas: the cached result, not a fresh conflist, must be given to DEL
 * (plugins find what to remove in it), and DEL must run before the netns goes
 * (bridge reads addresses from inside it). Every exec has a deadline; a plugin
 * that says "try again later" (code 11) is retried on a schedule.
 */
import { Duration, Effect, Metric, Option, Schedule, Schema } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { CniError, CniErrorObject, CniResult, CniVersionResult } from "../domain/CniResult.ts"

/** The CNI version we speak; every plugin we run must support it. */
export const CNI_VERSION = "1.0.0"

/** Where plugins are looked for and how long one may run. */
export interface CniOptions {
  /** Searched in order for `<type>`, and passed on as CNI_PATH (for IPAM plugins the main plugin runs). */
  readonly pluginDirs: ReadonlyArray<string>
  /** The deadline of one exec. */
  readonly timeout: Duration.Input
}

/** A plugin's configuration object from a conflist: `type` plus whatever it reads. */
export type PluginConf = { readonly type: string; readonly capabilities?: Record<string, boolean> } & Record<string, unknown>

/** A network configuration list (`.conflist`). */
export interface ConfList {
  readonly cniVersion: string
  readonly name: string
  readonly plugins: ReadonlyArray<PluginConf>
}

/** Who a call is for: the container, its netns and interface, and CNI_ARGS. */
export interface Invocation {
  readonly containerId: string
  readonly netns: string
  readonly ifname: string
  /** `IgnoreUnknown=1;IP=10.0.0.9`; empty for none. */
  readonly args?: string | undefined
  /** Values of capabilities (`portMappings`, ...); a plugin gets only those it declares. */
  readonly capabilityArgs?: Readonly<Record<string, unknown>> | undefined
}

/** Time spent in each plugin exec, by plugin and command (what a container's network costs). */
export const CniExecTime = Metric.timer("effect_containerd_cni_exec", {
  description: "time of one CNI plugin exec, by plugin and command"
})

/** A raw result as a plugin printed it (passed on unchanged as prevResult). */
export type RawResult = Readonly<Record<string, unknown>>

const decodeJson = Schema.decodeUnknownOption(Schema.fromJsonString(Schema.Unknown))
const decodeError = Schema.decodeUnknownOption(CniErrorObject)
const decodeResult = Schema.decodeUnknownOption(CniResult)
const decodeVersion = Schema.decodeUnknownOption(CniVersionResult)

/** The first `<dir>/<type>` that exists. */
export const findPlugin = (options: CniOptions, type: string): Option.Option<string> =>
  Option.fromUndefinedOr(
    options.pluginDirs.map((dir) => path.join(dir, type)).find((file) => fs.existsSync(file))
  )

interface Output {
  readonly status: number | null
  readonly signal: string | null
  readonly stdout: string
  readonly stderr: string
}

const spawnPlugin = (file: string, env: Record<string, string>, stdin: string) =>
  Effect.callback<Output, Error>((resume) => {
    const child = spawn(file, [], { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] })
    const stdout: Array<Buffer> = []
    const stderr: Array<Buffer> = []
    child.stdout.on("data", (chunk: Buffer) => void stdout.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => void stderr.push(chunk))
    // A plugin that exits before reading its stdin must not make an EPIPE an unhandled error.
    child.stdin.on("error", () => {})
    child.on("error", (error) => resume(Effect.fail(error)))
    child.on("close", (status, signal) =>
      resume(Effect.succeed({
        status,
        signal,
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8")
      })))
    child.stdin.end(stdin)
    return Effect.sync(() => void child.kill("SIGKILL"))
  })

/**
 * Runs one plugin once: `command` with `conf` on stdin. Succeeds with the
 * parsed JSON it printed (nothing for DEL/CHECK, which print nothing), fails
 * with its error object, or with code -1 when it could not be run, was killed
 * by the deadline or printed something unreadable.
 */
export const exec = (
  options: CniOptions,
  command: "ADD" | "DEL" | "CHECK" | "VERSION",
  conf: Readonly<Record<string, unknown>> & { readonly type: string },
  invocation: Invocation
): Effect.Effect<Option.Option<unknown>, CniError> => {
  const plugin = conf.type
  const fail = (msg: string, code = -1, details?: string) => new CniError({ plugin, command, code, msg, details })
  const file = findPlugin(options, plugin)
  if (Option.isNone(file)) {
    return Effect.fail(fail(`no plugin ${plugin} in ${options.pluginDirs.join(", ")}`))
  }
  const env = {
    CNI_COMMAND: command,
    CNI_CONTAINERID: invocation.containerId,
    CNI_NETNS: invocation.netns,
    CNI_IFNAME: invocation.ifname,
    CNI_ARGS: invocation.args ?? "",
    CNI_PATH: options.pluginDirs.join(":")
  }
  return spawnPlugin(file.value, env, JSON.stringify(conf)).pipe(
    Effect.mapError((cause) => fail(`could not run ${file.value}: ${cause.message}`)),
    Effect.timeoutOrElse({
      duration: options.timeout,
      orElse: () => Effect.fail(fail(`did not answer within ${Duration.format(Duration.fromInputUnsafe(options.timeout))}`))
    }),
    Effect.flatMap((output) => {
      const json = output.stdout.trim() === "" ? Option.none() : decodeJson(output.stdout)
      if (output.status !== 0) {
        const error = Option.flatMap(json, decodeError)
        if (Option.isSome(error)) return Effect.fail(fail(error.value.msg, error.value.code, error.value.details))
        const why = output.signal ? `killed by ${output.signal}` : `exit status ${output.status}`
        return Effect.fail(fail(`${why}: ${(output.stderr || output.stdout).trim().slice(0, 500)}`))
      }
      if (output.stdout.trim() !== "" && Option.isNone(json)) {
        return Effect.fail(fail(`printed no JSON: ${output.stdout.trim().slice(0, 200)}`))
      }
      return Effect.succeed(json)
    }),
    Effect.trackDuration(Metric.withAttributes(CniExecTime, { plugin, command }))
  )
}

/** What a plugin of a list is given: its object, the list's name and version, prevResult, its capabilities' values. */
export const pluginInput = (
  list: ConfList,
  plugin: PluginConf,
  invocation: Invocation,
  prevResult: RawResult | undefined
): Readonly<Record<string, unknown>> & { readonly type: string } => {
  const runtimeConfig: Record<string, unknown> = {}
  for (const [capability, declared] of Object.entries(plugin.capabilities ?? {})) {
    const value = invocation.capabilityArgs?.[capability]
    if (declared && value !== undefined) runtimeConfig[capability] = value
  }
  return {
    ...plugin,
    cniVersion: list.cniVersion,
    name: list.name,
    ...(prevResult === undefined ? {} : { prevResult }),
    ...(Object.keys(runtimeConfig).length === 0 ? {} : { runtimeConfig })
  }
}

/** 50 ms doubling, five times: for a plugin that said "try again later". */
const tryAgainSchedule = Schedule.exponential("50 millis")

const withTryAgain = <A>(effect: Effect.Effect<A, CniError>) =>
  effect.pipe(Effect.retry({ schedule: tryAgainSchedule, times: 5, while: (error) => error.isTryAgain }))

const asResult = (plugin: string, output: Option.Option<unknown>): Effect.Effect<RawResult, CniError> =>
  Option.isSome(output) && Option.isSome(decodeResult(output.value))
    ? Effect.succeed(output.value as RawResult)
    : Effect.fail(new CniError({ plugin, command: "ADD", code: -1, msg: "printed no CNI result" }))

/** A failed ADD of a list, with the result of the plugins before the one that failed (what DEL needs to clean). */
export interface AddFailure {
  readonly error: CniError
  readonly prevResult: RawResult | undefined
}

/**
 * ADDs each plugin of `list` in order, each given the previous result.
 * Succeeds with the last result; fails with the error and the partial result,
 * so the caller can DEL the whole list with it.
 */
export const addList = (
  options: CniOptions,
  list: ConfList,
  invocation: Invocation
): Effect.Effect<RawResult, AddFailure> =>
  Effect.gen(function*() {
    let prevResult: RawResult | undefined
    for (const plugin of list.plugins) {
      const current = prevResult
      prevResult = yield* withTryAgain(
        exec(options, "ADD", pluginInput(list, plugin, invocation, current), invocation).pipe(
          Effect.flatMap((output) => asResult(plugin.type, output))
        )
      ).pipe(Effect.mapError((error): AddFailure => ({ error, prevResult: current })))
    }
    // An empty list has no result to give; callers never build one.
    return prevResult ?? { cniVersion: list.cniVersion }
  })

/**
 * DELs each plugin of `list` in reverse order, each given `prevResult` (the
 * cached ADD result). Every plugin is called even when one fails; the first
 * failure is returned after all of them ran.
 */
export const delList = (
  options: CniOptions,
  list: ConfList,
  invocation: Invocation,
  prevResult: RawResult | undefined
): Effect.Effect<void, CniError> =>
  Effect.gen(function*() {
    let first: CniError | undefined
    for (const plugin of [...list.plugins].reverse()) {
      const outcome = yield* withTryAgain(
        exec(options, "DEL", pluginInput(list, plugin, invocation, prevResult), invocation)
      ).pipe(Effect.result)
      if (outcome._tag === "Failure") first ??= outcome.failure
    }
    if (first !== undefined) return yield* first
  })

/** CHECKs each plugin of `list` in order with the cached result. */
export const checkList = (
  options: CniOptions,
  list: ConfList,
  invocation: Invocation,
  prevResult: RawResult
): Effect.Effect<void, CniError> =>
  Effect.forEach(
    list.plugins,
    (plugin) => withTryAgain(exec(options, "CHECK", pluginInput(list, plugin, invocation, prevResult), invocation)),
    { discard: true }
  )

/** Fails unless plugin `type` exists and supports CNI 1.0.0 (VERSION, as libcni's `GetVersionInfo`). */
export const checkVersion = (options: CniOptions, type: string): Effect.Effect<void, CniError> =>
  exec(options, "VERSION", { cniVersion: CNI_VERSION, type }, { containerId: "", netns: "", ifname: "" }).pipe(
    Effect.flatMap((output) => {
      const version = Option.flatMap(output, decodeVersion)
      if (Option.isSome(version) && version.value.supportedVersions.includes(CNI_VERSION)) return Effect.void
      const found = Option.isSome(version) ? version.value.supportedVersions.join(", ") : "no version list"
      return Effect.fail(
        new CniError({
          plugin: type,
          command: "VERSION",
          code: -1,
          msg: `${Option.getOrElse(findPlugin(options, type), () => type)} supports ${found}, not CNI ${CNI_VERSION}`
        })
      )
    })
  )
