/**
 * containerd's identifier rule, for container, exec, snapshot and namespace ids:
 * alphanumeric runs joined by single `.`, `_` or `-`, 1 to 76 characters
 * (containerd's `identifiers.Validate`). Checked before any call so that bad
 * input fails with a message saying what is allowed, not with a remote error.
 * Also Docker's short form of an id or digest, as its CLI and messages print it.
 */
import { Effect, Schema } from "effect"
import { type ContainerdError, invalidArgument } from "./ContainerdError.ts"

/** The pattern containerd enforces. */
export const IdentifierPattern = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/

/** The longest identifier containerd accepts. */
export const MaxIdentifierLength = 76

/** An identifier that containerd will accept. */
export const Identifier = Schema.String.check(
  Schema.isMaxLength(MaxIdentifierLength),
  Schema.isPattern(IdentifierPattern)
)

/**
 * Checks `value` against the rule, failing with `InvalidArgument` that names the
 * operation, what kind of id it is, the value and the rule.
 */
export const validateIdentifier = (
  method: string,
  kind: string,
  value: string
): Effect.Effect<string, ContainerdError> =>
  Schema.is(Identifier)(value)
    ? Effect.succeed(value)
    : Effect.fail(
      invalidArgument(
        method,
        `invalid ${kind} ${JSON.stringify(value)}: must be 1 to ${MaxIdentifierLength} characters of ` +
          `letters and digits, separated by single '.', '_' or '-'`
      )
    )

/** Docker's short id: the first 12 hex digits of an id or digest (`sha256:` or any algorithm prefix dropped). */
export const shortId = (id: string): string => id.slice(id.indexOf(":") + 1, id.indexOf(":") + 13)
