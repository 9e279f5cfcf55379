/**
 * Signals as callers write them ("SIGTERM", "term", "15", 9, "RTMIN+3") turned
 * into the number containerd's Kill takes, checked before any call so a typo
 * fails with a message instead of signalling something else.
 */
import { Effect } from "effect"
import * as os from "node:os"
import { type ContainerdError, invalidArgument } from "./ContainerdError.ts"

const SIGRTMIN = 34
const SIGRTMAX = 64

/** A signal by number or by name. */
export type Signal = number | string

const byName: ReadonlyMap<string, number> = new Map(Object.entries(os.constants.signals))

/** The signal's number, if it is one Linux knows. */
export const signalNumber = (signal: Signal): number | undefined => {
  if (typeof signal === "number") return Number.isInteger(signal) && signal >= 1 && signal <= SIGRTMAX ? signal : undefined
  const text = signal.trim().toUpperCase()
  if (/^\d+$/.test(text)) return signalNumber(Number(text))
  const name = text.startsWith("SIG") ? text : `SIG${text}`
  const realtime = /^SIGRT(MIN|MAX)([+-]\d+)?$/.exec(name)
  if (realtime !== null) {
    const n = (realtime[1] === "MIN" ? SIGRTMIN : SIGRTMAX) + Number(realtime[2] ?? 0)
    return n >= SIGRTMIN && n <= SIGRTMAX ? n : undefined
  }
  return byName.get(name)
}

/** The signal's number, or InvalidArgument naming it. */
export const parseSignal = (method: string, signal: Signal): Effect.Effect<number, ContainerdError> => {
  const n = signalNumber(signal)
  return n === undefined
    ? Effect.fail(invalidArgument(method, `invalid signal ${JSON.stringify(signal)}: use a name such as SIGTERM or a number from 1 to ${SIGRTMAX}`))
    : Effect.succeed(n)
}
