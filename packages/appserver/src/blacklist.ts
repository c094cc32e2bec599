import type { Clock } from "./clock.js";

/** A blacklisted token: keyed by its hash; `strikes` = how many times it was reported invalid. */
export interface TokenBlock {
  until: number;
  strikes: number;
  /**
   * When the provider last called the token invalid (the block's start), if known: an operator's
   * unblock (a tombstone) outweighs entries from before it, and entries of unknown age.
   */
  since?: number;
}

/** Where a change came from: this node, or another node / the persisted state. */
export type ChangeOrigin = "local" | "remote";

export type BlacklistChange =
  | {
      kind: "token";
      hash: string;
      until: number;
      strikes: number;
      since?: number;
      domain?: string;
      origin: ChangeOrigin;
    }
  | { kind: "domain"; domain: string; until: number; origin: ChangeOrigin }
  | { kind: "domain-event"; domain: string; hash: string; at: number; origin: ChangeOrigin }
  | { kind: "domain-unblock"; domain: string; at: number; origin: ChangeOrigin }
  | { kind: "token-unblock"; hash: string; at: number; origin: ChangeOrigin };

export type ChangeListener = (change: BlacklistChange) => void;

export interface TokenBlacklistOptions {
  clock: Clock;
  /** First block of a token reported invalid (fpush default 24 h). */
  firstBlockMs: number;
  /** Block when a token is reported invalid again (fpush default 5 days). */
  repeatBlockMs: number;
  /** A request for a blocked token keeps it blocked at least this long from now (10 min). */
  hitExtensionMs: number;
  /** How long an expired entry is remembered so that a repeat gets the longer block (30 days). */
  memoryMs: number;
}

/**
 * Blacklisted device tokens (by keyed hash). Reads are plain Map lookups (the hot path);
 * every change is announced to listeners (persistence, multi-node sync).
 * Merging is max(until), max(strikes): applying the same changes in any order converges.
 */
export class TokenBlacklist {
  private readonly entries = new Map<string, TokenBlock>();
  /** Operator unblocks (hash → when): older entries coming back from a node or Redis are ignored. */
  private readonly unblockedAt = new Map<string, number>();
  private readonly listeners: ChangeListener[] = [];

  constructor(private readonly opts: TokenBlacklistOptions) {}

  onChange(l: ChangeListener): void {
    this.listeners.push(l);
  }

  isBlocked(hash: string): boolean {
    const e = this.entries.get(hash);
    return e !== undefined && e.until > this.opts.clock.now();
  }

  get(hash: string): TokenBlock | undefined {
    return this.entries.get(hash);
  }

  /**
   * A push arrived for `hash`. Returns true (and extends the block if it would end soon) when the
   * token is blocked. Extensions happen at most every hitExtensionMs/2 per token, which bounds writes.
   */
  hit(hash: string, hitExtensionMs?: number): boolean {
    const e = this.entries.get(hash);
    const now = this.opts.clock.now();
    if (!e || e.until <= now) return false;
    const ext = hitExtensionMs ?? this.opts.hitExtensionMs;
    if (e.until - now < ext / 2) {
      e.until = now + ext;
      this.emit({
        kind: "token",
        hash,
        until: e.until,
        strikes: e.strikes,
        ...(e.since !== undefined ? { since: e.since } : {}),
        origin: "local",
      });
    }
    return true;
  }

  /**
   * The provider reported the token invalid: block it (longer when it was blocked before).
   * `durations` are the token's app's own (per-app blacklist settings), else the defaults.
   */
  block(
    hash: string,
    domain?: string,
    durations?: { firstBlockMs?: number; repeatBlockMs?: number },
  ): TokenBlock {
    const now = this.opts.clock.now();
    const prev = this.entries.get(hash);
    const strikes = (prev?.strikes ?? 0) + 1;
    const until = Math.max(
      prev?.until ?? 0,
      now +
        (strikes > 1
          ? (durations?.repeatBlockMs ?? this.opts.repeatBlockMs)
          : (durations?.firstBlockMs ?? this.opts.firstBlockMs)),
    );
    const e = { until, strikes, since: now };
    this.entries.set(hash, e);
    this.emit({
      kind: "token",
      hash,
      until,
      strikes,
      since: now,
      ...(domain ? { domain } : {}),
      origin: "local",
    });
    return e;
  }

