#!/usr/bin/env node
// The npm registry reachable from our machines serves only Linux builds of some platform-specific
// optional packages (turbo's @turbo/darwin-*, @turbo/windows-*). `npm install` then writes a lock
// whose optionalDependencies name packages it could not record, and `npm ci` refuses that lock.
// This drops optional dependencies that have no entry in the lock. Run after `npm install`:
//   node tools/prune-lockfile.mjs          (rewrites package-lock.json)
//   node tools/prune-lockfile.mjs --check  (exit 1 if a prune is needed)
import { readFileSync, writeFileSync } from "node:fs";

const file = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(file, "utf8"));
const dropped = [];
for (const [path, entry] of Object.entries(lock.packages ?? {})) {
  for (const dep of Object.keys(entry.optionalDependencies ?? {})) {
    const nested = `${path ? `${path}/` : ""}node_modules/${dep}`;
    if (!lock.packages[`node_modules/${dep}`] && !lock.packages[nested]) {
      delete entry.optionalDependencies[dep];
      dropped.push(`${path || "(root)"} -> ${dep}`);
    }
  }
}
if (process.argv.includes("--check")) {
  if (dropped.length) {
    console.error(
      `package-lock.json names optional packages it does not contain:\n  ${dropped.join("\n  ")}\nrun: node tools/prune-lockfile.mjs`,
    );
    process.exit(1);
  }
} else if (dropped.length) {
  writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
  console.error(
    `pruned ${dropped.length} unresolvable optional dependencies:\n  ${dropped.join("\n  ")}`,
  );
}
