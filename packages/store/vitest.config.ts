import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "store",
    environment: "node",
    include: ["test/**/*.test.ts"],
    // Tests spawn store processes (Node start-up is seconds on a loaded machine running several
    // test files at once); the bounds that matter are asserted inside the tests.
    testTimeout: 30_000,
  },
});
