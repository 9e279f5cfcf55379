/**
 * The Dockerfile shell lexer: quotes, escapes and `$VAR` / `${VAR}` /
 * `${VAR:-word}` / `${VAR:+word}` / `${VAR?msg}` / `${VAR:?msg}` expansion
 * from an environment, as dockerd 20.10's builder (buildkit's
 * `frontend/dockerfile/shell`) applies it to ENV, LABEL, EXPOSE, USER,
 * VOLUME and WORKDIR of `docker import/commit --change`. Nothing is run: it
 * is text substitution only, with dockerd's messages for bad input.
 */
import { Result } from "effect"

/** Go's `strconv.Quote` for the messages dockerd quotes input in (`%q`). */
export const goQuote = (text: string): string => {
  let out = "\""
  for (const c of text) {
    const code = c.codePointAt(0)!
    if (c === "\"" || c === "\\") out += `\\${c}`
    else if (c === "\n") out += "\\n"
    else if (c === "\t") out += "\\t"
    else if (c === "\r") out += "\\r"
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, "0")}`
    else out += c
  }
  return `${out}"`
}

const EOF = ""
const isSpace = (c: string) => /^\s$/u.test(c)
const isLetterOrDigit = (c: string) => /^[\p{L}\p{Nd}]$/u.test(c)

/** The first value of NAME in `env` (dockerd looks the first one up), and whether it is there. */
const lookup = (env: ReadonlyArray<string>, name: string): { readonly value: string; readonly found: boolean } => {
  for (const entry of env) {
    const eq = entry.indexOf("=")
    if (eq < 0) {
      if (entry === name) return { value: "", found: true }
    } else if (entry.slice(0, eq) === name) {
      return { value: entry.slice(eq + 1), found: true }
    }
  }
  return { value: "", found: false }
}
/** One pass over a word: the expanded text and the same split into words after expansion, or the lexer's message. */
const lex = (
  source: string,
  env: ReadonlyArray<string>
): Result.Result<{ readonly word: string; readonly words: ReadonlyArray<string> }, string> => {
  const chars = [...source]
  let pos = 0
  // The first failure: every step returns at once after it is set.
  let failure: string | undefined
  const fail = (message: string): string => {
    failure ??= message
    return ""
  }
  const peek = () => chars[pos] ?? EOF
  const next = () => chars[pos++] ?? EOF

  const name = (): string => {
    let out = ""
    while (peek() !== EOF) {
      const c = peek()
      // A name starting with a digit is that one digit (`$1`).
      if (out === "" && /^\p{Nd}$/u.test(c)) return next()
      if (!isLetterOrDigit(c) && c !== "_") break
      out += next()
    }
    return out
  }

  const unset = (variable: string, word: string, why: string) =>
    fail(`${variable}: ${word === "" ? `is not allowed to be ${why}` : word}`)

  /** The word up to the closing brace of a `${...}`. */
  const argument = (): string => {
    const word = stopOn("}").word
    if (failure !== undefined && peek() === EOF) failure = "syntax error: missing '}'"
    return word
  }

  const dollar = (): string => {
    next()
    if (peek() !== "{") {
      const variable = name()
      return variable === "" ? "$" : lookup(env, variable).value
    }
    next()
    if (peek() === EOF) return fail("syntax error: missing '}'")
    if (peek() === "{" || peek() === "}" || peek() === ":") return fail("syntax error: bad substitution")
    const variable = name()
    const c = next()
    if (c === "}") return lookup(env, variable).value
    if (c === "?") {
      const word = argument()
      if (failure !== undefined) return ""
      const { found, value } = lookup(env, variable)
      return found ? value : unset(variable, word, "unset")
    }
    if (c !== ":") return fail("missing ':' in substitution")
    const modifier = next()
    const word = argument()
    if (failure !== undefined) return ""
    const { found, value } = lookup(env, variable)
    switch (modifier) {
      case "+":
        return value === "" ? value : word
      case "-":
        return value === "" ? word : value
      case "?":
        return !found ? unset(variable, word, "unset") : value === "" ? unset(variable, word, "empty") : value
      default:
        return fail(`unsupported modifier (${modifier}) in substitution`)
    }
  }

  const singleQuote = (): string => {
    next()
    let out = ""
    for (let c = next(); c !== "'"; c = next()) {
      if (c === EOF) return fail("unexpected end of statement while looking for matching single-quote")
      out += c
    }
    return out
  }

  const doubleQuote = (): string => {
    next()
    let out = ""
    for (let c = peek(); c !== "\""; c = peek()) {
      if (c === EOF) return fail("unexpected end of statement while looking for matching double-quote")
      if (c === "$") {
        out += dollar()
        if (failure !== undefined) return ""
        continue
      }
      let ch = next()
      if (ch === "\\") {
        // Inside double quotes only ", $ and \ are escaped; a \ at the end is dropped.
        if (peek() === EOF) continue
        if (["\"", "$", "\\"].includes(peek())) ch = next()
      }
      out += ch
    }
    next()
    return out
  }

  function stopOn(stop: string): { word: string; words: ReadonlyArray<string> } {
    let result = ""
    const words: Array<string> = []
    let word = ""
    const addChar = (c: string) => {
      if (!isSpace(c)) word += c
      else if (word !== "") {
        words.push(word)
        word = ""
      }
    }
    const done = () => ({ word: result, words: word === "" ? words : [...words, word] })
    while (peek() !== EOF) {
      const c = peek()
      if (stop !== EOF && c === stop) {
        next()
        return done()
      }
      if (c === "'" || c === "\"" || c === "$") {
        const text = c === "'" ? singleQuote() : c === "\"" ? doubleQuote() : dollar()
        if (failure !== undefined) return done()
        result += text
        // An expansion is split into words; quoted text is one word, spaces and all.
        if (c === "$") for (const ch of text) addChar(ch)
        else word += text
        continue
      }
      let ch = next()
      if (ch === "\\") {
        ch = next()
        if (ch === EOF) break
        word += ch
      } else {
        addChar(ch)
      }
      result += ch
    }
    if (stop !== EOF) fail(`unexpected end of statement while looking for matching ${stop}`)
    return done()
  }

  const out = stopOn(EOF)
  return failure === undefined ? Result.succeed(out) : Result.fail(`failed to process ${goQuote(source)}: ${failure}`)
}

/** A word with its quotes and escapes removed and its variables expanded (dockerd's `ProcessWord`). */
export const processWord = (source: string, env: ReadonlyArray<string>): Result.Result<string, string> =>
  Result.map(lex(source, env), (out) => out.word)

/** The same, split into words after expansion (dockerd's `ProcessWords`, EXPOSE's). */
export const processWords = (source: string, env: ReadonlyArray<string>): Result.Result<ReadonlyArray<string>, string> =>
  Result.map(lex(source, env), (out) => out.words)
