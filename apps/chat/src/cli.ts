#!/usr/bin/env node
// lichen-chat: see README.md. Exit explicitly: a suspended session may leave sockets or timers.
import { main } from "./program.js";

process.exit(await main(process.argv));
