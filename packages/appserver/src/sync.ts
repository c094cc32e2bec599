import { EventEmitter } from "node:events";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import type { Logger } from "pino";
import type { BlacklistChange, DomainBlacklist, TokenBlacklist } from "./blacklist.js";
import type { Clock } from "./clock.js";
import type { AppServerMetrics } from "./metrics.js";

// SET the key to "until:strikes:since" unless the stored entry already dominates, or an operator's
// unblock (the tombstone KEYS[3]) is newer than the block (since; 0 = unknown age); then PUBLISH.
// Max-merge in Redis and on every node makes the order of updates irrelevant (convergent).
const MERGE_TOKEN = `
local u = tonumber(ARGV[1])
local s = tonumber(ARGV[2])
local b = tonumber(ARGV[4]) or 0
local tomb = tonumber(redis.call('GET', KEYS[3]) or '')
if tomb and b <= tomb then return 0 end
local cur = redis.call('GET', KEYS[1])
if cur then
  local cu, cs, cb = string.match(cur, '^(%d+):(%d+):?(%d*)$')
  cu = tonumber(cu) or 0
  cs = tonumber(cs) or 0
  cb = tonumber(cb) or 0
  if cu >= u and cs >= s and cb >= b then return 0 end
  if cu > u then u = cu end
  if cs > s then s = cs end
  if cb > b then b = cb end
end
redis.call('SET', KEYS[1], u .. ':' .. s .. ':' .. b, 'PXAT', u)
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1`;

// An operator's token unblock: the tombstone KEYS[2] = max(at), kept for ARGV[2] ms; the entry
// KEYS[1] goes unless it is a block reported after the unblock; then PUBLISH.
const UNBLOCK_TOKEN = `
local at = tonumber(ARGV[1])
local tomb = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if tomb > at then at = tomb end
redis.call('SET', KEYS[2], tostring(at), 'PX', ARGV[2])
local cur = redis.call('GET', KEYS[1])
if cur then
  local cb = tonumber(string.match(cur, '^%d+:%d+:(%d+)$') or '0') or 0
  if cb <= at then redis.call('DEL', KEYS[1]) end
end
redis.call('PUBLISH', KEYS[3], ARGV[3])
return 1`;

const MERGE_DOMAIN = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local u = tonumber(ARGV[1])
if cur >= u then return 0 end
redis.call('SET', KEYS[1], tostring(u), 'PXAT', u)
redis.call('PUBLISH', KEYS[2], ARGV[2])
return 1`;

// KEYS[1] = max(its value, ARGV[1]), kept ARGV[2] ms: a tombstone.
const MAX_SET = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local at = tonumber(ARGV[1])
if cur > at then at = cur end
redis.call('SET', KEYS[1], tostring(at), 'PX', ARGV[2])
return 1`;

// A domain tombstone replayed by a resync: KEYS[1] (dun) = max(at), kept ARGV[2] ms; the block
// KEYS[2] goes if it started (until - ARGV[3]) by then, the events KEYS[3] up to then; PUBLISH to
// KEYS[4] so that nodes that missed the unblock apply it (they too keep what is newer).
const REPLAY_DOMAIN_UNBLOCK = `
local at = tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if cur > at then at = cur end
redis.call('SET', KEYS[1], tostring(at), 'PX', ARGV[2])
local u = tonumber(redis.call('GET', KEYS[2]) or '')
if u and u - tonumber(ARGV[3]) <= at then redis.call('DEL', KEYS[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', at)
redis.call('PUBLISH', KEYS[4], ARGV[4])
return 1`;

type Wire =
  | { n: string; k: "t"; h: string; u: number; s: number; b?: number; d?: string }
  | { n: string; k: "d"; d: string; u: number }
  | { n: string; k: "e"; d: string; h: string; a: number }
  | { n: string; k: "x"; d: string; a: number }
  | { n: string; k: "v"; h: string; a?: number };

