import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "chat",
    environment: "node",
    include: ["test/**/*.test.ts"],
    // Tests spawn real CLI processes against a real Prosody: generous on a loaded machine.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
