import Database from "better-sqlite3";
import { and, eq, isNull, lt, lte, or, sql } from "drizzle-orm";
import { drizzle, type BetterSQLite3Database } from "drizzle-orm/better-sqlite3";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import { fileURLToPath } from "node:url";
import type { BlacklistChange } from "../blacklist.js";
import type { DeliveryRecord } from "../deliveries.js";
import * as schema from "./schema.js";

const MIGRATIONS = fileURLToPath(new URL("../../migrations", import.meta.url));
const HASH = /^[0-9a-f]{32}$/;
const DELIVERY_BATCH_MS = 1000;

export interface PersistedState {
  tokens: { hash: string; until: number; strikes: number; since?: number }[];
  /** Operators' unblocks (tombstones): applied before the blocks, which they may outweigh. */
  tokenUnblocks: { hash: string; at: number }[];
  domainUnblocks: { domain: string; at: number }[];
  domains: { domain: string; until: number }[];
  events: { domain: string; hash: string; at: number }[];
  deliveries: { hash: string; domain: string; at: number }[];
  queued: {
    tokenHash: string;
    sealedToken: string;
    app: string;
    domain: string;
    important: boolean;
    due: number;
    retries?: number;
    expiresAt?: number;
  }[];
  /** Rows that failed validation (skipped, reported, never fatal). */
  rejected: { table: string; reason: string }[];
}

const isInt = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v);

/**
 * SQLite persistence of blacklists, domain counters and queued pushes (Drizzle over better-sqlite3).
 * Changes are buffered and written in one transaction per event-loop turn, off the request path.
 */
export class AppServerStore {
  readonly db: BetterSQLite3Database<typeof schema>;
  private readonly sqlite: Database.Database;
  private pending: (BlacklistChange | ({ kind: "delivery" } & DeliveryRecord))[] = [];
  private flushScheduled = false;
  /**
   * Deliveries to write, as columns (no object per delivered push: at thousands of pushes per
   * second, a second's worth of records outlived young-generation GCs and was copied by each).
   */
  private deliveryHashes: string[] = [];
  private deliveryDomains: string[] = [];
  private deliveryTimes: number[] = [];
  private deliveryTimer: NodeJS.Timeout | undefined;
  private readonly statements: ReturnType<typeof prepareStatements>;

  constructor(file: string) {
    this.sqlite = new Database(file);
    this.sqlite.pragma("journal_mode = WAL");
    this.sqlite.pragma("synchronous = NORMAL");
    this.sqlite.pragma("busy_timeout = 5000");
    this.db = drizzle(this.sqlite, { schema });
    migrate(this.db, { migrationsFolder: MIGRATIONS });
    this.statements = prepareStatements(this.db, this.sqlite);
  }

