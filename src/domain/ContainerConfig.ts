/**
 * How a container's process comes out of its image and the caller's overrides,
 * exactly as Docker does it:
 *
 * - `mergeWithImage` is moby's `merge`: the caller's User, Env, Entrypoint/Cmd and
 *   WorkingDir win; the image fills the gaps. A caller's Entrypoint replaces the
 *   image's and drops the image's Cmd; an explicitly empty Entrypoint clears it.
 *   The caller's Env comes first, then every image variable the caller did not set.
 * - `processEnv` is moby's `CreateDaemonEnvironment`: PATH, HOSTNAME and (with a
 *   TTY) TERM=xterm as defaults, replaced in place or extended by the container's
 *   variables; a variable given without `=` removes the default.
 * - `resolveUser` is runc's `GetExecUser` as Docker calls it: "user", "uid",
 *   "user:group" and the other forms, looked up in the container's /etc/passwd and
 *   /etc/group; the additional groups are the primary gid, then the groups that
 *   list the user (only when no group is given).
 */
import { Result } from "effect"
import type { ContainerDefaults } from "./Image.ts"
import { DEFAULT_PATH, type User } from "./OciSpec.ts"

/** What the caller may override. `undefined` means "as the image says". */
export interface ProcessOverrides {
  readonly entrypoint?: ReadonlyArray<string> | undefined
  readonly cmd?: ReadonlyArray<string> | undefined
  readonly env?: ReadonlyArray<string> | undefined
  readonly workingDir?: string | undefined
  readonly user?: string | undefined
}

/** The merged process, before the daemon's defaults and user lookup. */
export interface MergedProcess {
  readonly args: ReadonlyArray<string>
  /** The container's own variables (caller's first, then the image's). */
  readonly env: ReadonlyArray<string>
  readonly workingDir: string
  /** A user spec still to resolve, e.g. "app", "1000:1000", "" (root). */
  readonly user: string
}

const keyOf = (variable: string) => {
  const i = variable.indexOf("=")
  return i === -1 ? variable : variable.slice(0, i)
}

const isEmptyEntrypoint = (entrypoint: ReadonlyArray<string>) =>
  entrypoint.length === 0 || (entrypoint.length === 1 && entrypoint[0] === "")

/**
 * moby's `merge` of the Env lists: the caller's as given (bare names and repeats
 * kept), then every image variable whose name the caller did not use.
 */
export const mergeEnv = (imageEnv: ReadonlyArray<string>, userEnv: ReadonlyArray<string>): ReadonlyArray<string> => {
  if (userEnv.length === 0) return [...imageEnv]
  const userKeys = new Set(userEnv.map(keyOf))
  return [...userEnv, ...imageEnv.filter((v) => !userKeys.has(keyOf(v)))]
}

const HEALTH_FIELDS = ["Test", "Interval", "Timeout", "StartPeriod", "Retries"] as const

const objectOf = (value: unknown): Readonly<Record<string, unknown>> | undefined =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? value as Readonly<Record<string, unknown>> : undefined

/**
 * moby's `merge` of the Healthcheck: the caller's, with each field it left unset (no Test,
 * a zero duration or retry count) taken from the base's (the image's, or a committed
 * container's); the base's whole when the caller has none; undefined when neither has one.
 */
export const mergeHealthcheck = (user: unknown, base: unknown): Readonly<Record<string, unknown>> | undefined => {
  const own = objectOf(user)
  const inherited = objectOf(base)
  if (inherited === undefined || own === undefined) return own ?? inherited
  const unset = (value: unknown) => value === undefined || value === null || value === 0 || (Array.isArray(value) && value.length === 0)
  return Object.fromEntries([
    ...Object.entries(own),
    ...HEALTH_FIELDS.flatMap((field) => unset(own[field]) && inherited[field] !== undefined ? [[field, inherited[field]] as const] : [])
  ])
}

/** moby's `merge` of a container config with its image's, for the process fields. */
export const mergeWithImage = (
  image: ContainerDefaults | null | undefined,
  overrides: ProcessOverrides
): Result.Result<MergedProcess, string> => {
  const user = overrides.user !== undefined && overrides.user !== "" ? overrides.user : image?.User ?? ""

  const env = mergeEnv(image?.Env ?? [], overrides.env ?? [])

  let entrypoint = overrides.entrypoint
  let cmd = overrides.cmd
  if (entrypoint === undefined || isEmptyEntrypoint(entrypoint)) {
    if (cmd === undefined || cmd.length === 0) cmd = image?.Cmd ?? []
    if (entrypoint === undefined) entrypoint = image?.Entrypoint ?? []
  }
  const args = [...(isEmptyEntrypoint(entrypoint) ? [] : entrypoint), ...(cmd ?? [])]
  if (args.length === 0) {
    return Result.fail("no command: the image has no Entrypoint or Cmd, and none was given")
  }

  const workingDir = overrides.workingDir !== undefined && overrides.workingDir !== ""
    ? overrides.workingDir
    : image?.WorkingDir !== undefined && image.WorkingDir !== ""
    ? image.WorkingDir
    : "/"
  if (!workingDir.startsWith("/")) {
    return Result.fail(`the working directory ${JSON.stringify(workingDir)} is invalid, it needs to be an absolute path`)
  }
  return Result.succeed({ args, env, workingDir, user })
}

/**
 * moby's `ReplaceOrAppendEnvValues`: overrides replace defaults in place, new ones
 * are appended (a repeated one keeps its last value, as runc then keeps it).
 * Gotcha: a bare name unsets only a *default* (`["FOO=1", "FOO"]` keeps FOO=1, as dockerd).
 */
