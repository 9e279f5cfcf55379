/**
 * Image references as Docker writes them: `busybox`, `busybox:1.36`,
 * `ghcr.io/org/app@sha256:…`, `localhost:5000/app:dev`.
 *
 * The grammar is distribution's (`name[:tag][@digest]`, lowercase path
 * components, at most 255 characters of name, 128 of tag); normalisation is
 * Docker's `ParseNormalizedNamed`: a first component without `.` or `:` that is
 * not `localhost` is not a registry, so the image lives on `docker.io`, and a
 * one-component name there is an official image under `library/`. A name with
 * neither tag nor digest gets the tag `latest`. Malformed input fails with
 * `InvalidArgument` naming the input and the rule it broke.
 */
import { Effect, Result } from "effect"
import { type ContainerdError, invalidArgument } from "./ContainerdError.ts"

/** The registry of names that do not name one. */
export const DEFAULT_DOMAIN = "docker.io"
/** The tag of a reference that names neither tag nor digest. */
export const DEFAULT_TAG = "latest"

/** The longest name (domain and path) a registry accepts. */
const NAME_MAX = 255

/** A parsed, normalised image reference. */
export class Reference {
  constructor(
    /** The registry host, with its port if any: `docker.io`, `localhost:5000`. */
    readonly domain: string,
    /** The repository on that registry: `library/busybox`. */
    readonly path: string,
    /** The tag, if the reference names one (always, unless it names a digest). */
    readonly tag: string | undefined,
    /** The digest, if the reference pins one. */
    readonly digest: string | undefined
  ) {}

  /** `domain/path`. */
  get name(): string {
    return `${this.domain}/${this.path}`
  }

  /** What the registry is asked for: the digest when pinned, else the tag. */
  get object(): string {
    return this.digest ?? this.tag ?? DEFAULT_TAG
  }

  /** The full form containerd stores images under: `docker.io/library/busybox:latest`. */
  toString(): string {
    return `${this.name}${this.tag === undefined ? "" : `:${this.tag}`}${this.digest === undefined ? "" : `@${this.digest}`}`
  }

  /** The short form Docker prints: `busybox:latest`, `user/app:1`, `localhost:5000/app:1`. */
  get familiar(): string {
    const path = this.domain === DEFAULT_DOMAIN
      ? this.path.replace(/^library\/(?=[^/]+$)/, "")
      : this.name
    return `${path}${this.tag === undefined ? "" : `:${this.tag}`}${this.digest === undefined ? "" : `@${this.digest}`}`
  }

  /** The same repository with another tag and no digest. */
  withTag(tag: string): Reference {
    return new Reference(this.domain, this.path, tag, undefined)
  }
}

const domainComponent = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
const host = `(?:${domainComponent}(?:\\.${domainComponent})*|\\[[a-fA-F0-9:]+\\])`
const DOMAIN = new RegExp(`^${host}(?::[0-9]+)?$`)
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG = /^[\w][\w.-]{0,127}$/
// A Map: the algorithm comes from the caller, and `constructor` must not find Object's.
const DIGEST_HEX_LENGTH: ReadonlyMap<string, number> = new Map([["sha256", 64], ["sha384", 96], ["sha512", 128]])
const IDENTIFIER = /^[a-f0-9]{64}$/

/** Checks a digest: `sha256:` and 64 lowercase hex digits (or sha384/sha512 and theirs). */
export const digestProblem = (digest: string): string | undefined => {
  const colon = digest.indexOf(":")
  if (colon < 1) return `digest ${JSON.stringify(digest)} must be <algorithm>:<hex>`
  const algorithm = digest.slice(0, colon)
  const length = DIGEST_HEX_LENGTH.get(algorithm)
  if (length === undefined) return `digest algorithm ${JSON.stringify(algorithm)} is not supported (sha256, sha384, sha512)`
  const hex = digest.slice(colon + 1)
  return hex.length === length && /^[a-f0-9]+$/.test(hex)
    ? undefined
    : `digest ${JSON.stringify(digest)} must have ${length} lowercase hex digits`
}

/** Splits `name` into registry and repository as Docker does. */
const splitDomain = (name: string): readonly [string, string] => {
  const slash = name.indexOf("/")
  const first = name.slice(0, slash)
  const isRegistry = slash !== -1 && (/[.:]/.test(first) || first === "localhost" || first.toLowerCase() !== first)
  let [domain, path] = isRegistry ? [first, name.slice(slash + 1)] : [DEFAULT_DOMAIN, name]
  if (domain === "index.docker.io") domain = DEFAULT_DOMAIN
  if (domain === DEFAULT_DOMAIN && !path.includes("/")) path = `library/${path}`
  return [domain, path]
}

/** Parses and normalises a reference, or says what is wrong with it. */
export const parseReferenceResult = (input: string): Result.Result<Reference, string> => {
  if (input === "") return Result.fail("the reference is empty")
  if (IDENTIFIER.test(input)) {
    return Result.fail("a 64-character hexadecimal string is an image ID, not a repository name")
  }
  let rest = input
  let digest: string | undefined
  const at = rest.indexOf("@")
  if (at !== -1) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    const problem = digestProblem(digest)
    if (problem !== undefined) return Result.fail(problem)
  }
  let tag: string | undefined
  const colon = rest.lastIndexOf(":")
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG.test(tag)) {
      return Result.fail(`tag ${JSON.stringify(tag)} must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'`)
    }
  }
  if (rest === "") return Result.fail("the repository name is empty")
  const [domain, path] = splitDomain(rest)
  if (!DOMAIN.test(domain)) return Result.fail(`registry ${JSON.stringify(domain)} is not a valid host[:port]`)
  if (path.toLowerCase() !== path) return Result.fail(`repository name ${JSON.stringify(path)} must be lowercase`)
  for (const component of path.split("/")) {
    if (!PATH_COMPONENT.test(component)) {
      return Result.fail(
        `repository path component ${JSON.stringify(component)} must be lowercase letters and digits ` +
          `separated by '.', '_', '__' or dashes`
      )
    }
  }
  if (domain.length + 1 + path.length > NAME_MAX) {
    return Result.fail(`repository name must not be more than ${NAME_MAX} characters`)
  }
  return Result.succeed(new Reference(domain, path, tag ?? (digest === undefined ? DEFAULT_TAG : undefined), digest))
}

/** Parses and normalises a reference; malformed input fails with `InvalidArgument`. */
export const parseReference = (input: string, method = "Reference.parse"): Effect.Effect<Reference, ContainerdError> =>
  Result.match(parseReferenceResult(input), {
    onSuccess: Effect.succeed,
    onFailure: (problem) => Effect.fail(invalidArgument(method, `invalid reference ${JSON.stringify(input)}: ${problem}`))
  })
