/**
 * How benchmarks report: a titled table of figures on stdout, and the same
 * figures as one JSON line (prefixed "bench-json ") for scripts that collect them.
 * Benchmarks report; they never assert timings.
 */
import { Console, Effect } from "effect"

/** One measured figure. */
export interface Figure {
  readonly name: string
  readonly value: number
  readonly unit: string
}

/** Milliseconds between two `performance.now()` readings, to two decimals. */
export const millisBetween = (start: number, end: number): number => Math.round((end - start) * 100) / 100

/** The p-th percentile (0–100) of a list of numbers. */
export const percentile = (values: ReadonlyArray<number>, p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN
}

/** Prints a benchmark's figures. */
export const report = (title: string, figures: ReadonlyArray<Figure>): Effect.Effect<void> =>
  Effect.gen(function*() {
    yield* Console.log(`\n${title}`)
    const width = Math.max(...figures.map((f) => f.name.length))
    for (const f of figures) yield* Console.log(`  ${f.name.padEnd(width)}  ${f.value} ${f.unit}`)
    yield* Console.log(`bench-json ${JSON.stringify({ title, figures })}`)
  })
