/**
 * Detach keys: the key sequence on an attached client's stdin that detaches it
 * from the container (which keeps running), as Docker does: Ctrl-P Ctrl-Q by
 * default, or what `?detachKeys=` (attach) or `DetachKeys` (exec) names.
 *
 * The sequence is written as moby/term's `ToBytes` reads it: comma-separated
 * keys, each a single character or `ctrl-<x>` (`ctrl-@`, `ctrl-a`..`ctrl-z`,
 * `ctrl-[`, `ctrl-\`, `ctrl-]`, `ctrl-^`, `ctrl-_`), or `DEL`.
 *
 * The scanner is pure: it holds back the bytes of a partial match, and gives
 * them back as they came when the match breaks, so a client typing Ctrl-P then
 * something else sends both keys.
 */
import { Result } from "effect"

/** Docker's default, `ctrl-p,ctrl-q`. */
export const DEFAULT_DETACH_KEYS: Uint8Array = Uint8Array.of(0x10, 0x11)

/** moby/term's names of the control characters, in code order from 0. */
const CONTROL_KEYS = ["@", ..."abcdefghijklmnopqrstuvwxyz", "[", "\\", "]", "^", "_"].map((key) => `ctrl-${key}`)

/** The bytes of a detach key sequence; absent or empty is Docker's default; a bad one is dockerd's 400 message. */
export const parseDetachKeys = (value: string | undefined): Result.Result<Uint8Array, string> => {
  if (value === undefined || value === "") return Result.succeed(DEFAULT_DETACH_KEYS)
  const codes: Array<number> = []
  for (const key of value.split(",")) {
    const control = CONTROL_KEYS.indexOf(key)
    // moby counts bytes: a character outside ASCII is more than one, so not a key.
    const code = key.length === 1 && key.charCodeAt(0) < 0x80
      ? key.charCodeAt(0)
      : control >= 0
      ? control
      : key === "DEL"
      ? 127
      : undefined
    if (code === undefined) return Result.fail(`Invalid detach keys (${value}) provided`)
    codes.push(code)
  }
  return Result.succeed(Uint8Array.from(codes))
}

/** What one chunk of input comes to: the bytes to forward, and whether the sequence completed in it. */
export interface ScanResult {
  readonly forward: Uint8Array
  readonly detached: boolean
}

/** The length of the longest suffix of `held` that is a prefix of `keys` (a match still in progress). */
const pendingMatch = (held: ReadonlyArray<number>, keys: Uint8Array): number => {
  for (let length = Math.min(held.length, keys.length - 1); length > 0; length--) {
    let matches = true
    for (let i = 0; i < length && matches; i++) matches = held[held.length - length + i] === keys[i]
    if (matches) return length
  }
  return 0
}

/**
 * A scanner of a client's input for `keys`: feed it each chunk as it arrives.
 * Bytes that may begin the sequence are held back until the next chunk decides;
 * after a detach, the rest of the chunk is dropped, as Docker stops reading.
 */
export const detachScanner = (keys: Uint8Array): (chunk: Uint8Array) => ScanResult => {
  let held: Array<number> = []
  return (chunk) => {
    const forward: Array<number> = []
    for (const byte of chunk) {
      held.push(byte)
      if (held.length >= keys.length && keys.every((key, i) => held[held.length - keys.length + i] === key)) {
        forward.push(...held.slice(0, held.length - keys.length))
        held = []
        return { forward: Uint8Array.from(forward), detached: true }
      }
      const pending = pendingMatch(held, keys)
      forward.push(...held.slice(0, held.length - pending))
      held = held.slice(held.length - pending)
    }
    return { forward: Uint8Array.from(forward), detached: false }
  }
}