  /**
   * An operator lifts a token's block (the provider called it invalid by mistake, or it was
   * re-registered): the entry and its strikes are forgotten. Returns whether there was one.
   */
  unblock(hash: string, origin: ChangeOrigin = "local", at = this.opts.clock.now()): boolean {
    // The tombstone: a node that missed this unblock must not bring the entry back (sync, resync).
    this.unblockedAt.set(hash, Math.max(at, this.unblockedAt.get(hash) ?? 0));
    const e = this.entries.get(hash);
    // a block reported after the unblock (another node, a new invalid answer) stays
    const had = e !== undefined && (e.since === undefined || e.since <= at);
    if (had) this.entries.delete(hash);
    this.emit({ kind: "token-unblock", hash, at, origin });
    return had;
  }

  /** When an operator last unblocked this token (within tombstoneMs), if at all. */
  unblockedSince(hash: string): number | undefined {
    return this.unblockedAt.get(hash);
  }

  /** Tombstones (hash → unblock time), for a resync. */
  allUnblocks(): IterableIterator<[string, number]> {
    return this.unblockedAt.entries();
  }

  /** How long a tombstone outlives its unblock: as long as a block from before it can last. */
  get tombstoneMs(): number {
    return Math.max(this.opts.firstBlockMs, this.opts.repeatBlockMs) + this.opts.hitExtensionMs;
  }

  /**
   * Applies an entry from another node or from storage. Returns true when local state changed.
   * An entry from before an operator's unblock of the token (or of unknown age) is ignored.
   */
  merge(
    hash: string,
    until: number,
    strikes: number,
    origin: ChangeOrigin = "remote",
    since?: number,
  ): boolean {
    const unblocked = this.unblockedAt.get(hash);
    if (unblocked !== undefined && (since === undefined || since <= unblocked)) return false;
    const prev = this.entries.get(hash);
    const newSince =
      since === undefined
        ? prev?.since
        : prev?.since === undefined
          ? since
          : Math.max(since, prev.since);
    if (prev && prev.until >= until && prev.strikes >= strikes && newSince === prev.since)
      return false;
    const e: TokenBlock = {
      until: Math.max(prev?.until ?? 0, until),
      strikes: Math.max(prev?.strikes ?? 0, strikes),
      ...(newSince !== undefined ? { since: newSince } : {}),
    };
    this.entries.set(hash, e);
    this.emit({
      kind: "token",
      hash,
      until: e.until,
      strikes: e.strikes,
      ...(e.since !== undefined ? { since: e.since } : {}),
      origin,
    });
    return true;
  }

  /** Forgets entries expired for longer than memoryMs, and old tombstones; returns the hashes. */
  sweep(): string[] {
    const now = this.opts.clock.now();
    for (const [h, at] of this.unblockedAt)
      if (at < now - this.tombstoneMs) this.unblockedAt.delete(h);
    const limit = now - this.opts.memoryMs;
    const gone: string[] = [];
    for (const [h, e] of this.entries) {
      if (e.until < limit) {
        this.entries.delete(h);
        gone.push(h);
      }
    }
    return gone;
  }

  /** Entries currently blocking. */
  activeCount(): number {
    const now = this.opts.clock.now();
    let n = 0;
    for (const e of this.entries.values()) if (e.until > now) n++;
    return n;
  }

  get size(): number {
    return this.entries.size;
  }

  all(): IterableIterator<[string, TokenBlock]> {
    return this.entries.entries();
  }

  private emit(c: BlacklistChange): void {
    for (const l of this.listeners) l(c);
  }
}

export interface DomainBlacklistOptions {
  clock: Clock;
  /** Sliding window in which invalid tokens of one domain are counted (default 1 h). */
  windowMs: number;
  /**
   * Floor of the restriction threshold: distinct invalid tokens within the window from which the
   * domain's unknown tokens are rate-limited (default 50).
   */
  threshold: number;
  /**
   * The threshold grows with the domain: max(threshold, ratio × its active tokens) (default 0.02).
   * Uninstall churn is proportional to a server's size; a fixed count would restrict big servers
   * for ordinary churn.
   */
  ratio?: number;
  /** Its active tokens (recent successful deliveries); default none, i.e. the floor applies. */
  activeTokens?: (domain: string) => number;
  /** A full block (no provider traffic at all) from blockFactor × the threshold (default 4). */
  blockFactor?: number;
  /** How long an automatic full block lasts (default 6 h). */
  blockMs: number;
}

/** ok: normal; restricted: unknown tokens rate-limited; blocked: no provider traffic. */
export type DomainState = "ok" | "restricted" | "blocked";

/** What an operator sees about one domain. */
export interface DomainStatus {
  domain: string;
  state: DomainState;
  /** Distinct invalid tokens in the window. */
  badTokens: number;
  /** Tokens with a recent successful delivery. */
  activeTokens: number;
  /** Bad tokens from which the domain is restricted (blockFactor × this: blocked). */
  threshold: number;
  /** End of a full block (epoch ms), if blocked. */
  blockedUntil?: number;
}

