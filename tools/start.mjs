#!/usr/bin/env node
// `npm start`: the main job on embedded defaults. Runs the push appserver daemon (lichen-push) in
// demo mode (simulators + a local Prosody; it prints the banner) when it is built; otherwise says
// what is available and exits 0. Signals are passed on; on a terminal Ctrl-C reaches every process.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pushServer = join(root, "apps", "push-server", "dist", "cli.js");

if (existsSync(pushServer)) {
  const child = spawn(process.execPath, [pushServer, "start", ...process.argv.slice(2)], {
    stdio: "inherit",
  });
  for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => child.kill(sig));
  child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
} else {
  console.log(`Lichen: the push appserver daemon is not built yet.
Available now:
  npm test                 every test (real Prosody, ejabberd, Redis on loopback)
  npm run bench [-- NAME]  benchmarks (bench/results/NAME.json)
  npm run codegen          JSON Schema + Swift types from packages/schema`);
}