export const replaceOrAppendEnv = (
  defaults: ReadonlyArray<string>,
  overrides: ReadonlyArray<string>
): ReadonlyArray<string> => {
  const result: Array<string | undefined> = [...defaults]
  const defaultAt = new Map(defaults.map((v, i) => [keyOf(v), i] as const))
  const index = new Map(defaultAt)
  for (const value of overrides) {
    const key = keyOf(value)
    if (!value.includes("=")) {
      const at = defaultAt.get(key)
      if (at !== undefined) result[at] = undefined
      continue
    }
    const at = index.get(key)
    if (at !== undefined) {
      result[at] = value
    } else {
      index.set(key, result.length)
      result.push(value)
    }
  }
  return result.filter((v): v is string => v !== undefined)
}

/** The environment the process sees: the daemon's defaults, then the container's variables. */
export const processEnv = (
  containerEnv: ReadonlyArray<string>,
  options: { readonly hostname: string; readonly tty: boolean }
): ReadonlyArray<string> =>
  replaceOrAppendEnv(
    [`PATH=${DEFAULT_PATH}`, `HOSTNAME=${options.hostname}`, ...(options.tty ? ["TERM=xterm"] : [])],
    containerEnv
  )

/** A passwd or group file's lines, split on ':' (runc keeps every field as text). */
const records = (file: string | undefined): ReadonlyArray<ReadonlyArray<string>> =>
  file === undefined ? [] : file.split("\n").map((line) => line.trim()).filter((line) => line !== "").map((line) =>
    line.split(":")
  )

const MAX_ID = 2 ** 31 - 1

/** A decimal id as Go's `strconv.Atoi` reads it, or undefined. */
const numeric = (text: string): number | undefined => /^[+-]?\d+$/.test(text) ? Number(text) : undefined

/**
 * Resolves a Docker user spec against the container's /etc/passwd and /etc/group
 * (either may be missing), as runc's `GetExecUser` with Docker's defaults.
 */
export const resolveUser = (
  spec: string,
  files: { readonly passwd?: string | undefined; readonly group?: string | undefined }
): Result.Result<User, string> => {
  const colon = spec.indexOf(":")
  const userArg = colon === -1 ? spec : spec.slice(0, colon)
  const groupArg = colon === -1 ? "" : spec.slice(colon + 1)
  const uidArg = numeric(userArg)
  const gidArg = numeric(groupArg)

  let uid = 0
  let gid = 0
  const passwd = records(files.passwd).map((f) => ({ name: f[0] ?? "", uid: numeric(f[2] ?? ""), gid: numeric(f[3] ?? "") }))
  const matched = passwd.find((u) =>
    userArg === "" ? u.uid === 0 : uidArg !== undefined ? u.uid === uidArg : u.name === userArg
  )
  if (matched !== undefined) {
    uid = matched.uid ?? 0
    gid = matched.gid ?? 0
  } else if (userArg !== "") {
    if (uidArg === undefined) {
      return Result.fail(`unable to find user ${userArg}: no matching entries in passwd file`)
    }
    if (uidArg < 0 || uidArg > MAX_ID) return Result.fail(`user id ${userArg} is out of range`)
    uid = uidArg
  }

  let supplementary: ReadonlyArray<number> = []
  if (groupArg !== "" || matched !== undefined) {
    const groups = records(files.group).map((f) => ({
      name: f[0] ?? "",
      gid: numeric(f[2] ?? ""),
      members: (f[3] ?? "").split(",").filter((m) => m !== "")
    }))
    if (groupArg !== "") {
      const group = groups.find((g) => gidArg !== undefined ? g.gid === gidArg : g.name === groupArg)
      if (group?.gid !== undefined) {
        gid = group.gid
      } else {
        if (gidArg === undefined) {
          return Result.fail(`unable to find group ${groupArg}: no matching entries in group file`)
        }
        if (gidArg < 0 || gidArg > MAX_ID) return Result.fail(`group id ${groupArg} is out of range`)
        gid = gidArg
      }
    } else {
      supplementary = groups.filter((g) => g.members.includes(matched!.name) && g.gid !== undefined).map((g) => g.gid!)
    }
  }
  return Result.succeed({ uid, gid, additionalGids: [gid, ...supplementary] })
}

/**
 * Docker's `GroupAdd`: further supplementary groups, each a group name looked up
 * in the container's /etc/group or a numeric id (as runc's `GetAdditionalGroups`),
 * after the user's own.
 */
export const addGroups = (
  user: User,
  groupAdd: ReadonlyArray<string>,
  groupFile: string | undefined
): Result.Result<User, string> => {
  if (groupAdd.length === 0) return Result.succeed(user)
  const groups = records(groupFile).map((f) => ({ name: f[0] ?? "", gid: numeric(f[2] ?? "") }))
  const added: Array<number> = []
  for (const wanted of groupAdd) {
    const found = groups.find((g) => g.name === wanted || (g.gid !== undefined && String(g.gid) === wanted))
    const gid = found?.gid ?? numeric(wanted)
    if (gid === undefined) return Result.fail(`Unable to find group ${wanted}: no matching entries in group file`)
    if (gid < 0 || gid > MAX_ID) return Result.fail(`group id ${wanted} is out of range`)
    added.push(gid)
  }
  const own = user.additionalGids ?? [user.gid]
  return Result.succeed({ ...user, additionalGids: [...own, ...added.filter((gid) => !own.includes(gid))] })
}
