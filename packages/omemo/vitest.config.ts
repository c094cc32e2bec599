import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "omemo",
    environment: "node",
    include: ["test/**/*.test.ts"],
  },
});
