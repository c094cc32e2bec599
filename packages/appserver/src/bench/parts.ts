import { connect as h2connect, constants as h2 } from "node:http2";
import { randomBytes } from "node:crypto";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { pino } from "pino";
import { DomainBlacklist, TokenBlacklist } from "../blacklist.js";
import { SystemClock } from "../clock.js";
import { RateLimiter } from "../rate-limiter.js";
import { RedisBlacklistSync } from "../sync.js";
import type { FakeComponentServer } from "../testing/component-server.js";
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
 * Heap growth (MB) of a rate limiter holding `n` tokens (keyed by 32-hex token hashes, as in the
 * appserver), 10 % of them with a queued push carrying a 64-char token.
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
  const seed = randomBytes(16);
  for (let i = 0; i < n; i++) {
    seed.writeUInt32LE(i, 0);
    const key = seed.toString("hex");
    rl.check(key, { token: "", app: "a", domain: "d", important: false });
    if (i % 10 === 0) {
      rl.check(key, { token: key + key, app: "default", domain: "example.org", important: true });
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

/**
 * Median time (ms) from a token blacklisted on node A until nodes B and C both hold it, through a
 * real Redis (3 sync nodes, each with its own blacklists, as in 3 appserver processes' sync parts).
 */
export async function blacklistConvergenceMs(trials: number): Promise<number> {
  const redis = await startRedis();
  const clock = new SystemClock();
  const logger = pino({ level: "silent" });
  const nodes = ["a", "b", "c"].map((id) => {
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
      url: redis.url,
      keyPrefix: "bench:",
      nodeId: id,
      tokens,
      domains,
      clock,
      logger,
    });
    tokens.onChange(sync.onChange);
    domains.onChange(sync.onChange);
    sync.start();
    return { tokens, sync };
  });
  try {
    const deadline = Date.now() + 20_000;
    while (!nodes.every((n) => n.sync.connected)) {
      if (Date.now() > deadline) throw new Error("sync nodes did not connect to redis");
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 200)); // initial resync
    const times: number[] = [];
    for (let i = 0; i < trials; i++) {
      const hash = randomBytes(16).toString("hex");
      const [a, b, c] = nodes as [(typeof nodes)[0], (typeof nodes)[0], (typeof nodes)[0]];
      const seen = [b, c].map(
        (n) =>
          new Promise<number>((resolve) => {
            const on = (w: { h?: string }) => {
              if (w.h === hash) {
                n.sync.off("applied", on);
                resolve(performance.now());
              }
            };
            n.sync.on("applied", on);
          }),
      );
      const t0 = performance.now();
      a.tokens.block(hash);
      const ts = await Promise.race([
        Promise.all(seen),
        new Promise<never>((_, rej) =>
          setTimeout(() => rej(new Error("no convergence within 5 s")), 5000),
        ),
      ]);
      times.push(Math.max(...ts) - t0);
    }
    return median(times);
  } finally {
    await Promise.all(nodes.map((n) => n.sync.stop()));
    await redis.stop();
  }
}

export interface LoadResult {
  perSecond: number;
  latenciesMs: number[];
  errors: number;
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
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const sendOne = () => {
      const i = next++;
      sentAt[i] = performance.now();
      xmpp.send(
        `<iq type='set' from='localhost' to='push.localhost' id='${idPrefix}${i}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${tokens[i]}'><item><notification xmlns='urn:xmpp:push:0'/></item></publish></pubsub></iq>`,
      );
    };
    const onReply = (r: { id: string; type: string }) => {
      if (!r.id.startsWith(idPrefix)) return;
      const i = Number(r.id.slice(idPrefix.length));
      latencies[i] = performance.now() - sentAt[i]!;
      if (r.type !== "result") errors++;
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
  return { perSecond: n / secs, latenciesMs: latencies, errors };
}

/**
 * The baseline: a bare node:http2 client sending the same number of APNs requests to the same
 * simulator (same headers as a provider would send), `concurrency` streams in flight on one session.
 */
export async function bareHttp2(
  origin: string,
  paths: string[],
  headers: () => Record<string, string>,
  body: string,
  concurrency: number,
  connectOptions: Record<string, unknown> = {},
): Promise<LoadResult> {
  const session = h2connect(origin, connectOptions);
  session.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  const n = paths.length;
  const latencies: number[] = new Array<number>(n);
  let next = 0;
  let done = 0;
  let errors = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const sendOne = () => {
      const i = next++;
      const start = performance.now();
      const req = session.request({
        [h2.HTTP2_HEADER_METHOD]: "POST",
        [h2.HTTP2_HEADER_PATH]: paths[i]!,
        ...headers(),
      });
      let status = 0;
      req.on("response", (h) => (status = Number(h[h2.HTTP2_HEADER_STATUS])));
      req.on("data", () => undefined);
      const finish = () => {
        latencies[i] = performance.now() - start;
        if (status !== 200) errors++;
        done++;
        if (next < n) sendOne();
        if (done === n) resolve();
      };
      req.on("end", finish);
      req.on("error", () => {
        status = -1;
        finish();
      });
      req.end(body);
    };
    for (let k = 0; k < Math.min(concurrency, n); k++) sendOne();
  });
  const secs = (performance.now() - t0) / 1000;
  session.close();
  return { perSecond: n / secs, latenciesMs: latencies, errors };
}
