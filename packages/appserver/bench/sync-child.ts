// Child process of the appserver benchmark: one blacklist sync node (own blacklists, own Redis
// connections). Prints "ready" once synced, then "applied <hash>" for every remote token entry.
import { pino } from "pino";
import { DomainBlacklist, TokenBlacklist } from "#src/blacklist.js";
import { SystemClock } from "#src/clock.js";
import { RedisBlacklistSync } from "#src/sync.js";

const [url, nodeId] = process.argv.slice(2) as [string, string];
const clock = new SystemClock();
const tokens = new TokenBlacklist({
  clock,
  firstBlockMs: 86_400_000,
  repeatBlockMs: 432_000_000,
  hitExtensionMs: 600_000,
  memoryMs: 2_592_000_000,
});
const domains = new DomainBlacklist({
  clock,
  windowMs: 3_600_000,
  threshold: 50,
  blockMs: 21_600_000,
});
const sync = new RedisBlacklistSync({
  url,
  keyPrefix: "bench:",
  nodeId,
  tokens,
  domains,
  clock,
  logger: pino({ level: "silent" }),
});
tokens.onChange(sync.onChange);
domains.onChange(sync.onChange);
sync.on("applied", (w: { h?: string }) => {
  if (w.h) process.stdout.write(`applied ${w.h}\n`);
});
sync.once("resynced", () => process.stdout.write("ready\n"));
sync.start();
process.stdin.resume();
process.stdin.on("end", () => {
  void sync.stop().then(() => process.exit(0));
});
