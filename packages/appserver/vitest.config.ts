import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "appserver",
    environment: "node",
    include: ["test/**/*.test.ts"],
    // Real Prosody / ejabberd / Redis start in hooks; CI machines are slow.
    testTimeout: 120_000,
    hookTimeout: 180_000,
  },
});
