#!/usr/bin/env node
// Root `pretest`: make sure the real servers the tests need are installed (apt-get when root),
// or fail with a clear message. Runs after `npm run build`, so dist/ exists.
import { ensureInstalled } from "../dist/index.js";

try {
  ensureInstalled({ log: (line) => console.error(`[test-servers] ${line}`) });
} catch (err) {
  console.error(`[test-servers] ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