export interface RedisSyncOptions {
  url: string;
  keyPrefix: string;
  nodeId?: string;
  tokens: TokenBlacklist;
  domains: DomainBlacklist;
  clock: Clock;
  logger: Logger;
  metrics?: AppServerMetrics;
}

const HASH = /^[0-9a-f]{32}$/;

/**
 * Multi-node blacklist sync through Redis: TTL keys hold the current entries, a pub/sub channel
 * carries changes, and every (re)connect runs a full two-way resync (local entries pushed with
 * max-merge, Redis entries pulled). The request path never waits on Redis: it reads local memory.
 * Emits "applied" (a remote change changed local state) and "resynced".
 */
export class RedisBlacklistSync extends EventEmitter {
  readonly nodeId: string;
  private cmd: Redis | undefined;
  private sub: Redis | undefined;
  private readonly channel: string;
  private resyncTimer: NodeJS.Timeout | undefined;
  private resyncRunning: Promise<void> | undefined;
  private stopped = false;
  /** Reconnect attempts of both Redis connections so far. */
  reconnectAttempts = 0;

  constructor(private readonly o: RedisSyncOptions) {
    super();
    this.nodeId = o.nodeId ?? randomBytes(6).toString("hex");
    this.channel = `${o.keyPrefix}changes`;
  }

  get connected(): boolean {
    return this.cmd?.status === "ready" && this.sub?.status === "ready";
  }

  start(): void {
    const common = {
      lazyConnect: false,
      maxRetriesPerRequest: 1,
      retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
      reconnectOnError: () => true,
    };
    // Commands fail fast while Redis is down (no unbounded offline queue); resync repairs later.
    this.cmd = new Redis(this.o.url, { ...common, enableOfflineQueue: false });
    // The subscription waits for Redis as long as it takes (a node may start while Redis is down).
    this.sub = new Redis(this.o.url, {
      ...common,
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
    });
    this.cmd.defineCommand("mergeToken", { numberOfKeys: 3, lua: MERGE_TOKEN });
    this.cmd.defineCommand("mergeDomain", { numberOfKeys: 2, lua: MERGE_DOMAIN });
    this.cmd.defineCommand("maxSet", { numberOfKeys: 1, lua: MAX_SET });
    this.cmd.defineCommand("replayDomainUnblock", {
      numberOfKeys: 4,
      lua: REPLAY_DOMAIN_UNBLOCK,
    });
    this.cmd.defineCommand("unblockToken", { numberOfKeys: 3, lua: UNBLOCK_TOKEN });
    for (const [name, c] of [
      ["cmd", this.cmd],
      ["sub", this.sub],
    ] as const) {
      c.on("error", (err: Error) =>
        this.o.logger.debug({ err: err.message, conn: name }, "redis error"),
      );
      c.on("ready", () => {
        this.o.logger.info({ conn: name }, "redis connected");
        // (Re)subscribe on every ready: idempotent, and covers a first subscribe that failed.
        if (c === this.sub) {
          c.subscribe(this.channel).catch((err: Error) =>
            this.o.logger.warn({ err: err.message }, "redis subscribe failed"),
          );
        }
        this.updateGauge();
        this.scheduleResync();
      });
      c.on("close", () => this.updateGauge());
      c.on("reconnecting", () => this.reconnectAttempts++);
    }
    this.sub.on("message", (_ch: string, msg: string) => this.onMessage(msg));
    this.sub
      .subscribe(this.channel)
      .catch((err: Error) => this.o.logger.warn({ err: err.message }, "redis subscribe failed"));
  }

  /** Blacklist change listener: publishes changes made on this node. */
  readonly onChange = (c: BlacklistChange): void => {
    if (c.origin !== "local" || this.stopped) return;
    const cmd = this.cmd;
    if (!cmd || cmd.status !== "ready") return; // resync after reconnect pushes it
    this.publish(cmd, c).catch((err: Error) =>
      this.o.logger.debug({ err: err.message }, "redis publish failed"),
    );
  };

