import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "codegen",
    environment: "node",
    include: ["test/**/*.test.ts"],
  },
});