/**
 * Server domains that produce invalid tokens. Per domain: the distinct bad-token hashes with their
 * times (pruned to the window) and, for a full block, `until`. Two levels, so that ordinary churn
 * never costs healthy users their registrations: `restricted` (the bad-token count reached the
 * threshold; the push pipeline keeps serving tokens with a recent delivery and rate-limits unknown
 * ones) and `blocked` (blockFactor × the threshold, or an operator: no provider traffic, `wait`).
 * Restriction is derived from the window's events, so it ends by itself as they age out.
 */
export class DomainBlacklist {
  private readonly blocked = new Map<string, number>();
  /** When each block was set on this node (a block merged from elsewhere: when it arrived). */
  private readonly blockedSince = new Map<string, number>();
  private readonly events = new Map<string, Map<string, number>>();
  /** Operator unblocks: older events and blocks from other nodes / storage are ignored. */
  private readonly unblockedAt = new Map<string, number>();
  private readonly listeners: ChangeListener[] = [];

  constructor(private readonly opts: DomainBlacklistOptions) {}

  onChange(l: ChangeListener): void {
    this.listeners.push(l);
  }

  isBlocked(domain: string): boolean {
    const until = this.blocked.get(domain);
    return until !== undefined && until > this.opts.clock.now();
  }

  /** The bad-token count reached the domain's threshold (whether or not it is also blocked). */
  isRestricted(domain: string): boolean {
    const ev = this.events.get(domain);
    if (!ev) return false;
    // Cheap test first: the map may still hold events just outside the window.
    if (ev.size < this.opts.threshold) return false;
    return this.countInWindow(domain) >= this.threshold(domain);
  }

  state(domain: string): DomainState {
    if (this.isBlocked(domain)) return "blocked";
    return this.isRestricted(domain) ? "restricted" : "ok";
  }

  /** Bad tokens within the window from which `domain` is restricted. */
  threshold(domain: string): number {
    const active = this.opts.activeTokens?.(domain) ?? 0;
    return Math.max(this.opts.threshold, Math.ceil((this.opts.ratio ?? 0.02) * active));
  }

  blockedUntil(domain: string): number | undefined {
    return this.blocked.get(domain);
  }

  /**
   * Counts an invalid token against `domain` (at `at`, default now). Returns true when this changed
   * the domain's state (newly restricted or newly blocked). Events from other nodes come with origin
   * "remote" and are not re-announced as events, but a resulting full block is (it is this node's
   * conclusion, mergeable anyway).
   */
  recordBadToken(
    domain: string,
    hash: string,
    at?: number,
    origin: ChangeOrigin = "local",
  ): boolean {
    const now = this.opts.clock.now();
    const t = at ?? now;
    const unblocked = this.unblockedAt.get(domain);
    if (unblocked !== undefined && t < unblocked) return false;
    let ev = this.events.get(domain);
    if (!ev) {
      ev = new Map();
      this.events.set(domain, ev);
    }
    const prev = ev.get(hash);
    if (prev !== undefined && prev >= t) return false;
    const before = this.state(domain);
    ev.set(hash, t);
    this.emit({ kind: "domain-event", domain, hash, at: t, origin });
    this.prune(domain, ev, now);
    const count = ev.size;
    const threshold = this.threshold(domain);
    if (count >= threshold * (this.opts.blockFactor ?? 4) && before !== "blocked") {
      const until = now + this.opts.blockMs;
      this.blocked.set(domain, until);
      this.blockedSince.set(domain, now);
      this.emit({ kind: "domain", domain, until, origin: "local" });
      return true;
    }
    return before === "ok" && count >= threshold;
  }

  /** An operator blocks `domain` until `until` (no provider traffic; requests get `wait`). */
  block(domain: string, until: number): void {
    this.blocked.set(domain, Math.max(until, this.blocked.get(domain) ?? 0));
    this.blockedSince.set(domain, this.opts.clock.now());
    this.emit({ kind: "domain", domain, until, origin: "local" });
  }

  /**
   * An operator lifts a domain's block and restriction: its block and its bad-token events from
   * before `at` (default now) are forgotten, and older ones arriving later (other nodes, storage)
   * are ignored. Later events and a block that started after `at` stay: a tombstone replayed by a
   * resync must not undo what happened since.
   */
  unblock(domain: string, origin: ChangeOrigin = "local", at?: number): boolean {
    const now = at ?? this.opts.clock.now();
    let had = false;
    if (this.blocked.has(domain) && (this.blockedSince.get(domain) ?? 0) <= now) {
      this.blocked.delete(domain);
      this.blockedSince.delete(domain);
      had = true;
    }
    const ev = this.events.get(domain);
    if (ev) {
      for (const [h, t] of ev) {
        if (t <= now) {
          ev.delete(h);
          had = true;
        }
      }
      if (ev.size === 0) this.events.delete(domain);
    }
    this.unblockedAt.set(domain, Math.max(now, this.unblockedAt.get(domain) ?? 0));
    this.emit({ kind: "domain-unblock", domain, at: now, origin });
    return had;
  }