  private async publish(cmd: Redis, c: BlacklistChange): Promise<void> {
    const p = this.o.keyPrefix;
    const now = this.o.clock.now();
    const c2 = cmd as Redis & {
      mergeToken(
        k1: string,
        k2: string,
        k3: string,
        u: number,
        s: number,
        msg: string,
        since: number,
      ): Promise<number>;
      mergeDomain(k1: string, k2: string, u: number, msg: string): Promise<number>;
      maxSet(k: string, at: number, keepMs: number): Promise<number>;
      unblockToken(
        k1: string,
        k2: string,
        k3: string,
        at: number,
        keepMs: number,
        msg: string,
      ): Promise<number>;
    };
    if (c.kind === "token") {
      if (c.until <= now) return;
      const w: Wire = {
        n: this.nodeId,
        k: "t",
        h: c.hash,
        u: c.until,
        s: c.strikes,
        ...(c.since !== undefined ? { b: c.since } : {}),
        ...(c.domain ? { d: c.domain } : {}),
      };
      await c2.mergeToken(
        `${p}tok:${c.hash}`,
        this.channel,
        `${p}tun:${c.hash}`,
        c.until,
        c.strikes,
        JSON.stringify(w),
        c.since ?? 0,
      );
    } else if (c.kind === "domain") {
      if (c.until <= now) return;
      const w: Wire = { n: this.nodeId, k: "d", d: c.domain, u: c.until };
      await c2.mergeDomain(`${p}dom:${c.domain}`, this.channel, c.until, JSON.stringify(w));
    } else if (c.kind === "token-unblock") {
      const w: Wire = { n: this.nodeId, k: "v", h: c.hash, a: c.at };
      await c2.unblockToken(
        `${p}tok:${c.hash}`,
        `${p}tun:${c.hash}`,
        this.channel,
        c.at,
        this.o.tokens.tombstoneMs,
        JSON.stringify(w),
      );
    } else if (c.kind === "domain-unblock") {
      // An operator's unblock: the block and the counted events go from Redis too, so that a
      // resync does not bring them back; nodes apply it on the message.
      // The tombstone dun:<domain> (as long as a block or an event can matter) lets a node that
      // missed the message learn the unblock at its next resync.
      const w: Wire = { n: this.nodeId, k: "x", d: c.domain, a: c.at };
      await c2.maxSet(`${p}dun:${c.domain}`, c.at, this.o.domains.tombstoneMs);
      await cmd
        .multi()
        .del(`${p}dom:${c.domain}`, `${p}dev:${c.domain}`)
        .publish(this.channel, JSON.stringify(w))
        .exec();
    } else {
      // Events also go to a per-domain sorted set (TTL = window) so that a resync restores the
      // counts inside the window, not only the blocks.
      const w: Wire = { n: this.nodeId, k: "e", d: c.domain, h: c.hash, a: c.at };
      const key = `${p}dev:${c.domain}`;
      await cmd
        .multi()
        .zadd(key, "GT", c.at, c.hash)
        .pexpire(key, this.o.domains.windowMs)
        .publish(this.channel, JSON.stringify(w))
        .exec();
    }
    this.o.metrics?.syncEvents.inc({ direction: "published" });
  }

