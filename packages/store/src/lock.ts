/**
 * A cross-process lease lock in the database (the idea of matrix-rust-sdk's `lease_locks`).
 *
 * One SQL upsert takes the lock when this holder already has it or the lease expired; the
 * generation increases whenever a *different* holder takes it, so a holder that sees a generation
 * other than the one it last held knows another process touched the store and reloads its caches.
 * The lease is renewed in the background; a holder that is frozen or killed stops renewing and
 * loses the lock when the lease runs out. Holders are named "<role>:<anything>" (e.g. "nse:4711")
 * so other processes can tell which role holds it.
 */
import { EventEmitter } from "node:events";
import { eq } from "drizzle-orm";
import type { ProcessLockRecord, ProcessRole } from "@lichen/schema";
import { processLocks } from "./schema.js";
import type { Store, StoreFence, StoreTx } from "./store.js";
import { LockTimeoutError, StoreError } from "./errors.js";

export interface ProcessLockOptions {
  /** Lock name, e.g. "xmpp-session". */
  key: string;
  /** "<role>:<id>", e.g. "main:app" or "nse:4711". The same holder string re-takes its own lock. */
  holder: string;
  /** Lease length in ms (default 2000). */
  leaseMs?: number;
  /** Renewal period in ms (default leaseMs / 5). */
  renewEveryMs?: number;
  /** Epoch-ms clock for lease times (default: the store's clock). */
  clock?: () => number;
}

export interface LockAttempt {
  acquired: boolean;
  /** Generation now in the row (ours when acquired). */
  generation: number;
  /** Current holder when not acquired. */
  holder?: string;
  leaseExpiresAt?: number;
  /**
   * When acquired from another holder: its row as this transaction found it (`leaseExpiresAt` 0:
   * it had released the lock; otherwise its lease had run out).
   */
  previous?: { holder: string; leaseExpiresAt: number };
}

export interface ProcessLockEvents {
  /** Renewal found that another holder took the lock (our lease had expired). */
  lost: [info: { key: string; holder: string; generation: number; newHolder: string | null }];
  /** We (re)acquired the lock and another holder had it in between: reload caches. */
  "generation-changed": [info: { key: string; previous: number; current: number }];
  acquired: [info: { key: string; generation: number }];
  released: [info: { key: string; generation: number }];
}

/** The role a holder string belongs to ("nse:4711" -> "nse"); null when it names no role. */
export function roleOfHolder(holder: string): ProcessRole | null {
  const role = holder.split(":", 1)[0];
  return role === "main" || role === "nse" || role === "share" ? role : null;
}

export class ProcessLock extends EventEmitter<ProcessLockEvents> {
  readonly key: string;
  readonly holder: string;
  readonly leaseMs: number;
  readonly renewEveryMs: number;
  private readonly clock: () => number;
  private held: number | null = null;
  private lastHeld: number | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private renewing = false;

  constructor(
    readonly store: Store,
    opts: ProcessLockOptions,
  ) {
    super();
    if (!opts.key) throw new StoreError("ProcessLock needs a key");
    if (!opts.holder) throw new StoreError("ProcessLock needs a holder");
    this.key = opts.key;
    this.holder = opts.holder;
    this.leaseMs = opts.leaseMs ?? 2000;
    this.renewEveryMs = opts.renewEveryMs ?? Math.max(10, Math.floor(this.leaseMs / 5));
    if (this.renewEveryMs >= this.leaseMs)
      throw new StoreError("renewEveryMs must be shorter than leaseMs");
    this.clock = opts.clock ?? store.clock;
  }

  /** Generation while we hold the lock, else null. */
  get generation(): number | null {
    return this.held;
  }

  /**
   * How many times this object went from not holding to holding the lock. A connection opened
   * under one acquisition must be ignored after the lock was lost and taken again, even when the
   * generation is the same (no other holder in between).
   */
  get acquisitions(): number {
    return this.acquiredCount;
  }
  private acquiredCount = 0;

  /** The fencing token for writes made while we hold the lock (null: not held). */
  fence(): StoreFence | null {
    return this.held === null
      ? null
      : { key: this.key, holder: this.holder, generation: this.held };
  }

