// Runs after `npm ci`/`npm install`: fail loudly if a native module we depend on was not built.
// npm 11 skips dependency install scripts unless they are approved in package.json "allowScripts";
// better-sqlite3 has no prebuilt binary reachable here and must compile with node-gyp.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const problems = [];
try {
  const Database = require("better-sqlite3");
  const db = new Database(":memory:");
  db.prepare("select 1").get();
  db.close();
} catch (err) {
  problems.push(
    `better-sqlite3 native module is not usable: ${err && err.message}\n` +
      `  Fix: make sure g++, make and python3 are installed, then run \`npm rebuild better-sqlite3\`.\n` +
      `  (npm 11 runs install scripts only for packages listed in package.json "allowScripts".)`,
  );
}
if (problems.length > 0) {
  console.error(`\n[lichen] native dependency check failed:\n${problems.join("\n")}\n`);
  process.exit(1);
}
