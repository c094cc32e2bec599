import type { Clock, TimerHandle } from "./clock.js";

export type RateDecision = "send" | "queued" | "dropped";

export interface RateLimiterOptions<T> {
  clock: Clock;
  /** Minimum spacing of two pushes to one token (default 20 s). */
  windowMs: number;
  /** Called when a queued push falls due; the limiter has already recorded it as sent. */
  onDue: (key: string, item: T) => void;
  /** Entries idle for longer than this after their window are forgotten (default: windowMs). */
  idleMs?: number;
  /** The spacing for one item when it differs from windowMs (per-app rate limits). */
  windowOf?: (item: T) => number | undefined;
}

interface Queued<T> {
  due: number;
  item: T;
}

/**
 * Per-token push spacing: nothing sent recently → send now; one sent within the window → queue
 * exactly one more for the end of the window; one already queued → drop.
 *
 * `check` is synchronous check-and-set, so two pushes arriving in the same tick can never both pass.
 * Memory: one Map entry (hashed-token string → number "next allowed send time") per recent token;
 * queued pushes live in a second, much smaller map plus a binary heap of due times driven by a single
 * timer (no timer per token).
 */
export class RateLimiter<T> {
  private readonly nextAllowed = new Map<string, number>();
  private readonly queued = new Map<string, Queued<T>>();
  private readonly heap: { due: number; key: string }[] = [];
  private timer: TimerHandle | undefined;
  private timerDue = Infinity;
  private sweepIter: Iterator<[string, number]> | undefined;
  private readonly clock: Clock;
  private readonly windowMs: number;
  private readonly idleMs: number;
  private readonly onDue: (key: string, item: T) => void;
  private readonly windowOf: ((item: T) => number | undefined) | undefined;

  constructor(opts: RateLimiterOptions<T>) {
    this.clock = opts.clock;
    this.windowMs = opts.windowMs;
    this.windowOf = opts.windowOf;
    this.idleMs = opts.idleMs ?? opts.windowMs;
    this.onDue = opts.onDue;
  }

  /** Decides for one push request and records the decision before returning. */
  check(key: string, item: T): RateDecision {
    const now = this.clock.now();
    const next = this.nextAllowed.get(key);
    if (next === undefined || now >= next) {
      if (this.queued.has(key)) return "dropped"; // a due push is about to go out for this token
      this.nextAllowed.set(key, now + (this.windowOf?.(item) ?? this.windowMs));
      return "send";
    }
    if (this.queued.has(key)) return "dropped";
    this.queued.set(key, { due: next, item });
    this.pushHeap(next, key);
    return "queued";
  }

  /**
   * The provider said "too many requests" for this token: nothing more goes out before `now + ms`;
   * a push already queued moves to that time (further requests keep being dropped).
   */
  hardLimit(key: string, ms: number): void {
    const until = this.clock.now() + ms;
    const cur = this.nextAllowed.get(key);
    if (cur === undefined || cur < until) this.nextAllowed.set(key, until);
    const q = this.queued.get(key);
    if (q && q.due < until) {
      q.due = until;
      this.pushHeap(until, key);
    }
  }

  /** Tokens with state (recently pushed or queued). */
  get size(): number {
    return this.nextAllowed.size;
  }

  get queuedCount(): number {
    return this.queued.size;
  }

  /** What the limiter holds for one token: next allowed send, queued push's due time. */
  state(key: string): { nextAllowed?: number; queuedDue?: number } {
    const next = this.nextAllowed.get(key);
    const q = this.queued.get(key);
    return {
      ...(next !== undefined ? { nextAllowed: next } : {}),
      ...(q ? { queuedDue: q.due } : {}),
    };
  }

  /** Every queued push (for operators), in no particular order. */
  *queuedEntries(): IterableIterator<{ key: string; due: number; item: T }> {
    for (const [key, q] of this.queued) yield { key, due: q.due, item: q.item };
  }

  /** Removes and returns every queued push (for persistence at shutdown). */
  drainQueued(): { key: string; due: number; item: T }[] {
    const out = [...this.queued].map(([key, q]) => ({ key, due: q.due, item: q.item }));
    this.queued.clear();
    this.heap.length = 0;
    if (this.timer) this.clock.clearTimer(this.timer);
    this.timer = undefined;
    this.timerDue = Infinity;
    return out;
  }

  /** Re-queues a push restored from persistence; it goes out at `due` (or at once if past). */
  restoreQueued(key: string, due: number, item: T): void {
    if (this.queued.has(key)) return;
    const next = this.nextAllowed.get(key);
    if (next === undefined || next < due) this.nextAllowed.set(key, due);
    this.queued.set(key, { due, item });
    this.pushHeap(due, key);
  }

  /**
   * Forgets up to `budget` idle entries (next allowed time far enough in the past). Call it
   * periodically; it resumes where it stopped so a sweep over a million entries never blocks long.
   */
  sweep(budget = 20_000): number {
    const limit = this.clock.now() - this.idleMs;
    let removed = 0;
    if (!this.sweepIter) this.sweepIter = this.nextAllowed.entries();
    for (let i = 0; i < budget; i++) {
      const r = this.sweepIter.next();
      if (r.done) {
        this.sweepIter = undefined;
        break;
      }
      const [key, next] = r.value;
      if (next <= limit && !this.queued.has(key)) {
        this.nextAllowed.delete(key);
        removed++;
      }
    }
    return removed;
  }

  /** Stops the due-timer (queued pushes stay queued until drained). */
  close(): void {
    if (this.timer) this.clock.clearTimer(this.timer);
    this.timer = undefined;
    this.timerDue = Infinity;
  }

  private pushHeap(due: number, key: string): void {
    const h = this.heap;
    h.push({ due, key });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]!.due <= h[i]!.due) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
    this.arm();
  }

  private popHeap(): { due: number; key: string } | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && h[l]!.due < h[m]!.due) m = l;
        if (r < h.length && h[r]!.due < h[m]!.due) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }

  private arm(): void {
    const top = this.heap[0];
    if (!top) return;
    if (this.timer && this.timerDue <= top.due) return;
    if (this.timer) this.clock.clearTimer(this.timer);
    this.timerDue = top.due;
    this.timer = this.clock.setTimer(top.due - this.clock.now(), () => this.fire());
  }

  private fire(): void {
    this.timer = undefined;
    this.timerDue = Infinity;
    const now = this.clock.now();
    const due: { key: string; item: T }[] = [];
    while (this.heap.length > 0 && this.heap[0]!.due <= now) {
      const { due: d, key } = this.popHeap()!;
      const q = this.queued.get(key);
      if (!q || q.due !== d) continue; // stale heap entry (moved by hardLimit or drained)
      this.queued.delete(key);
      this.nextAllowed.set(key, now + (this.windowOf?.(q.item) ?? this.windowMs));
      due.push({ key, item: q.item });
    }
    this.arm();
    for (const d of due) this.onDue(d.key, d.item);
  }
}
