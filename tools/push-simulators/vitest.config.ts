import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "push-simulators",
    environment: "node",
    include: ["test/**/*.test.ts"],
  },
});
