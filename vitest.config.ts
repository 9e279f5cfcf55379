import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/globalSetup.ts"],
    // Tests against the real containerd start shims and containers.
    testTimeout: 60_000,
    hookTimeout: 60_000
  }
})
