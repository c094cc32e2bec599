import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "appserver",
    environment: "node",
    include: ["test/**/*.test.ts"],
  },
});
