/**
 * The `changes` of `docker import` and `docker commit` (`--change 'CMD ["sh"]'`):
 * Dockerfile instructions applied to an image's runtime config, as dockerd
 * 20.10's `dockerfile.BuildFromConfig` applies them. Only the instructions
 * that change the config are allowed (its `validCommitCommands`): CMD,
 * ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, USER, VOLUME, WORKDIR;
 * any other is "<name> is not a valid change command". (Later dockerds also
 * allow STOPSIGNAL; 20.10, the reference here, refuses it, and so do we.)
 *
 * dockerd fails at the first problem of four passes, in this order, and so do
 * we, with its messages: the Dockerfile parser over every line (continuations,
 * comments, flags, JSON forms, ENV/LABEL pairs), the check of the instruction
 * names, each instruction's arguments and flags, then each instruction applied
 * in turn (variables expanded from the Env so far by `ShellWords.ts`, EXPOSE's
 * port specs, WORKDIR's path). Pure: the result or dockerd's message, before
 * anything is stored.
 */
import { Result } from "effect"
import * as net from "node:net"
import * as path from "node:path"
import type { ContainerDefaults } from "../../domain/Image.ts"
import { goQuote, processWord, processWords } from "./ShellWords.ts"

const VALID = new Set(["cmd", "entrypoint", "env", "expose", "healthcheck", "label", "onbuild", "user", "volume", "workdir"])
const DEFAULT_SHELL = ["/bin/sh", "-c"]

type Check<A> = Result.Result<A, string>
const fail = <A = never>(message: string): Check<A> => Result.fail(message)

/** Dockerfile lines: continuations joined (skipping comment and blank lines inside them), comments and blanks dropped. */
const logicalLines = (changes: ReadonlyArray<string>): ReadonlyArray<string> => {
  const out: Array<string> = []
  let pending: string | undefined
  for (const raw of changes.join("\n").split("\n")) {
    const line = raw.replace(/\r$/, "")
    if (/^\s*#/.test(line) || (pending !== undefined && line.trim() === "")) continue
    const continued = /\\\s*$/.test(line)
    const text = (pending ?? "") + (continued ? line.replace(/\\\s*$/, "") : line)
    if (continued) {
      pending = text
      continue
    }
    pending = undefined
    if (text.trim() !== "") out.push(text)
  }
  if (pending !== undefined && pending.trim() !== "") out.push(pending)
  return out
}

/** The exec form: the first JSON value of `rest` when it starts with `[` (Go's decoder ignores what follows it). */
const jsonForm = (rest: string): Check<ReadonlyArray<string> | undefined> => {
  const text = rest.trimStart()
  if (!text.startsWith("[")) return Result.succeed(undefined)
  for (let end = text.indexOf("]"); end !== -1; end = text.indexOf("]", end + 1)) {
    const parsed = Result.try(() => JSON.parse(text.slice(0, end + 1)) as unknown)
    if (Result.isFailure(parsed) || !Array.isArray(parsed.success)) continue
    const values: ReadonlyArray<unknown> = parsed.success
    return values.every((v) => typeof v === "string")
      ? Result.succeed(values as ReadonlyArray<string>)
      : fail("when using JSON array syntax, arrays must be comprised of strings only")
  }
  return Result.succeed(undefined)
}

/** Words as the parser splits them: on unquoted whitespace, quotes and escapes kept (buildkit's `parseWords`). */
const parserWords = (text: string): ReadonlyArray<string> => {
  const out: Array<string> = []
  let word = ""
  let quote: string | undefined
  let quoted = false
  const chars = [...text]
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!
    if (quote === undefined && /\s/.test(c)) {
      if (word !== "" || quoted) out.push(word)
      word = ""
      quoted = false
      continue
    }
    if (c === "\\" && quote !== "'") {
      if (i + 1 === chars.length) continue
      word += c + chars[++i]!
      continue
    }
    if (quote === undefined && (c === "\"" || c === "'")) {
      quote = c
      quoted = true
    } else if (quote === c) {
      quote = undefined
    }
    word += c
  }
  if (word !== "" || quoted) out.push(word)
  return out
}

