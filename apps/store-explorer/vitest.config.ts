import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "store-explorer",
    environment: "node",
    include: ["test/**/*.test.ts"],
  },
});
