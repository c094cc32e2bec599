import type { Clock } from "./clock.js";

/** A blacklisted token: keyed by its hash; `strikes` = how many times it was reported invalid. */
export interface TokenBlock {
  until: number;
  strikes: number;
}

/** Where a change came from: this node, or another node / the persisted state. */
export type ChangeOrigin = "local" | "remote";

export type BlacklistChange =
  | {
      kind: "token";
      hash: string;
      until: number;
      strikes: number;
      domain?: string;
      origin: ChangeOrigin;
    }
  | { kind: "domain"; domain: string; until: number; origin: ChangeOrigin }
  | { kind: "domain-event"; domain: string; hash: string; at: number; origin: ChangeOrigin };

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
  hit(hash: string): boolean {
    const e = this.entries.get(hash);
    const now = this.opts.clock.now();
    if (!e || e.until <= now) return false;
    const ext = this.opts.hitExtensionMs;
    if (e.until - now < ext / 2) {
      e.until = now + ext;
      this.emit({ kind: "token", hash, until: e.until, strikes: e.strikes, origin: "local" });
    }
    return true;
  }

  /** The provider reported the token invalid: block it (longer when it was blocked before). */
  block(hash: string, domain?: string): TokenBlock {
    const now = this.opts.clock.now();
    const prev = this.entries.get(hash);
    const strikes = (prev?.strikes ?? 0) + 1;
    const until = Math.max(
      prev?.until ?? 0,
      now + (strikes > 1 ? this.opts.repeatBlockMs : this.opts.firstBlockMs),
    );
    const e = { until, strikes };
    this.entries.set(hash, e);
    this.emit({
      kind: "token",
      hash,
      until,
      strikes,
      ...(domain ? { domain } : {}),
      origin: "local",
    });
    return e;
  }

  /** Applies an entry from another node or from storage. Returns true when local state changed. */
  merge(hash: string, until: number, strikes: number, origin: ChangeOrigin = "remote"): boolean {
    const prev = this.entries.get(hash);
    if (prev && prev.until >= until && prev.strikes >= strikes) return false;
    const e = {
      until: Math.max(prev?.until ?? 0, until),
      strikes: Math.max(prev?.strikes ?? 0, strikes),
    };
    this.entries.set(hash, e);
    this.emit({ kind: "token", hash, until: e.until, strikes: e.strikes, origin });
    return true;
  }

  /** Forgets entries expired for longer than memoryMs; returns their hashes. */
  sweep(): string[] {
    const limit = this.opts.clock.now() - this.opts.memoryMs;
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
  /** Distinct invalid tokens within the window that blacklist the domain. */
  threshold: number;
  /** How long a domain stays blacklisted (default 6 h). */
  blockMs: number;
}

/**
 * Server domains that produced too many invalid tokens within a sliding window.
 * Per domain: the distinct bad-token hashes with their times (pruned to the window) and `until`.
 */
export class DomainBlacklist {
  private readonly blocked = new Map<string, number>();
  private readonly events = new Map<string, Map<string, number>>();
  private readonly listeners: ChangeListener[] = [];

  constructor(private readonly opts: DomainBlacklistOptions) {}

  onChange(l: ChangeListener): void {
    this.listeners.push(l);
  }

  isBlocked(domain: string): boolean {
    const until = this.blocked.get(domain);
    return until !== undefined && until > this.opts.clock.now();
  }

  blockedUntil(domain: string): number | undefined {
    return this.blocked.get(domain);
  }

  /**
   * Counts an invalid token against `domain` (at `at`, default now). Returns true when this made the
   * domain blacklisted. Events from other nodes come with origin "remote" and are not re-announced
   * as events, but a resulting domain block is (it is this node's conclusion, mergeable anyway).
   */
  recordBadToken(
    domain: string,
    hash: string,
    at?: number,
    origin: ChangeOrigin = "local",
  ): boolean {
    const now = this.opts.clock.now();
    const t = at ?? now;
    let ev = this.events.get(domain);
    if (!ev) {
      ev = new Map();
      this.events.set(domain, ev);
    }
    const prev = ev.get(hash);
    if (prev !== undefined && prev >= t) return false;
    ev.set(hash, t);
    this.emit({ kind: "domain-event", domain, hash, at: t, origin });
    this.prune(domain, ev, now);
    if (ev.size >= this.opts.threshold && !this.isBlocked(domain)) {
      const until = now + this.opts.blockMs;
      this.blocked.set(domain, until);
      this.emit({ kind: "domain", domain, until, origin: "local" });
      return true;
    }
    return false;
  }

  /** Applies a domain block from another node or storage (max-merge). */
  merge(domain: string, until: number, origin: ChangeOrigin = "remote"): boolean {
    const prev = this.blocked.get(domain);
    if (prev !== undefined && prev >= until) return false;
    this.blocked.set(domain, until);
    this.emit({ kind: "domain", domain, until, origin });
    return true;
  }

  /** Drops expired blocks and events outside the window. */
  sweep(): void {
    const now = this.opts.clock.now();
    for (const [d, until] of this.blocked) if (until <= now) this.blocked.delete(d);
    for (const [d, ev] of this.events) this.prune(d, ev, now);
  }

  activeCount(): number {
    const now = this.opts.clock.now();
    let n = 0;
    for (const u of this.blocked.values()) if (u > now) n++;
    return n;
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
