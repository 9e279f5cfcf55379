#!/usr/bin/env node
// The `effect-containerd` command's entry. It checks the Node.js version before
// anything else is loaded: the daemon's modules need a newer Node than some
// distributions ship, and on an older one they would fail with a stack trace
// instead of saying why. Plain JavaScript of a syntax every Node parses.
import { createRequire } from "node:module"

const wanted = createRequire(import.meta.url)("../package.json").engines.node
const [major, minor] = process.versions.node.split(".").map(Number)
const [wantedMajor, wantedMinor] = wanted.replace(/^>=\s*/, "").split(".").map(Number)
if (major < wantedMajor || (major === wantedMajor && minor < (wantedMinor || 0))) {
  process.stderr.write(`effect-containerd needs Node.js ${wanted}; this is Node.js v${process.versions.node} (${process.execPath})\n`)
  process.exit(1)
}
await import("../dist/src/daemon/main.js")
