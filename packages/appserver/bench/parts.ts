import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { pino } from "pino";
import { DomainBlacklist, TokenBlacklist } from "#src/blacklist.js";
import { SystemClock } from "#src/clock.js";
import { DeliveryMemory } from "#src/deliveries.js";
import { RateLimiter } from "#src/rate-limiter.js";
import { TokenHasher } from "#src/token.js";
import { RedisBlacklistSync } from "#src/sync.js";
import type { FakeComponentServer } from "#src/testing/component-server.js";
import { startRedis } from "@lichen/test-servers";

function gcFn(): () => void {
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as () => void;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))]! : NaN;
}

/**
 * Heap growth (MB) of a rate limiter holding `n` tokens keyed the way the appserver keys them
 * (TokenHasher.hash of a 64-hex APNs token: the production hashing path), 10 % of them with a
 * queued push carrying its raw token.
 */
export function rateLimiterMemoryMb(n: number): number {
  const gc = gcFn();
  const clock = new SystemClock();
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const rl = new RateLimiter<{ token: string; app: string; domain: string; important: boolean }>({
    clock,
    windowMs: 3_600_000,
    onDue: () => undefined,
  });
  const hasher = new TokenHasher(randomBytes(32));
  const seed = randomBytes(32);
  for (let i = 0; i < n; i++) {
    seed.writeUInt32LE(i, 0);
    const token = seed.toString("hex");
    const key = hasher.hash(token, true);
    rl.check(key, { token, app: "a", domain: "d", important: false });
    if (i % 10 === 0) {
      rl.check(key, { token, app: "default", domain: "example.org", important: true });
    }
  }
  gc();
  gc();
  const after = process.memoryUsage().heapUsed;
  const mb = (after - before) / (1024 * 1024);
  if (rl.size !== n) throw new Error(`limiter holds ${rl.size} tokens, expected ${n}`);
  rl.drainQueued();
  return mb;
}

/** Heap growth (MB) of the healthy-token memory holding `n` production token hashes. */
export function deliveryMemoryMb(n: number): number {
  const gc = gcFn();
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  const dm = new DeliveryMemory({ clock: new SystemClock(), healthyMs: 7 * 86_400_000 });
  const hasher = new TokenHasher(randomBytes(32));
  const seed = randomBytes(32);
  for (let i = 0; i < n; i++) {
    seed.writeUInt32LE(i, 0);
    dm.delivered(hasher.hash(seed.toString("hex"), true), `d${i % 1000}.example`);
  }
  gc();
  gc();
  const mb = (process.memoryUsage().heapUsed - before) / (1024 * 1024);
  if (dm.size !== n) throw new Error(`delivery memory holds ${dm.size} tokens, expected ${n}`);
  return mb;
}

/**
 * Median time (ms) from a token blacklisted on node A (this process) until nodes B and C (two child
 * processes, each with its own blacklists and Redis connections) report it applied, through a real
 * Redis. Includes the children's stdout pipe, so it is an upper bound.
 */
export async function blacklistConvergenceMs(trials: number): Promise<number> {
  const redis = await startRedis();
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
  const a = new RedisBlacklistSync({
    url: redis.url,
    keyPrefix: "bench:",
    nodeId: "a",
    tokens,
    domains,
    clock,
    logger: pino({ level: "silent" }),
  });
  tokens.onChange(a.onChange);
  domains.onChange(a.onChange);
  a.start();
  const seen = new EventEmitter();
  const children = ["b", "c"].map((id) => {
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL("./sync-child.js", import.meta.url)), redis.url, id],
      {
        stdio: ["pipe", "pipe", "inherit"],
      },
    );
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    createInterface({ input: child.stdout! }).on("line", (l) => seen.emit(l, performance.now()));
    return { child, exited };
  });
  try {
    const ready = (n: number) =>
      new Promise<void>((resolve, reject) => {
        let k = 0;
        const t = setTimeout(
          () => reject(new Error("sync children not ready within 20 s")),
          20_000,
        );
        seen.on("ready", () => {
          if (++k === n) {
            clearTimeout(t);
            resolve();
          }
        });
      });
    await ready(children.length);
    const deadline = Date.now() + 20_000;
    while (!a.connected) {
      if (Date.now() > deadline) throw new Error("sync node a did not connect to redis");
      await new Promise((r) => setTimeout(r, 20));
    }
    const times: number[] = [];
    for (let i = 0; i < trials; i++) {
      const hash = randomBytes(16).toString("hex");
      const both = Promise.all(
        children.map(() => new Promise<number>((resolve) => seen.once(`applied ${hash}`, resolve))),
      );
      const t0 = performance.now();
      tokens.block(hash);
      const ts = await Promise.race([
        both,
        new Promise<never>((_, rej) =>
          setTimeout(() => rej(new Error("no convergence within 5 s")), 5000),
        ),
      ]);
      times.push(Math.max(...ts) - t0);
    }
    return median(times);
  } finally {
    await a.stop();
    for (const c of children) {
      c.child.stdin!.end();
      const t = setTimeout(() => c.child.kill("SIGKILL"), 5000);
      await c.exited;
      clearTimeout(t);
    }
    await redis.stop();
  }
}

export interface LoadResult {
  perSecond: number;
  latenciesMs: number[];
  errors: number;
  /** Error replies by their type and text (what the appserver said), for the soak's breakdown. */
  errorKinds: Record<string, number>;
}

/**
 * Plays the XMPP server: sends `n` push IQs (distinct tokens, so none is rate-limited) keeping
 * `concurrency` outstanding, and times each IQ until the component's reply.
 */
export async function driveComponent(
  xmpp: FakeComponentServer,
  tokens: string[],
  concurrency: number,
  idPrefix: string,
): Promise<LoadResult> {
  xmpp.keepReplies = false;
  const n = tokens.length;
  const sentAt = new Float64Array(n);
  const latencies: number[] = new Array<number>(n);
  let next = 0;
  let done = 0;
  let errors = 0;
  const errorKinds: Record<string, number> = {};
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const sendOne = () => {
      const i = next++;
      sentAt[i] = performance.now();
      xmpp.send(
        `<iq type='set' from='localhost' to='push.localhost' id='${idPrefix}${i}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${tokens[i]}'><item><notification xmlns='urn:xmpp:push:0'/></item></publish></pubsub></iq>`,
      );
    };
    const onReply = (r: { id: string; type: string; raw: string }) => {
      if (!r.id.startsWith(idPrefix)) return;
      const i = Number(r.id.slice(idPrefix.length));
      latencies[i] = performance.now() - sentAt[i]!;
      if (r.type !== "result") {
        errors++;
        const kind = `${/<error type='(\w+)'/.exec(r.raw)?.[1] ?? "?"}: ${/<text[^>]*>([^<]*)</.exec(r.raw)?.[1] ?? "?"}`;
        errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
      }
      done++;
      if (next < n) sendOne();
      if (done === n) {
        xmpp.off("reply", onReply);
        resolve();
      }
    };
    xmpp.on("reply", onReply);
    for (let k = 0; k < Math.min(concurrency, n); k++) sendOne();
  });
  const secs = (performance.now() - t0) / 1000;
  return { perSecond: n / secs, latenciesMs: latencies, errors, errorKinds };
}
