import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "device-sim",
    environment: "node",
    include: ["test/**/*.test.ts"],
    // Real servers, the real lichen-push daemon and real lichen-chat processes on a loaded machine.
    testTimeout: 90_000,
    hookTimeout: 120_000,
  },
});