  /** Loads everything, validating each row; bad rows are reported in `rejected` and skipped. */
  load(): PersistedState {
    const st: PersistedState = {
      tokens: [],
      tokenUnblocks: [],
      domainUnblocks: [],
      domains: [],
      events: [],
      deliveries: [],
      queued: [],
      rejected: [],
    };
    // Raw selects: a corrupt row (wrong type in a column) must be reported, not crash the mapping.
    for (const r of this.sqlite
      .prepare("SELECT hash, until, strikes, since FROM token_blacklist")
      .all() as Record<string, unknown>[]) {
      if (
        typeof r.hash === "string" &&
        HASH.test(r.hash) &&
        isInt(r.until) &&
        isInt(r.strikes) &&
        r.strikes >= 0 &&
        (r.since === null || isInt(r.since))
      ) {
        st.tokens.push({
          hash: r.hash,
          until: r.until,
          strikes: r.strikes,
          ...(isInt(r.since) ? { since: r.since } : {}),
        });
      } else st.rejected.push({ table: "token_blacklist", reason: "malformed row" });
    }
    for (const r of this.sqlite.prepare("SELECT hash, at FROM token_unblocks").all() as Record<
      string,
      unknown
    >[]) {
      if (typeof r.hash === "string" && HASH.test(r.hash) && isInt(r.at)) {
        st.tokenUnblocks.push({ hash: r.hash, at: r.at });
      } else st.rejected.push({ table: "token_unblocks", reason: "malformed row" });
    }
    for (const r of this.sqlite.prepare("SELECT domain, at FROM domain_unblocks").all() as Record<
      string,
      unknown
    >[]) {
      if (
        typeof r.domain === "string" &&
        r.domain.length > 0 &&
        r.domain.length <= 253 &&
        isInt(r.at)
      ) {
        st.domainUnblocks.push({ domain: r.domain, at: r.at });
      } else st.rejected.push({ table: "domain_unblocks", reason: "malformed row" });
    }
    for (const r of this.sqlite
      .prepare("SELECT domain, until FROM domain_blacklist")
      .all() as Record<string, unknown>[]) {
      if (
        typeof r.domain === "string" &&
        r.domain.length > 0 &&
        r.domain.length <= 253 &&
        isInt(r.until)
      ) {
        st.domains.push({ domain: r.domain, until: r.until });
      } else st.rejected.push({ table: "domain_blacklist", reason: "malformed row" });
    }
    for (const r of this.sqlite
      .prepare("SELECT domain, token_hash, at FROM domain_events")
      .all() as Record<string, unknown>[]) {
      if (
        typeof r.domain === "string" &&
        typeof r.token_hash === "string" &&
        HASH.test(r.token_hash) &&
        isInt(r.at)
      ) {
        st.events.push({ domain: r.domain, hash: r.token_hash, at: r.at });
      } else st.rejected.push({ table: "domain_events", reason: "malformed row" });
    }
    for (const r of this.sqlite
      .prepare("SELECT hash, domain, at FROM token_deliveries")
      .all() as Record<string, unknown>[]) {
      if (
        typeof r.hash === "string" &&
        HASH.test(r.hash) &&
        typeof r.domain === "string" &&
        r.domain.length > 0 &&
        isInt(r.at)
      ) {
        st.deliveries.push({ hash: r.hash, domain: r.domain, at: r.at });
      } else st.rejected.push({ table: "token_deliveries", reason: "malformed row" });
    }
    for (const r of this.sqlite
      .prepare(
        "SELECT token_hash, sealed_token, app, domain, important, due, retries, expires_at FROM queued_pushes",
      )
      .all() as Record<string, unknown>[]) {
      if (
        typeof r.token_hash === "string" &&
        HASH.test(r.token_hash) &&
        typeof r.sealed_token === "string" &&
        typeof r.app === "string" &&
        typeof r.domain === "string" &&
        isInt(r.due) &&
        (r.important === 0 || r.important === 1) &&
        isInt(r.retries) &&
        (r.expires_at === null || isInt(r.expires_at))
      ) {
        st.queued.push({
          tokenHash: r.token_hash,
          sealedToken: r.sealed_token,
          app: r.app,
          domain: r.domain,
          important: r.important === 1,
          due: r.due,
          ...(r.retries > 0 ? { retries: r.retries } : {}),
          ...(isInt(r.expires_at) ? { expiresAt: r.expires_at } : {}),
        });
      } else st.rejected.push({ table: "queued_pushes", reason: "malformed row" });
    }
    return st;
  }

  /** Records a blacklist change; written at the end of the current event-loop turn. */
  record(change: BlacklistChange | ({ kind: "delivery" } & DeliveryRecord)): void {
    this.pending.push(change);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /**
   * Records a successful delivery (see DeliveryMemory.delivered). Written within a second, in a
   * batch of its own: one transaction per event-loop turn per delivery cost a third of the push
   * path's CPU under load, and a delivery lost in a crash only makes a token look unknown.
   */
  recordDelivery(hash: string, domain: string, at: number): void {
    this.deliveryHashes.push(hash);
    this.deliveryDomains.push(domain);
    this.deliveryTimes.push(at);
    if (!this.deliveryTimer) {
      this.deliveryTimer = setTimeout(() => {
        this.deliveryTimer = undefined;
        this.flush();
      }, DELIVERY_BATCH_MS);
      this.deliveryTimer.unref();
    }
  }

