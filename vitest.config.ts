import { defineConfig } from "vitest/config";

// One vitest project per workspace package (each has its own vitest.config.ts with defineProject).
// Test files mostly wait on real servers and child processes, so two files run at once (vitest's
// default on two cores is one). Three were tried: with the codegen, consumer (npm install + tsc)
// and appserver e2e suites added, ejabberd then took over 90 s to open its port in CI.
// LICHEN_TEST_WORKERS overrides.
export default defineConfig({
  test: {
    maxWorkers: Number(process.env.LICHEN_TEST_WORKERS ?? 2),
    projects: [
      "packages/*/vitest.config.ts",
      "apps/*/vitest.config.ts",
      "tools/*/vitest.config.ts",
    ],
  },
});
