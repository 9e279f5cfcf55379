/**
 * Composite keys for caches, maps and shared work: several strings joined into
 * one, and split back in a cache's lookup.
 *
 * Effect's `Cache` and a `Map` compare keys by value only for primitives, so a
 * key made of parts (namespace, name, digest, ...) is one string. The parts are
 * joined with NUL, which no namespace, reference, digest or id may contain, so
 * two different tuples never make the same key.
 */

const SEPARATOR = "\u0000"

/** One key for a tuple of parts (numbers are written in decimal). */
export const compositeKey = (...parts: ReadonlyArray<string | number>): string => parts.join(SEPARATOR)

/** The parts of a key made by `compositeKey`, as strings. */
export const keyParts = (key: string): ReadonlyArray<string> => key.split(SEPARATOR)