  /** The lock row as stored (null: never taken). */
  current(): ProcessLockRecord | null {
    const row = this.store.read((tx) =>
      tx.select().from(processLocks).where(eq(processLocks.key, this.key)).get(),
    );
    return row
      ? {
          key: row.key,
          holder: row.holder,
          leaseExpiresAt: row.leaseExpiresAt,
          generation: row.generation,
        }
      : null;
  }

  /** Whether the row says someone (maybe us) holds an unexpired lease right now. */
  heldByOther(): ProcessLockRecord | null {
    const row = this.current();
    if (!row || row.holder === this.holder || row.leaseExpiresAt <= this.clock()) return null;
    return row;
  }

  /**
   * One attempt: take the lock if we hold it or the lease expired. Never waits for the lock, but
   * may wait (synchronously, bounded by the store's maxWaitMs) for the database: prefer
   * tryAcquireAsync where a deadline matters.
   */
  tryAcquire(): LockAttempt {
    return this.afterAttempt(this.store.write((tx) => this.attempt(tx)));
  }

  /**
   * Like tryAcquire(), but waits for the database without blocking the event loop, and gives up
   * with StoreLockTimeoutError at `deadlineAt` (a process stopped inside a transaction holds the
   * database for as long as it is stopped).
   */
  async tryAcquireAsync(opts: { deadlineAt?: number } = {}): Promise<LockAttempt> {
    const r = await this.store.writeAsync((tx) => this.attempt(tx), {
      yieldFirst: false,
      ...(opts.deadlineAt !== undefined ? { deadlineAt: opts.deadlineAt } : {}),
    });
    return this.afterAttempt(r);
  }

  private attempt(tx: StoreTx): LockAttempt {
    const now = this.clock();
    const row = tx.select().from(processLocks).where(eq(processLocks.key, this.key)).get();
    const taken = tx.sqlite
      .prepare(
        `INSERT INTO process_locks (key, holder, lease_expires_at, generation, acquired_at)
         VALUES (@key, @holder, @expires, 1, @now)
         ON CONFLICT (key) DO UPDATE SET
           holder = excluded.holder,
           lease_expires_at = excluded.lease_expires_at,
           generation = CASE WHEN process_locks.holder = excluded.holder
                             THEN process_locks.generation ELSE process_locks.generation + 1 END,
           acquired_at = CASE WHEN process_locks.holder = excluded.holder
                              THEN process_locks.acquired_at ELSE excluded.acquired_at END
         WHERE process_locks.holder = excluded.holder OR process_locks.lease_expires_at <= @now
         RETURNING generation`,
      )
      .get({ key: this.key, holder: this.holder, expires: now + this.leaseMs, now }) as
      { generation: number } | undefined;
    if (taken)
      return {
        acquired: true,
        generation: taken.generation,
        ...(row && row.holder !== this.holder
          ? { previous: { holder: row.holder, leaseExpiresAt: row.leaseExpiresAt } }
          : {}),
      };
    return {
      acquired: false,
      generation: row?.generation ?? 0,
      ...(row ? { holder: row.holder, leaseExpiresAt: row.leaseExpiresAt } : {}),
    };
  }

  private afterAttempt(result: LockAttempt): LockAttempt {
    if (result.acquired) this.onAcquired(result.generation);
    return result;
  }