  private onMessage(msg: string): void {
    let w: Wire;
    try {
      w = JSON.parse(msg) as Wire;
    } catch {
      this.o.logger.warn("ignoring malformed sync message");
      return;
    }
    if (!w || typeof w !== "object" || w.n === this.nodeId) return;
    let changed = false;
    if (
      w.k === "t" &&
      typeof w.h === "string" &&
      HASH.test(w.h) &&
      Number.isSafeInteger(w.u) &&
      Number.isSafeInteger(w.s)
    ) {
      changed = this.o.tokens.merge(
        w.h,
        w.u,
        w.s,
        "remote",
        Number.isSafeInteger(w.b) ? w.b : undefined,
      );
      if (changed && typeof w.d === "string")
        this.o.domains.recordBadToken(w.d, w.h, this.o.clock.now(), "remote");
    } else if (w.k === "d" && typeof w.d === "string" && Number.isSafeInteger(w.u)) {
      changed = this.o.domains.merge(w.d, w.u, "remote");
    } else if (w.k === "v" && typeof w.h === "string" && HASH.test(w.h)) {
      changed = this.o.tokens.unblock(
        w.h,
        "remote",
        Number.isSafeInteger(w.a) ? w.a : this.o.clock.now(),
      );
    } else if (w.k === "x" && typeof w.d === "string" && Number.isSafeInteger(w.a)) {
      changed = this.o.domains.unblock(w.d, "remote", w.a);
    } else if (
      w.k === "e" &&
      typeof w.d === "string" &&
      typeof w.h === "string" &&
      Number.isSafeInteger(w.a)
    ) {
      changed = this.o.domains.recordBadToken(w.d, w.h, w.a, "remote");
    } else {
      this.o.logger.warn("ignoring malformed sync message");
      return;
    }
    this.o.metrics?.syncEvents.inc({ direction: "received" });
    if (changed) this.emit("applied", w);
  }