type Pair = readonly [key: string, value: string]

/** ENV and LABEL: `key=value` pairs, or the legacy `key value` (buildkit's `parseNameVal`), unexpanded. */
const nameValues = (instruction: string, rest: string): Check<ReadonlyArray<Pair>> => {
  const words = parserWords(rest)
  if (words.length === 0) return Result.succeed([])
  if (!words[0]!.includes("=")) {
    const [key = "", value] = rest.split(/\s+(.*)/s)
    return value === undefined ? fail(`${instruction} must have two arguments`) : Result.succeed([[key, value]])
  }
  const pairs: Array<Pair> = []
  for (const word of words) {
    const eq = word.indexOf("=")
    if (eq === -1) return fail(`Syntax error - can't find = in ${goQuote(word)}. Must be of the form: name=value`)
    pairs.push([word.slice(0, eq), word.slice(eq + 1)])
  }
  return Result.succeed(pairs)
}

/** One line, parsed as the Dockerfile parser does. */
interface Line {
  readonly instruction: string
  readonly flags: ReadonlyArray<string>
  readonly rest: string
  readonly original: string
  readonly pairs: ReadonlyArray<Pair>
  readonly json: ReadonlyArray<string> | undefined
}

/** The first pass: a line's instruction, flags and arguments, or the parser's message. */
const parseLine = (original: string): Check<Line> => {
  const [word = "", after = ""] = original.trim().split(/\s+(.*)/s)
  const instruction = word.toLowerCase()
  const flags: Array<string> = []
  let rest = after.trim()
  for (let flag = /^--\S*/.exec(rest); flag !== null; flag = /^--\S*/.exec(rest)) {
    rest = rest.slice(flag[0].length).trimStart()
    if (flag[0] === "--") break
    flags.push(flag[0])
  }
  const line = { instruction, flags, rest, original, pairs: [] as ReadonlyArray<Pair>, json: undefined }
  switch (instruction) {
    case "env":
    case "label":
      return Result.map(nameValues(instruction.toUpperCase(), rest), (pairs) => ({ ...line, pairs }))
    case "cmd":
    case "entrypoint":
    case "run":
    case "shell":
    case "volume":
    case "add":
    case "copy":
      return Result.map(jsonForm(rest), (json) => ({ ...line, json }))
    case "healthcheck":
      return Result.map(jsonForm(rest.replace(/^\S+\s*/, "")), (json) => ({ ...line, json }))
    case "onbuild":
      return rest === "" ? Result.succeed(line) : Result.map(parseLine(rest), () => line)
    default:
      return Result.succeed(line)
  }
}

/** Go's `time.ParseDuration`, in nanoseconds. */
const goDuration = (text: string): Check<number> => {
  const units: Readonly<Record<string, number>> = { ns: 1, us: 1e3, "µs": 1e3, "μs": 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 }
  const invalid = fail<number>(`time: invalid duration ${goQuote(text)}`)
  let s = /^[-+]/.test(text) ? text.slice(1) : text
  const sign = text.startsWith("-") ? -1 : 1
  if (s === "0") return Result.succeed(0)
  if (s === "") return invalid
  let total = 0
  while (s !== "") {
    const number = /^(\d*)(?:\.(\d*))?/.exec(s)!
    if (number[1] === "" && (number[2] ?? "") === "") return invalid
    s = s.slice(number[0].length)
    const unit = /^[^\d.]*/.exec(s)![0]
    if (unit === "") return fail(`time: missing unit in duration ${goQuote(text)}`)
    const scale = units[unit]
    if (scale === undefined) return fail(`time: unknown unit ${goQuote(unit)} in duration ${goQuote(text)}`)
    s = s.slice(unit.length)
    total += Number(`${number[1] || "0"}.${number[2] ?? ""}`) * scale
    if (total > 2 ** 63 - 1) return invalid
  }
  return Result.succeed(sign * Math.floor(total))
}