  /** Wait for the lock (back-off 5 ms doubling to 50 ms, bounded by the lease end). */
  async acquire(opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<number> {
    const started = Date.now();
    const timeoutMs = opts.timeoutMs ?? Infinity;
    for (let attempt = 0; ; attempt++) {
      opts.signal?.throwIfAborted();
      const r = await this.tryAcquireAsync(
        Number.isFinite(timeoutMs) ? { deadlineAt: started + timeoutMs } : {},
      );
      if (r.acquired) return r.generation;
      const elapsed = Date.now() - started;
      if (elapsed >= timeoutMs) {
        throw new LockTimeoutError(
          `lock "${this.key}" still held by ${r.holder ?? "?"} (lease until ${r.leaseExpiresAt ?? "?"}) after ${timeoutMs} ms`,
          r.holder ?? null,
        );
      }
      let wait = Math.min(50, 5 * 2 ** attempt);
      if (r.leaseExpiresAt !== undefined)
        wait = Math.max(1, Math.min(wait, r.leaseExpiresAt - this.clock() + 1));
      wait = Math.min(wait, timeoutMs - elapsed);
      await abortableSleep(wait, opts.signal);
    }
  }

  /** Give the lock up now (lease set to 0, so any holder may take it at once). */
  release(): void {
    this.stopRenewing();
    const generation = this.held;
    if (generation === null) return;
    this.held = null;
    if (this.store.closed) return;
    this.store.write((tx) =>
      tx.sqlite
        .prepare(
          "UPDATE process_locks SET lease_expires_at = 0 WHERE key = ? AND holder = ? AND generation = ?",
        )
        .run(this.key, this.holder, generation),
    );
    this.emit("released", { key: this.key, generation });
  }

  /**
   * release() that waits for the database without blocking the event loop, at most until
   * `deadlineAt`. If the database stays taken, the lock is forgotten here and its lease simply
   * runs out (nobody else can write meanwhile either).
   */
  async releaseAsync(opts: { deadlineAt?: number } = {}): Promise<void> {
    this.stopRenewing();
    const generation = this.held;
    if (generation === null) return;
    this.held = null;
    if (this.store.closed) return;
    try {
      await this.store.writeAsync(
        (tx) =>
          tx.sqlite
            .prepare(
              "UPDATE process_locks SET lease_expires_at = 0 WHERE key = ? AND holder = ? AND generation = ?",
            )
            .run(this.key, this.holder, generation),
        {
          yieldFirst: false,
          ...(opts.deadlineAt !== undefined ? { deadlineAt: opts.deadlineAt } : {}),
        },
      );
    } catch (e) {
      this.store.logger({ event: "store.lock.release-failed", key: this.key, error: String(e) });
      return;
    }
    this.emit("released", { key: this.key, generation });
  }

  /** Extend the lease now. Returns false when the lock was lost. */
  renew(): boolean {
    if (this.held === null) return false;
    const generation = this.held;
    return this.afterRenew(
      generation,
      this.store.write((tx) => this.renewIn(tx, generation)),
    );
  }

  /**
   * renew() without blocking the event loop (the background timer uses it). It waits for the
   * database at most until the lease would end: a process stopped inside a transaction blocks
   * every writer, so nobody can take the lock meanwhile either; the next tick tries again.
   */
  async renewAsync(): Promise<boolean> {
    if (this.held === null) return false;
    const generation = this.held;
    const changes = await this.store.writeAsync((tx) => this.renewIn(tx, generation), {
      yieldFirst: false,
      deadlineAt: Date.now() + this.leaseMs,
    });
    // Released (or lost) while we waited for the database: nothing to report.
    if (this.held !== generation) return false;
    return this.afterRenew(generation, changes);
  }

  private renewIn(tx: StoreTx, generation: number): number {
    return tx.sqlite
      .prepare(
        "UPDATE process_locks SET lease_expires_at = ? WHERE key = ? AND holder = ? AND generation = ?",
      )
      .run(this.clock() + this.leaseMs, this.key, this.holder, generation).changes;
  }

  private afterRenew(generation: number, changes: number): boolean {
    if (changes === 1) return true;
    this.stopRenewing();
    this.held = null;
    const row = this.current();
    this.store.logger({
      event: "store.lock.lost",
      key: this.key,
      holder: this.holder,
      newHolder: row?.holder ?? null,
    });
    this.emit("lost", {
      key: this.key,
      holder: this.holder,
      generation,
      newHolder: row?.holder ?? null,
    });
    return false;
  }

  private onAcquired(generation: number): void {
    const previous = this.held ?? this.lastHeld;
    const fresh = this.held === null;
    this.held = generation;
    this.lastHeld = generation;
    if (fresh) {
      this.acquiredCount++;
      this.startRenewing();
      this.emit("acquired", { key: this.key, generation });
    }
    if (previous !== null && previous !== generation) {
      this.emit("generation-changed", { key: this.key, previous, current: generation });
    }
  }

  private startRenewing(): void {
    this.stopRenewing();
    // Unref'd: holding a lock must not keep a process alive that has nothing else to do.
    this.renewTimer = setInterval(() => {
      if (this.renewing || this.store.closed) return;
      this.renewing = true;
      this.renewAsync()
        .catch((e: unknown) =>
          this.store.logger({ event: "store.lock.renew-failed", key: this.key, error: String(e) }),
        )
        .finally(() => (this.renewing = false));
    }, this.renewEveryMs);
    this.renewTimer.unref();
  }

  private stopRenewing(): void {
    if (this.renewTimer) clearInterval(this.renewTimer);
    this.renewTimer = null;
  }
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
