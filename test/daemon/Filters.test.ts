/**
 * Docker's filter matching: Go's regexp and `path.Match` syntax, both matched in
 * linear time; moby's `MatchKVList` for labels, own keys only.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import { globFilter, matchLabels, regexpFilter } from "../../src/daemon/Filters.ts"

const matches = (compiled: ReturnType<typeof regexpFilter>, text: string) => Result.getOrThrow(compiled).test(text)

describe("Filters", () => {
  it("a pattern that backtracks exponentially in JavaScript matches in linear time", () => {
    const pattern = Result.getOrThrow(regexpFilter("name", "^(a+)+$"))
    const started = performance.now()
    // JavaScript's RegExp takes about a minute on 30 `a`s and a `b`, doubling with each `a`.
    assert.isFalse(pattern.test(`${"a".repeat(5000)}b`))
    assert.isTrue(pattern.test("a".repeat(5000)))
    assert.isBelow(performance.now() - started, 500)
  })

  it("regexps are Go's (RE2): its syntax, unanchored, and its error messages", () => {
    assert.isTrue(matches(regexpFilter("name", "(?P<word>pl)ai"), "/plain"))
    assert.isTrue(matches(regexpFilter("name", "^/pl"), "/plain"))
    assert.isFalse(matches(regexpFilter("name", "^pl$"), "plain"))
    // Go's \z, not JavaScript's: RE2 has no lookahead.
    assert.isTrue(matches(regexpFilter("name", "in\\z"), "plain"))
    assert.deepStrictEqual(regexpFilter("name", "("), Result.fail("invalid filter 'name=(': error parsing regexp: missing closing ): `(`"))
    assert.deepStrictEqual(
      regexpFilter("name", "(?=a)"),
      Result.fail("invalid filter 'name=(?=a)': error parsing regexp: invalid or unsupported Perl syntax: `(?=`")
    )
  })

  // glob, text, whether Go's path.Match matches
  const globs: ReadonlyArray<readonly [string, string, boolean]> = [
    ["busybox:1.*", "busybox:1.36", true],
    ["busybox:*", "busybox:latest", true],
    ["*", "team/app", false],
    ["*/app", "team/app", true],
    ["busybox:1.3?", "busybox:1.36", true],
    ["busybox:1.3?", "busybox:1.3", false],
    ["busybox:1.3[0-9]", "busybox:1.36", true],
    ["busybox:1.3[^0-9]", "busybox:1.36", false],
    ["busybox:[lx]atest", "busybox:latest", true],
    ["busy\\box", "busybox", true],
    ["a[\\-]b", "a-b", true],
    ["a[\\-]b", "a\\b", false],
    // What a RegExp would read as syntax is a literal here.
    ["a.b", "axb", false],
    ["(a|b)+", "(a|b)+", true],
    ["^busybox$", "busybox", false],
    ["^busybox$", "^busybox$", true],
    ["busybox", "busybox:latest", false]
  ]
  for (const [glob, text, expected] of globs) {
    it(`glob ${glob} ${expected ? "matches" : "does not match"} ${text}`, () => {
      assert.strictEqual(matches(globFilter("reference", glob), text), expected)
    })
  }

  it("a malformed glob is refused, as Go's ErrBadPattern", () => {
    for (const glob of ["[", "a[]", "a[-z]", "a[z-]", "a\\", "a[b"]) {
      assert.deepStrictEqual(globFilter("reference", glob), Result.fail(`invalid filter 'reference=${glob}': syntax error in pattern`), glob)
    }
  })

  it("label filters must all hold, and only the labels' own keys count", () => {
    const labels = { app: "web", tier: "" }
    assert.isTrue(matchLabels(undefined, labels))
    assert.isTrue(matchLabels(["app", "app=web", "tier="], labels))
    assert.isFalse(matchLabels(["app", "other"], labels))
    assert.isFalse(matchLabels(["app=db"], labels))
    for (const inherited of ["constructor", "__proto__", "toString", "hasOwnProperty", "constructor=x"]) {
      assert.isFalse(matchLabels([inherited], labels), inherited)
      assert.isFalse(matchLabels([inherited], {}), inherited)
    }
    assert.isTrue(matchLabels(["__proto__=x"], JSON.parse("{\"__proto__\":\"x\"}")))
  })
})