  /** Writes buffered changes now, in one transaction. */
  flush(): void {
    this.flushScheduled = false;
    if ((this.pending.length === 0 && this.deliveryHashes.length === 0) || !this.sqlite.open)
      return;
    const batch = this.pending;
    const hashes = this.deliveryHashes;
    const domains = this.deliveryDomains;
    const times = this.deliveryTimes;
    this.pending = [];
    this.deliveryHashes = [];
    this.deliveryDomains = [];
    this.deliveryTimes = [];
    const now = Date.now();
    const st = this.statements;
    // Prepared once: building each upsert through the query builder cost more CPU than the push
    // that caused it (profiled in the appserver benchmark).
    this.sqlite.transaction(() => {
      for (const c of batch) {
        if (c.kind === "token") {
          st.upsertToken.run({
            hash: c.hash,
            until: c.until,
            strikes: c.strikes,
            since: c.since ?? null,
            now,
          });
        } else if (c.kind === "domain") {
          st.upsertDomain.run({ domain: c.domain, until: c.until, now });
        } else if (c.kind === "token-unblock") {
          // the tombstone, and the block unless it was reported after the unblock
          st.upsertTokenUnblock.run({ hash: c.hash, at: c.at });
          st.deleteTokenBefore.run({ hash: c.hash, at: c.at });
        } else if (c.kind === "domain-unblock") {
          st.upsertDomainUnblock.run({ domain: c.domain, at: c.at });
          // a tombstone replayed by a resync leaves a block written after it
          st.deleteDomain.run({ domain: c.domain, at: c.at });
          st.deleteDomainEvents.run({ domain: c.domain, at: c.at });
        } else if (c.kind === "delivery") {
          st.upsertDelivery.run({ hash: c.hash, domain: c.domain, at: c.at });
        } else {
          st.upsertEvent.run({ domain: c.domain, hash: c.hash, at: c.at });
        }
      }
      st.upsertDelivery.runMany(hashes, domains, times);
    })();
  }

  /**
   * Deletes expired state: token entries past their memory, domain blocks and window events, and
   * tombstones older than `unblockLimit` (token) / `domainUnblockLimit`.
   */
  prune(
    tokenLimit: number,
    domainLimit: number,
    eventLimit: number,
    deliveryLimit = 0,
    unblockLimit = 0,
    domainUnblockLimit = 0,
  ): void {
    this.db.delete(schema.tokenUnblocks).where(lt(schema.tokenUnblocks.at, unblockLimit)).run();
    this.db
      .delete(schema.domainUnblocks)
      .where(lt(schema.domainUnblocks.at, domainUnblockLimit))
      .run();
    this.db
      .delete(schema.tokenDeliveries)
      .where(lt(schema.tokenDeliveries.at, deliveryLimit))
      .run();
    this.db.delete(schema.tokenBlacklist).where(lt(schema.tokenBlacklist.until, tokenLimit)).run();
    this.db
      .delete(schema.domainBlacklist)
      .where(lt(schema.domainBlacklist.until, domainLimit))
      .run();
    this.db.delete(schema.domainEvents).where(lt(schema.domainEvents.at, eventLimit)).run();
  }

  /** Replaces the persisted push queue (at shutdown). */
  saveQueued(rows: PersistedState["queued"]): void {
    this.db.transaction((tx) => {
      tx.delete(schema.queuedPushes).run();
      for (const r of rows) tx.insert(schema.queuedPushes).values(r).onConflictDoNothing().run();
    });
  }

  /** Forgets the persisted push queue (after it was restored into memory). */
  clearQueued(): void {
    this.db.delete(schema.queuedPushes).run();
  }

  /** Cheap liveness probe for /healthz. */
  ping(): boolean {
    try {
      return this.sqlite.prepare("SELECT 1 AS ok").get() !== undefined;
    } catch {
      return false;
    }
  }

