import { defineConfig } from "vitest/config";

// One vitest project per workspace package (each has its own vitest.config.ts with defineProject).
// Test files mostly wait on real servers and child processes (a full run used ~22% of two cores
// with vitest's default of cores - 1 = one worker), so three files run at once; every test waits
// on events, not on timing. LICHEN_TEST_WORKERS overrides.
export default defineConfig({
  test: {
    maxWorkers: Number(process.env.LICHEN_TEST_WORKERS ?? 3),
    projects: [
      "packages/*/vitest.config.ts",
      "apps/*/vitest.config.ts",
      "tools/*/vitest.config.ts",
    ],
  },
});