  /** When an operator last unblocked this domain (within max(block, window)), if at all. */
  unblockedSince(domain: string): number | undefined {
    return this.unblockedAt.get(domain);
  }

  /** Domain tombstones (domain → unblock time), for a resync. */
  allUnblocks(): IterableIterator<[string, number]> {
    return this.unblockedAt.entries();
  }

  /** How long a domain tombstone is kept: as long as a block or a counted event can matter. */
  get tombstoneMs(): number {
    return Math.max(this.opts.blockMs, this.opts.windowMs);
  }

  /** Applies a domain block from another node or storage (max-merge). */
  merge(domain: string, until: number, origin: ChangeOrigin = "remote"): boolean {
    const unblocked = this.unblockedAt.get(domain);
    // A block that started before the operator's unblock is the one that was lifted.
    if (unblocked !== undefined && until - this.opts.blockMs < unblocked) return false;
    const prev = this.blocked.get(domain);
    if (prev !== undefined && prev >= until) return false;
    this.blocked.set(domain, until);
    // its start is unknown here: the automatic block's (a longer operator block counts as older)
    this.blockedSince.set(
      domain,
      Math.max(
        this.blockedSince.get(domain) ?? 0,
        Math.min(until - this.opts.blockMs, this.opts.clock.now()),
      ),
    );
    this.emit({ kind: "domain", domain, until, origin });
    return true;
  }

  /** Drops expired blocks, events outside the window and unblock marks older than a block. */
  sweep(): void {
    const now = this.opts.clock.now();
    for (const [d, until] of this.blocked) {
      if (until > now) continue;
      this.blocked.delete(d);
      this.blockedSince.delete(d);
    }
    for (const [d, ev] of this.events) this.prune(d, ev, now);
    const keep = Math.max(this.opts.blockMs, this.opts.windowMs);
    for (const [d, at] of this.unblockedAt) if (at < now - keep) this.unblockedAt.delete(d);
  }

  /** Domains currently blocked. */
  activeCount(): number {
    const now = this.opts.clock.now();
    let n = 0;
    for (const u of this.blocked.values()) if (u > now) n++;
    return n;
  }

  /** Domains currently restricted but not blocked. */
  restrictedCount(): number {
    let n = 0;
    for (const d of [...this.events.keys()]) if (!this.isBlocked(d) && this.isRestricted(d)) n++;
    return n;
  }

  /** Every domain with a block or bad tokens in the window, for operators. */
  statuses(): DomainStatus[] {
    const now = this.opts.clock.now();
    const names = new Set<string>(this.events.keys());
    for (const [d, u] of this.blocked) if (u > now) names.add(d);
    return [...names].sort().map((domain) => this.status(domain));
  }

  status(domain: string): DomainStatus {
    const until = this.blocked.get(domain);
    return {
      domain,
      state: this.state(domain),
      badTokens: this.countInWindow(domain),
      activeTokens: this.opts.activeTokens?.(domain) ?? 0,
      threshold: this.threshold(domain),
      ...(until !== undefined && until > this.opts.clock.now() ? { blockedUntil: until } : {}),
    };
  }

  allBlocks(): IterableIterator<[string, number]> {
    return this.blocked.entries();
  }

  /** Every counted bad-token event inside the window: [domain, token hash, at]. */
  *allEvents(): IterableIterator<[string, string, number]> {
    const limit = this.opts.clock.now() - this.opts.windowMs;
    for (const [d, ev] of this.events) for (const [h, at] of ev) if (at > limit) yield [d, h, at];
  }

  get windowMs(): number {
    return this.opts.windowMs;
  }

  /** Length of an automatic full block. */
  get blockMs(): number {
    return this.opts.blockMs;
  }

  /** Bad-token count of `domain` inside the current window. */
  countInWindow(domain: string): number {
    const ev = this.events.get(domain);
    if (!ev) return 0;
    this.prune(domain, ev, this.opts.clock.now());
    return ev.size;
  }

  private prune(domain: string, ev: Map<string, number>, now: number): void {
    const limit = now - this.opts.windowMs;
    for (const [h, t] of ev) if (t <= limit) ev.delete(h);
    if (ev.size === 0) this.events.delete(domain);
  }

  private emit(c: BlacklistChange): void {
    for (const l of this.listeners) l(c);
  }
}
