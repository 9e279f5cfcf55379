import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/globalSetup.ts"],
    // Tests against the real containerd start shims and containers.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two files at a time (each in namespaces of its own on the shared containerd): on this 2-core
    // machine the suite took 475 s one file at a time (with the dockerd halves), 273 s two at a time
    // without dockerd, as CI runs it.
    maxWorkers: 2
  }
})
