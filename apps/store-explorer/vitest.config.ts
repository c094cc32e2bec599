import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "store-explorer",
    environment: "node",
    include: ["test/**/*.test.ts"],
    // Each test runs the built CLI several times as child processes: seconds on a loaded machine.
    testTimeout: 60_000,
  },
});
