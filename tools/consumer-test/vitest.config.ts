import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "consumer-test",
    environment: "node",
    include: ["test/**/*.test.ts"],
  },
});
