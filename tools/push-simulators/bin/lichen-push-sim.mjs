#!/usr/bin/env node
// The bin npm links at `npm ci`, before anything is built: without dist/ it says what to do
// (a bin pointing into a missing dist/ made `npx lichen-push-sim` fall through to the public registry).
import { existsSync } from "node:fs";

const cli = new URL("../dist/cli.js", import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write(
    "lichen-push-sim: not built yet; run `npm run build` in the repository root\n",
  );
  process.exit(1);
}
await import(cli.href);