/** HEALTHCHECK's flags and type, as dockerd's `parseHealthcheck`. */
const healthcheck = (line: Line): Check<unknown> => {
  const [kind = "", args = ""] = line.rest.split(/\s+(.*)/s)
  const type = kind.toUpperCase()
  if (type === "NONE") return args.trim() === "" ? Result.succeed({ Test: ["NONE"] }) : fail("HEALTHCHECK NONE takes no arguments")
  const values = new Map<string, string>()
  for (const flag of line.flags) {
    const [name = "", value] = flag.slice(2).split(/=(.*)/s)
    if (!["interval", "timeout", "start-period", "retries"].includes(name)) return fail(`Unknown flag: ${name}`)
    if (values.has(name)) return fail(`Duplicate flag specified: ${name}`)
    if (value === undefined) return fail(`Missing a value on flag: ${name}`)
    values.set(name, value)
  }
  const command = line.json ?? (args.trim() === "" ? [] : [args.trim()])
  if (type !== "CMD") return fail(`Unknown type ${goQuote(type)} in HEALTHCHECK (try CMD)`)
  if (command.length === 0) return fail("Missing command after HEALTHCHECK CMD")
  const config: Record<string, unknown> = { Test: [line.json === undefined ? "CMD-SHELL" : "CMD", ...command] }
  for (const [flag, field] of [["interval", "Interval"], ["timeout", "Timeout"], ["start-period", "StartPeriod"]] as const) {
    const value = values.get(flag) ?? ""
    if (value === "") continue
    const ns = goDuration(value)
    if (Result.isFailure(ns)) return ns
    if (ns.success < 1e6) return fail(`Interval ${goQuote(flag)} cannot be less than 1ms`)
    config[field] = ns.success
  }
  const retries = values.get("retries") ?? ""
  if (retries !== "") {
    if (!/^[-+]?\d+$/.test(retries)) return fail(`strconv.ParseInt: parsing ${goQuote(retries)}: invalid syntax`)
    const count = Number(retries)
    if (count > 2 ** 31 - 1 || count < -(2 ** 31)) return fail(`strconv.ParseInt: parsing ${goQuote(retries)}: value out of range`)
    if (count < 1) return fail(`--retries must be at least 1 (not ${count})`)
    config["Retries"] = count
  }
  return Result.succeed(config)
}