  close(): void {
    if (!this.sqlite.open) return;
    clearTimeout(this.deliveryTimer);
    this.deliveryTimer = undefined;
    this.flush();
    this.sqlite.close();
  }
}

/** The statements flush() runs per change, prepared once. */
function prepareStatements(db: BetterSQLite3Database<typeof schema>, sqlite: Database.Database) {
  const p = sql.placeholder;
  return {
    upsertToken: db
      .insert(schema.tokenBlacklist)
      .values({
        hash: p("hash"),
        until: p("until"),
        strikes: p("strikes"),
        since: p("since"),
        updatedAt: p("now"),
      })
      .onConflictDoUpdate({
        target: schema.tokenBlacklist.hash,
        set: {
          until: sql`max(${schema.tokenBlacklist.until}, excluded.until)`,
          strikes: sql`max(${schema.tokenBlacklist.strikes}, excluded.strikes)`,
          // max() of SQLite is null when either is: keep the known one
          since: sql`max(coalesce(${schema.tokenBlacklist.since}, excluded.since), coalesce(excluded.since, ${schema.tokenBlacklist.since}))`,
          updatedAt: sql`excluded.updated_at`,
        },
      })
      .prepare(),
    upsertDomain: db
      .insert(schema.domainBlacklist)
      .values({ domain: p("domain"), until: p("until"), updatedAt: p("now") })
      .onConflictDoUpdate({
        target: schema.domainBlacklist.domain,
        set: {
          until: sql`max(${schema.domainBlacklist.until}, excluded.until)`,
          updatedAt: sql`excluded.updated_at`,
        },
      })
      .prepare(),
    deleteTokenBefore: db
      .delete(schema.tokenBlacklist)
      .where(
        and(
          eq(schema.tokenBlacklist.hash, p("hash")),
          or(isNull(schema.tokenBlacklist.since), lte(schema.tokenBlacklist.since, p("at"))),
        ),
      )
      .prepare(),
    upsertTokenUnblock: db
      .insert(schema.tokenUnblocks)
      .values({ hash: p("hash"), at: p("at") })
      .onConflictDoUpdate({
        target: schema.tokenUnblocks.hash,
        set: { at: sql`max(${schema.tokenUnblocks.at}, excluded.at)` },
      })
      .prepare(),
    upsertDomainUnblock: db
      .insert(schema.domainUnblocks)
      .values({ domain: p("domain"), at: p("at") })
      .onConflictDoUpdate({
        target: schema.domainUnblocks.domain,
        set: { at: sql`max(${schema.domainUnblocks.at}, excluded.at)` },
      })
      .prepare(),
    deleteDomain: db
      .delete(schema.domainBlacklist)
      .where(
        and(
          eq(schema.domainBlacklist.domain, p("domain")),
          lte(schema.domainBlacklist.updatedAt, p("at")),
        ),
      )
      .prepare(),
    deleteDomainEvents: db
      .delete(schema.domainEvents)
      .where(and(eq(schema.domainEvents.domain, p("domain")), lte(schema.domainEvents.at, p("at"))))
      .prepare(),
    // the one written per delivered token: better-sqlite3's own statement (the query builder's
    // parameter mapping cost as much as the insert itself in the benchmark's profile)
    upsertDelivery: sqliteStatement(
      sqlite,
      db
        .insert(schema.tokenDeliveries)
        .values({ hash: p("hash"), domain: p("domain"), at: p("at") })
        .onConflictDoUpdate({
          target: schema.tokenDeliveries.hash,
          set: {
            domain: sql`excluded.domain`,
            at: sql`max(${schema.tokenDeliveries.at}, excluded.at)`,
          },
        })
        .toSQL().sql,
    ),
    upsertEvent: db
      .insert(schema.domainEvents)
      .values({ domain: p("domain"), tokenHash: p("hash"), at: p("at") })
      .onConflictDoUpdate({
        target: [schema.domainEvents.domain, schema.domainEvents.tokenHash],
        set: { at: sql`max(${schema.domainEvents.at}, excluded.at)` },
      })
      .prepare(),
  };
}

/**
 * The delivery upsert as a better-sqlite3 statement (positional parameters), run once per row.
 * Not several rows per INSERT: a 64-row upsert cost 4.3-4.8 µs per row against 2.5-2.9 µs for
 * single-row runs (70k new tokens in batches of 5000, the benchmark's shape), and the gap grew with
 * the table. Rows apply in order, so the later delivery of a token wins.
 */
function sqliteStatement(sqlite: Database.Database, text: string) {
  const stmt = sqlite.prepare(text);
  if (!text.includes("values (?, ?, ?)")) throw new Error(`unexpected upsert SQL: ${text}`);
  return {
    run: (v: { hash: string; domain: string; at: number }) => stmt.run(v.hash, v.domain, v.at),
    runMany(hashes: string[], domains: string[], times: number[]): void {
      for (let i = 0; i < hashes.length; i++) stmt.run(hashes[i]!, domains[i]!, times[i]!);
    },
  };
}
