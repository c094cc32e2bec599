#!/usr/bin/env node
// lichen-chat: see README.md. Exit explicitly: a suspended session may leave sockets or timers.
import { main } from "./program.js";

const code = await main(process.argv);
// Writes to a pipe are asynchronous: exiting at once cut a 220 KB `tail --json` short. An empty
// write's callback runs once everything written before it is flushed.
await Promise.all(
  [process.stdout, process.stderr].map((s) => new Promise<void>((r) => s.write("", () => r()))),
);
process.exit(code);
