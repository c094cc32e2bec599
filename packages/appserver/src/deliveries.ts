import type { Clock } from "./clock.js";

export interface DeliveryMemoryOptions {
  clock: Clock;
  /** A token counts as healthy (and active for its domain) this long after a delivery (7 d). */
  healthyMs: number;
}

/** A delivery worth persisting: the first for a token, or the first after `refreshMs`. */
export interface DeliveryRecord {
  hash: string;
  domain: string;
  at: number;
}

// Value packing: seconds since epoch × 2^20 + domain id. One number per token instead of an object
// keeps the Map at ~70 bytes per entry (a server with 1M active tokens: ~70 MB).
const DOMAIN_BITS = 2 ** 20;

/**
 * Tokens with a recent successful delivery, per domain. Two uses: a restricted domain's healthy
 * tokens keep getting pushes (only unknown tokens are rate-limited), and the domain's restriction
 * threshold scales with its number of active tokens. Per node, like the rate limits: a node that has
 * not delivered to a token treats it as unknown (persisted, so a restart keeps the knowledge).
 */
export class DeliveryMemory {
  private readonly last = new Map<string, number>();
  private readonly domainIds = new Map<string, number>();
  private readonly domainNames: string[] = [];
  /** Entries per domain id (expired ones included until the next sweep). */
  private readonly active: number[] = [];

  constructor(private readonly o: DeliveryMemoryOptions) {}

  private idOf(domain: string): number {
    let id = this.domainIds.get(domain);
    if (id === undefined) {
      id = this.domainNames.length;
      if (id >= DOMAIN_BITS) throw new Error("too many distinct domains");
      this.domainIds.set(domain, id);
      this.domainNames.push(domain);
      this.active.push(0);
    }
    return id;
  }

  /**
   * Records a successful delivery. Returns its time (epoch ms) when it is worth persisting: the
   * token's first, a new domain, or the stored time older than `refreshMs` (bounds the writes to
   * one per token per refresh period); else undefined. A number, not a record: no object per push.
   */
  delivered(hash: string, domain: string, refreshMs = 3_600_000, at?: number): number | undefined {
    const now = at ?? this.o.clock.now();
    const id = this.idOf(domain);
    const prev = this.last.get(hash);
    const sec = Math.floor(now / 1000);
    if (prev !== undefined) {
      const prevId = prev % DOMAIN_BITS;
      const prevAt = Math.floor(prev / DOMAIN_BITS) * 1000;
      this.active[prevId]!--;
      this.last.set(hash, sec * DOMAIN_BITS + id);
      this.active[id]!++;
      return prevId !== id || now - prevAt >= refreshMs ? now : undefined;
    }
    this.last.set(hash, sec * DOMAIN_BITS + id);
    this.active[id]!++;
    return now;
  }

  /** Restores a persisted delivery (ignored when already expired or older than what is known). */
  restore(hash: string, domain: string, at: number): void {
    const now = this.o.clock.now();
    if (at < now - this.o.healthyMs) return;
    const prev = this.last.get(hash);
    if (prev !== undefined && Math.floor(prev / DOMAIN_BITS) * 1000 >= at) return;
    this.delivered(hash, domain, 0, at);
  }

  /** A delivery to this token from this domain succeeded within healthyMs. */
  isHealthy(hash: string, domain: string): boolean {
    const v = this.last.get(hash);
    if (v === undefined) return false;
    if (this.domainIds.get(domain) !== v % DOMAIN_BITS) return false;
    return Math.floor(v / DOMAIN_BITS) * 1000 >= this.o.clock.now() - this.o.healthyMs;
  }

  /** Last successful delivery to `hash` (epoch ms, second precision) and its domain. */
  lastDelivery(hash: string): { at: number; domain: string } | undefined {
    const v = this.last.get(hash);
    if (v === undefined) return undefined;
    return { at: Math.floor(v / DOMAIN_BITS) * 1000, domain: this.domainNames[v % DOMAIN_BITS]! };
  }

  /** The provider called the token invalid: it is no longer healthy. */
  forget(hash: string): void {
    const v = this.last.get(hash);
    if (v === undefined) return;
    this.last.delete(hash);
    this.active[v % DOMAIN_BITS]!--;
  }

  /** Tokens of `domain` with a delivery within healthyMs (exact after each sweep). */
  activeTokens(domain: string): number {
    const id = this.domainIds.get(domain);
    return id === undefined ? 0 : Math.max(0, this.active[id]!);
  }

  /** Forgets deliveries older than healthyMs; returns how many. */
  sweep(): number {
    const limit = Math.floor((this.o.clock.now() - this.o.healthyMs) / 1000);
    let n = 0;
    for (const [h, v] of this.last) {
      if (Math.floor(v / DOMAIN_BITS) < limit) {
        this.last.delete(h);
        this.active[v % DOMAIN_BITS]!--;
        n++;
      }
    }
    return n;
  }

  get size(): number {
    return this.last.size;
  }
}