/** The third pass: an instruction's flags and arguments checked (dockerd's `instructions.ParseCommand`). */
const checkLine = (line: Line): Check<unknown> => {
  const { instruction, rest } = line
  const name = instruction.toUpperCase()
  const noFlags = line.flags.length === 0 ? Result.succeed(undefined) : fail(`Unknown flag: ${line.flags[0]!.slice(2).split("=")[0]}`)
  const exactlyOne = rest === "" ? fail(`${name} requires exactly one argument`) : noFlags
  switch (instruction) {
    case "env":
    case "label":
      if (line.flags.length > 0) return noFlags
      if (line.pairs.length === 0) return fail(`${name} requires at least one argument`)
      return line.pairs.some(([key]) => key === "") ? fail(`${name} names can not be blank`) : Result.succeed(undefined)
    case "expose":
      return rest === "" ? fail("EXPOSE requires at least one argument") : noFlags
    case "healthcheck":
      return rest === "" ? fail("HEALTHCHECK requires at least one argument") : healthcheck(line)
    case "onbuild": {
      if (rest === "") return fail("ONBUILD requires at least one argument")
      if (line.flags.length > 0) return noFlags
      const trigger = rest.split(/\s+/)[0]!.toUpperCase()
      if (trigger === "ONBUILD") return fail("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
      if (trigger === "MAINTAINER" || trigger === "FROM") return fail(`${trigger} isn't allowed as an ONBUILD trigger`)
      return Result.succeed(undefined)
    }
    case "user":
    case "workdir":
      return exactlyOne
    case "volume": {
      const volumes = line.json ?? (rest === "" ? [] : rest.split(/\s+/))
      if (volumes.length === 0) return fail("VOLUME requires at least one argument")
      if (line.flags.length > 0) return noFlags
      return volumes.some((v) => v.trim() === "") ? fail("VOLUME specified can not be an empty string") : Result.succeed(undefined)
    }
    default:
      return noFlags
  }
}

/** Go's `net.SplitHostPort(ip + ":")` and `net.ParseIP`, for the IP part of a port spec. */
const checkIp = (raw: string): Check<undefined> => {
  const hostport = `${raw}:`
  const addressError = (why: string) => fail<undefined>(`Invalid ip address ${raw}: address ${hostport}: ${why}`)
  let host: string
  if (hostport.startsWith("[")) {
    const end = hostport.indexOf("]")
    if (end === -1) return addressError("missing ']' in address")
    if (end + 1 !== hostport.length - 1) return addressError(end + 1 === hostport.length ? "missing port in address" : "too many colons in address")
    host = hostport.slice(1, end)
  } else {
    host = hostport.slice(0, -1)
    if (host.includes(":")) return addressError("too many colons in address")
  }
  if (/[[\]]/.test(host)) return addressError(`unexpected '${host.includes("[") ? "[" : "]"}' in address`)
  return host !== "" && net.isIP(host) === 0 ? fail(`Invalid ip address: ${host}`) : Result.succeed(undefined)
}

/** Go's `nat.ParsePortRange`: `80` or `8000-8002`, each a 16-bit number. */
const portRange = (text: string): readonly [number, number] | undefined => {
  const uint16 = (s: string | undefined) => s !== undefined && /^\d+$/.test(s) && Number(s) <= 65535 ? Number(s) : undefined
  if (!text.includes("-")) {
    const port = uint16(text)
    return port === undefined ? undefined : [port, port]
  }
  const [first, last] = text.split("-")
  const start = uint16(first)
  const end = uint16(last)
  return start === undefined || end === undefined || end < start ? undefined : [start, end]
}

/** Go's `nat.ParsePortSpec` as EXPOSE uses it: `[ip:][hostPort:]port[-port][/proto]`, the container ports as `port/proto`. */
const portSpec = (raw: string): Check<ReadonlyArray<string>> => {
  const parts = raw.split(":")
  const last = parts.length - 1
  const ip = parts.length >= 3 ? parts.slice(0, last - 1).join(":") : ""
  const hostPort = parts.length >= 2 ? parts[last - 1]! : ""
  const [portText = "", proto = ""] = parts[last]!.split("/")
  const containerPort = portText === "" ? "" : portText
  const protocol = portText === "" ? "" : proto === "" ? "tcp" : proto
  const ipOk = checkIp(ip)
  if (Result.isFailure(ipOk)) return fail(ipOk.failure)
  if (containerPort === "") return fail(`No port specified: ${raw}<empty>`)
  const ports = portRange(containerPort)
  if (ports === undefined) return fail(`Invalid containerPort: ${containerPort}`)
  const hosts = hostPort === "" ? [0, 0] : portRange(hostPort)
  if (hosts === undefined) return fail(`Invalid hostPort: ${hostPort}`)
  if (hostPort !== "" && ports[1] - ports[0] !== hosts[1] - hosts[0] && ports[1] !== ports[0]) {
    return fail(`Invalid ranges specified for container and host Ports: ${containerPort} and ${hostPort}`)
  }
  if (!["tcp", "udp", "sctp"].includes(protocol.toLowerCase())) return fail(`Invalid proto: ${protocol}`)
  const out: Array<string> = []
  for (let port = ports[0]; port <= ports[1]; port++) out.push(`${port}/${protocol.toLowerCase()}`)
  return Result.succeed(out)
}

/** Every result, or the first failure. */
const all = <A, B>(items: ReadonlyArray<A>, f: (item: A) => Check<B>): Check<ReadonlyArray<B>> => {
  const out: Array<B> = []
  for (const item of items) {
    const result = f(item)
    if (Result.isFailure(result)) return fail(result.failure)
    out.push(result.success)
  }
  return Result.succeed(out)
}

/** The fourth pass: one instruction applied to the config, its words expanded from the Env so far. */
const dispatch = (
  config: ContainerDefaults,
  line: Line,
  checked: unknown,
  cmdSet: boolean
): Check<ContainerDefaults> => {
  const env = config.Env ?? []
  const word = (text: string) => processWord(text, env)
  const shell = config.Shell && config.Shell.length > 0 ? config.Shell : DEFAULT_SHELL
  const commandLine = line.json ?? (line.rest === "" ? [] : [line.rest])
  const resolved = line.json === undefined ? [...shell, ...commandLine] : commandLine
  switch (line.instruction) {
    case "cmd":
      return Result.succeed({ ...config, Cmd: resolved })
    case "entrypoint":
      // As the builder: an ENTRYPOINT resets the Cmd, unless a CMD of these changes set it.
      return Result.succeed({ ...config, Entrypoint: commandLine.length === 0 ? null : resolved, ...(cmdSet ? {} : { Cmd: null }) })
    case "env":
    case "label":
      return Result.map(all(line.pairs, ([key, value]) =>
        Result.flatMap(word(key), (k) => Result.map(word(value), (v): Pair => [k, v]))), (pairs) => {
        if (line.instruction === "label") return { ...config, Labels: { ...config.Labels, ...Object.fromEntries(pairs) } }
        const vars = [...env]
        for (const [key, value] of pairs) {
          const at = vars.findIndex((v) => v.split("=", 1)[0] === key)
          if (at === -1) vars.push(`${key}=${value}`)
          else vars[at] = `${key}=${value}`
        }
        return { ...config, Env: vars }
      })
    case "expose": {
      const expanded = all(line.rest.split(/\s+/), (port) => Result.flatMap(word(port), (w) => processWords(w, env)))
      const ports = Result.flatMap(expanded, (words) => all(words.flat(), portSpec))
      // An EXPOSE of nothing (an empty variable) leaves the config as it was: Go's omitempty drops the empty set.
      return Result.map(ports, (found) =>
        found.flat().length === 0 ? config : {
          ...config,
          ExposedPorts: { ...config.ExposedPorts, ...Object.fromEntries(found.flat().map((p) => [p, {}])) }
        })
    }
    case "healthcheck":
      return Result.succeed({ ...config, Healthcheck: checked })
    case "onbuild":
      return Result.succeed({ ...config, OnBuild: [...(config.OnBuild ?? []), line.original.replace(/^\s*ONBUILD\s*/i, "")] })
    case "user":
      return Result.map(word(line.rest), (user) => ({ ...config, User: user }))
    case "volume":
      return Result.flatMap(all(line.json ?? line.rest.split(/\s+/), (v) => word(v.trim())), (volumes) =>
        volumes.includes("")
          ? fail("VOLUME specified can not be an empty string")
          : Result.succeed({ ...config, Volumes: { ...config.Volumes, ...Object.fromEntries(volumes.map((v) => [v, {}])) } }))
    case "workdir":
      return Result.flatMap(word(line.rest), (dir) =>
        dir === ""
          ? fail("cannot normalize nothing")
          : Result.succeed({
            ...config,
            WorkingDir: dir.startsWith("/") ? dir : path.posix.join("/", config.WorkingDir ?? "", dir)
          }))
    default:
      return Result.succeed(config)
  }
}

/**
 * `config` with `changes` applied, or dockerd 20.10's message for the first bad
 * one. No changes: the config as it is.
 */
export const applyChanges = (config: ContainerDefaults, changes: ReadonlyArray<string>): Check<ContainerDefaults> => {
  if (changes.length === 0) return Result.succeed(config)
  const texts = logicalLines(changes)
  if (texts.length === 0) return fail("file with no instructions")
  const lines = all(texts, parseLine)
  if (Result.isFailure(lines)) return fail(lines.failure)
  const invalid = lines.success.find((line) => !VALID.has(line.instruction))
  if (invalid !== undefined) return fail(`${invalid.instruction} is not a valid change command`)
  const checked = all(lines.success, checkLine)
  if (Result.isFailure(checked)) return fail(checked.failure)
  let next = config
  let cmdSet = false
  for (const [i, line] of lines.success.entries()) {
    const applied = dispatch(next, line, checked.success[i], cmdSet)
    if (Result.isFailure(applied)) return applied
    next = applied.success
    if (line.instruction === "cmd" && (line.json ?? (line.rest === "" ? [] : [line.rest])).length > 0) cmdSet = true
  }
  return Result.succeed(next)
}