  private scheduleResync(): void {
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    // Both connections come back at about the same time; resync once both are up.
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = undefined;
      if (!this.connected) return;
      this.resyncRunning = (this.resyncRunning ?? Promise.resolve()).then(() =>
        this.resync().catch((err: Error) => {
          this.o.logger.warn(
            { err: err.message },
            "redis resync failed; retrying on next reconnect",
          );
        }),
      );
    }, 50);
  }

  /** Two-way full resync: push every live local entry (max-merge), pull every Redis entry. */
  async resync(): Promise<void> {
    const cmd = this.cmd;
    if (!cmd || this.stopped) return;
    const now = this.o.clock.now();
    const p = this.o.keyPrefix;
    // Tombstones first, both ways: a node that missed an operator's unblock drops the entry
    // before it would push it back.
    let pulled = 0;
    let cursor = "0";
    do {
      const [next, keys] = await cmd.scan(cursor, "MATCH", `${p}tun:*`, "COUNT", 1000);
      cursor = next;
      if (keys.length === 0) continue;
      const values = await cmd.mget(...keys);
      keys.forEach((k, i) => {
        const h = k.slice(p.length + 4);
        const at = Number(values[i]);
        if (!HASH.test(h) || !Number.isSafeInteger(at)) return;
        if ((this.o.tokens.unblockedSince(h) ?? -1) < at) {
          this.o.tokens.unblock(h, "remote", at);
          pulled++;
        }
      });
    } while (cursor !== "0");
    cursor = "0";
    do {
      const [next, keys] = await cmd.scan(cursor, "MATCH", `${p}dun:*`, "COUNT", 1000);
      cursor = next;
      if (keys.length === 0) continue;
      const values = await cmd.mget(...keys);
      keys.forEach((k, i) => {
        const d = k.slice(p.length + 4);
        const at = Number(values[i]);
        if (d.length === 0 || !Number.isSafeInteger(at)) return;
        if ((this.o.domains.unblockedSince(d) ?? -1) < at) {
          this.o.domains.unblock(d, "remote", at);
          pulled++;
        }
      });
    } while (cursor !== "0");
    // Own domain tombstones, replayed: a node that missed the unblock drops what predates it (and
    // keeps what is newer, as Redis does).
    const replay = cmd as Redis & {
      replayDomainUnblock(...args: (string | number)[]): Promise<number>;
    };
    for (const [domain, at] of [...this.o.domains.allUnblocks()]) {
      const w: Wire = { n: this.nodeId, k: "x", d: domain, a: at };
      await replay.replayDomainUnblock(
        `${p}dun:${domain}`,
        `${p}dom:${domain}`,
        `${p}dev:${domain}`,
        this.channel,
        at,
        this.o.domains.tombstoneMs,
        this.o.domains.blockMs,
        JSON.stringify(w),
      );
    }
    let batch: BlacklistChange[] = [];
    const flush = async () => {
      await Promise.all(batch.map((c) => this.publish(cmd, c)));
      batch = [];
    };
    for (const [hash, at] of this.o.tokens.allUnblocks()) {
      batch.push({ kind: "token-unblock", hash, at, origin: "local" });
      if (batch.length >= 500) await flush();
    }
    for (const [hash, e] of this.o.tokens.all()) {
      if (e.until <= now) continue;
      batch.push({
        kind: "token",
        hash,
        until: e.until,
        strikes: e.strikes,
        ...(e.since !== undefined ? { since: e.since } : {}),
        origin: "local",
      });
      if (batch.length >= 500) await flush();
    }
    for (const [domain, until] of this.o.domains.allBlocks()) {
      if (until > now) batch.push({ kind: "domain", domain, until, origin: "local" });
    }
    for (const [domain, hash, at] of this.o.domains.allEvents()) {
      batch.push({ kind: "domain-event", domain, hash, at, origin: "local" });
      if (batch.length >= 500) await flush();
    }
    await flush();
    for (const pattern of [`${p}tok:*`, `${p}dom:*`]) {
      let cursor = "0";
      do {
        const [next, keys] = await cmd.scan(cursor, "MATCH", pattern, "COUNT", 1000);
        cursor = next;
        if (keys.length === 0) continue;
        const values = await cmd.mget(...keys);
        keys.forEach((k, i) => {
          const v = values[i];
          if (typeof v !== "string") return;
          if (k.startsWith(`${p}tok:`)) {
            const h = k.slice(p.length + 4);
            const m = /^(\d+):(\d+)(?::(\d+))?$/.exec(v);
            const since = m?.[3] ? Number(m[3]) : undefined;
            if (
              m &&
              HASH.test(h) &&
              this.o.tokens.merge(h, Number(m[1]), Number(m[2]), "remote", since || undefined)
            )
              pulled++;
          } else {
            const u = Number(v);
            if (Number.isSafeInteger(u) && this.o.domains.merge(k.slice(p.length + 4), u, "remote"))
              pulled++;
          }
        });
      } while (cursor !== "0");
    }
    const since = now - this.o.domains.windowMs;
    cursor = "0";
    do {
      const [next, keys] = await cmd.scan(cursor, "MATCH", `${p}dev:*`, "COUNT", 1000);
      cursor = next;
      for (const k of keys) {
        const domain = k.slice(p.length + 4);
        const flat = await cmd.zrangebyscore(k, since, "+inf", "WITHSCORES");
        for (let i = 0; i + 1 < flat.length; i += 2) {
          const hash = flat[i]!;
          const at = Number(flat[i + 1]);
          if (
            HASH.test(hash) &&
            Number.isSafeInteger(at) &&
            this.o.domains.recordBadToken(domain, hash, at, "remote")
          ) {
            pulled++;
          }
        }
      }
    } while (cursor !== "0");
    this.o.metrics?.syncEvents.inc({ direction: "resynced" }, pulled);
    this.o.logger.info({ pulled }, "blacklist resync with redis done");
    this.emit("resynced", pulled);
  }

  private updateGauge(): void {
    this.o.metrics?.redisConnected.set(this.connected ? 1 : 0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    await this.resyncRunning?.catch(() => undefined);
    for (const c of [this.cmd, this.sub]) {
      if (!c) continue;
      try {
        await Promise.race([c.quit(), new Promise((r) => setTimeout(r, 1000))]);
      } catch {
        // already down
      }
      c.disconnect();
    }
  }
}
