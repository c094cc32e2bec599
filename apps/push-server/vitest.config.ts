import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "push-server",
    environment: "node",
    include: ["test/**/*.test.ts"],
  },
});
