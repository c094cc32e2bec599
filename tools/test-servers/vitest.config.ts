import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "test-servers",
    environment: "node",
    include: ["test/**/*.test.ts"],
  },
});
