import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "codegen",
    environment: "node",
    include: ["test/**/*.test.ts"],
    // Most tests run the CLI, which builds a TypeScript program (seconds; far more on a loaded
    // machine: a 60 s bound was exceeded at load average 30 on 2 cores).
    testTimeout: 240_000,
  },
});
