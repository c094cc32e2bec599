#!/usr/bin/env node
// The bin npm links at `npm ci`, before anything is built: without dist/ it says what to do
// (a bin pointing into a missing dist/ made `npx lichen-chat` fall through to the public registry).
import { existsSync } from "node:fs";

// The bundle (scripts/bundle.mjs, part of the build) starts in a fraction of the time of the
// module graph in dist/ (the NSE's cold start); dist/cli.js is the same program unbundled.
const bundle = new URL("../dist/bundle/cli.js", import.meta.url);
const cli = new URL("../dist/cli.js", import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write("lichen-chat: not built yet; run `npm run build` in the repository root\n");
  process.exit(1);
}
await import((existsSync(bundle) ? bundle : cli).href);
