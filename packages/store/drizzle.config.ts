import { defineConfig } from "drizzle-kit";

// `npm run db:generate -w @lichen/store -- --name <change>` writes migrations/NNNN_<change>.sql.
export default defineConfig({
  dialect: "sqlite",
  schema: "./src/schema.ts",
  out: "./migrations",
});
