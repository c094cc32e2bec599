import fs from "node:fs";
import type Database from "better-sqlite3";
import { drizzle, type BetterSQLite3Database } from "drizzle-orm/better-sqlite3";
import type { ProcessRole } from "@lichen/schema";
import * as schema from "./schema.js";
import { openBetterSqlite3, type SqlStatement } from "./driver.js";
import { applyMigrations, assertMigrated } from "./migrations.js";
import { checkHeader, guardStatements, readDamageMarker, writeDamageMarker } from "./corruption.js";
import { sqliteIntegrity, type SqliteIntegrityResult } from "./integrity.js";
import {
  DatabaseCorruptError,
  FencedOutError,
  NotALichenDatabaseError,
  StoreError,
  StoreLockTimeoutError,
  TransactionUsageError,
  isBusyError,
} from "./errors.js";

/**
 * A fencing token: the process lock row (key) must still name this holder at this generation. A
 * write made under a fence is refused inside its own BEGIN IMMEDIATE transaction when another
 * process has taken the lock since, so a process that was frozen and thawed cannot write session
 * state that its successor now owns (ProcessLock.fence() gives the current one).
 */
export interface StoreFence {
  readonly key: string;
  readonly holder: string;
  readonly generation: number;
}

export interface WriteOptions {
  /** Refuse the write (FencedOutError, nothing written) unless this lock generation is current. */
  fence?: StoreFence | null;
  /**
   * Epoch ms (Date.now) after which waiting for the database lock gives up with
   * StoreLockTimeoutError (bounded further by maxWaitMs). A process stopped inside a transaction
   * holds the lock for as long as it is stopped: callers with a deadline must not wait past it.
   */
  deadlineAt?: number;
  /** writeAsync only: yield to the event loop before the first attempt (default true). */
  yieldFirst?: boolean;
}

export type StoreSchema = typeof schema;
export type StoreDatabase = BetterSQLite3Database<StoreSchema>;
export type StoreLogger = (event: { event: string; [key: string]: unknown }) => void;

export interface OpenStoreOptions {
  /** Database file; created (and migrated) by role "main" when missing. */
  path: string;
  role: ProcessRole;
  /** Epoch-ms clock for timestamps, leases and IPC expiry. Default Date.now. */
  clock?: () => number;
  /** Receives structured events (busy retries, quarantined rows, ...). Libraries never print. */
  logger?: StoreLogger;
  /** SQLite busy_timeout for synchronous statements, ms. Default 5000. */
  busyTimeoutMs?: number;
  /**
   * Longest a write()/read() waits for the database lock before throwing StoreLockTimeoutError
   * (default 20000 ms). Only a process that is stopped while inside a transaction holds the lock
   * that long (iOS kills such a process: 0xdead10cc), so this is a safety net, not flow control.
   */
  maxWaitMs?: number;
  /** Apply pending migrations. Default: true for role "main"; other roles only check. */
  migrate?: boolean;
  /** Check the applied migrations against this build (default true). Tools that inspect any DB set false. */
  checkSchema?: boolean;
  /**
   * What to check for damage at open. "header" (default): the 100-byte header, whole pages, the
   * "<db>-damaged" marker and a readable schema — microseconds. "quick": also PRAGMA quick_check,
   * which reads every page (2–3.5 ms per MB): for a main app that can afford it, never the NSE.
   * "none": tools that must open a damaged file to look at it (the marker and header are ignored).
   */
  damageCheck?: "header" | "quick" | "none";
}

/**
 * The transaction handle passed to write()/read(): the drizzle database (same connection, so every
 * query runs inside the transaction) plus transaction facts.
 */
export type StoreTx = StoreDatabase & {
  readonly mode: "write" | "read";
  readonly store: Store;
  readonly sqlite: Database.Database;
  /** clock() when the outermost transaction began. */
  readonly now: number;
  /** Run `cb` after the outermost transaction commits (dropped on rollback). */
  afterCommit(cb: () => void): void;
  /**
   * PRAGMA data_version (changes when another connection commits). Read once per write
   * transaction: while it holds the write lock no other connection can commit.
   */
  dataVersion(): number;
};

export interface Store {
  readonly role: ProcessRole;
  readonly path: string;
  /**
   * Drizzle on this connection, for reads outside a transaction; write only via write(). Prefer
   * read(): it retries SQLITE_BUSY (possible for readers only while another process recovers or
   * closes the WAL), and a plain read right after a write in the same tick runs with busy timeout 0.
   */
  readonly db: StoreDatabase;
  /** The raw better-sqlite3 handle (escape hatch). */
  readonly sqlite: Database.Database;
  readonly clock: () => number;
  readonly logger: StoreLogger;
  /**
   * Run `fn` in a BEGIN IMMEDIATE transaction and commit. Synchronous. SQLITE_BUSY is retried with
   * back-off and jitter and never thrown. A throw rolls back and is rethrown. Nested calls use a
   * SAVEPOINT: an inner throw rolls back only the inner part.
   */
  write<T>(fn: (tx: StoreTx) => T, opts?: WriteOptions): T;
  /**
   * Like write(), but waits for the lock without blocking the event loop (and, unless
   * `yieldFirst: false`, yields before starting). The transaction itself is still synchronous.
   */
  writeAsync<T>(fn: (tx: StoreTx) => T, opts?: WriteOptions): Promise<T>;
  /**
   * Run `fn` on one consistent snapshot (BEGIN DEFERRED). Inside write() it joins that transaction.
   * Outside, `fn` is run again if SQLite reports busy (keep it free of side effects).
   */
  read<T>(fn: (tx: StoreTx) => T): T;
  /** PRAGMA data_version: changes when another connection commits. */
  dataVersion(): number;
  /** Whether a transaction of this store is open right now. */
  readonly inTransaction: boolean;
  /**
   * Non-null once this store has met damage (SQLITE_CORRUPT/SQLITE_NOTADB on any statement, or
   * found at open): every write is refused with this error from then on; reads still run.
   */
  readonly damage: DatabaseCorruptError | null;
  /**
   * Full PRAGMA integrity_check (or quick_check), problems mapped to tables and indexes (by the
   * "Tree <root page>" of each message, the index named in it, or the dbstat table for a page),
   * per table when SQLite gives up on the whole file. O(size of the DB): on demand only. Damage
   * found marks the store damaged like a SQLITE_CORRUPT would.
   */
  checkIntegrity(opts?: { quick?: boolean }): SqliteIntegrityResult;
  close(): void;
  readonly closed: boolean;
}

const SLEEP_CELL = new Int32Array(new SharedArrayBuffer(4));
function sleepSync(ms: number): void {
  Atomics.wait(SLEEP_CELL, 0, 0, ms);
}
function sleepAsync(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Back-off with jitter: 0.25 ms doubling to 8 ms (attempts are cheap: busy timeout 0). */
function backoffMs(attempt: number): number {
  const cap = Math.min(8, 0.25 * 2 ** attempt);
  return cap / 2 + Math.random() * (cap / 2);
}

function isThenable(v: unknown): boolean {
  return (
    v !== null &&
    (typeof v === "object" || typeof v === "function") &&
    typeof (v as { then?: unknown }).then === "function"
  );
}

class SqliteStore implements Store {
  readonly db: StoreDatabase;
  readonly sqlite: Database.Database;
  readonly clock: () => number;
  readonly logger: StoreLogger;
  private readonly tx: StoreTx;
  private depth = 0;
  private mode: "write" | "read" | null = null;
  private txStartedAt = 0;
  /** tx.dataVersion() of the running write transaction (-1: not read yet). */
  private txDataVersion = -1;
  private savepointCounter = 0;
  private afterCommitQueue: (() => void)[] = [];
  private readonly busyTimeoutMs: number;
  private readonly maxWaitMs: number;
  private readonly stmts: {
    beginImmediate: SqlStatement;
    beginDeferred: SqlStatement;
    commit: SqlStatement;
    rollback: SqlStatement;
    dataVersion: SqlStatement;
  };
  private isClosed = false;
  private damaged: DatabaseCorruptError | null = null;

  constructor(
    readonly path: string,
    readonly role: ProcessRole,
    opts: OpenStoreOptions,
  ) {
    this.clock = opts.clock ?? Date.now;
    this.logger = opts.logger ?? (() => {});
    this.busyTimeoutMs = opts.busyTimeoutMs ?? 5000;
    this.maxWaitMs = opts.maxWaitMs ?? 20_000;
    this.waitFile = `${path}-writewait`;
    this.restoreBusyTimeout = `busy_timeout = ${this.busyTimeoutMs}`;
    const exists = fs.existsSync(path);
    if (!exists && role !== "main") {
      throw new StoreError(
        `database ${path} does not exist; the main app creates it (role "main")`,
      );
    }
    const damageCheck = opts.damageCheck ?? "header";
    if (exists && damageCheck !== "none") this.checkBeforeOpen();
    this.sqlite = openBetterSqlite3(path, { busyTimeoutMs: this.busyTimeoutMs });
    guardStatements(this.sqlite, {
      onCorrupt: (e) => this.noteDamage(e),
      refusal: () => this.damaged,
    });
    try {
      this.configure();
    } catch (e) {
      this.sqlite.close();
      throw e;
    }
    this.stmts = {
      beginImmediate: this.sqlite.prepare("BEGIN IMMEDIATE"),
      beginDeferred: this.sqlite.prepare("BEGIN DEFERRED"),
      commit: this.sqlite.prepare("COMMIT"),
      rollback: this.sqlite.prepare("ROLLBACK"),
      dataVersion: this.sqlite.prepare("PRAGMA data_version").pluck(),
    };
    this.db = drizzle({ client: this.sqlite, schema });
    this.tx = Object.create(this.db, {
      mode: { get: () => this.mode ?? "read" },
      store: { value: this },
      sqlite: { value: this.sqlite },
      now: { get: () => this.txStartedAt },
      afterCommit: {
        value: (cb: () => void) => {
          if (this.mode !== "write")
            throw new TransactionUsageError("afterCommit() needs a write transaction");
          this.afterCommitQueue.push(cb);
        },
      },
      dataVersion: {
        value: () => {
          if (this.mode !== "write") return this.dataVersion();
          if (this.txDataVersion < 0) this.txDataVersion = this.dataVersion();
          return this.txDataVersion;
        },
      },
    }) as StoreTx;

    try {
      this.prepareSchema(opts);
      if (damageCheck === "quick") {
        const result = this.checkIntegrity({ quick: true });
        if (!result.ok) throw this.damaged!;
      }
    } catch (e) {
      this.sqlite.close();
      this.isClosed = true;
      throw e;
    }
  }

  get damage(): DatabaseCorruptError | null {
    return this.damaged;
  }

  /** The marker another process left, then the header: both refuse the open (nothing written). */
  private checkBeforeOpen(): void {
    const marker = readDamageMarker(this.path);
    if (marker) {
      throw new DatabaseCorruptError(
        this.path,
        `found damaged ${marker.detectedAt ? new Date(marker.detectedAt).toISOString() : "earlier"}` +
          `${marker.pid ? ` by pid ${marker.pid}` : ""}: ${marker.detail}`,
        { code: "marker" },
      );
    }
    const header = checkHeader(this.path);
    if (header === "not-sqlite")
      throw new NotALichenDatabaseError(`${this.path} is not a SQLite database`);
    if (header !== null) {
      writeDamageMarker(this.path, header);
      throw new DatabaseCorruptError(this.path, header, { code: "header", pages: [1] });
    }
  }

  /** First damage seen: remember it (writes refused from now on) and tell the other processes. */
  private noteDamage(e: unknown): DatabaseCorruptError {
    if (e instanceof DatabaseCorruptError) {
      if (!this.damaged) {
        this.damaged = e;
        writeDamageMarker(this.path, e.detail);
      }
      return e;
    }
    const code = (e as { code?: string }).code ?? "SQLITE_CORRUPT";
    const err = new DatabaseCorruptError(
      this.path,
      `${code}: ${(e as Error).message ?? String(e)}`,
      { code, cause: e },
    );
    if (!this.damaged) {
      this.damaged = err;
      this.logger({ event: "store.damaged", path: this.path, code, error: String(e) });
      writeDamageMarker(this.path, err.detail);
    }
    return err;
  }

  checkIntegrity(opts: { quick?: boolean } = {}): SqliteIntegrityResult {
    this.assertOpen();
    const result = sqliteIntegrity(this.sqlite, opts);
    // The check's own statements may have met the damage first (no tables known then): the
    // error kept from here on is the one that names them.
    if (!result.ok && (!this.damaged || this.damaged.tables.length === 0)) {
      const first = result.findings[0]?.message ?? "integrity check failed";
      const err = new DatabaseCorruptError(
        this.path,
        `integrity check: ${first}${result.findings.length > 1 ? ` (+${result.findings.length - 1} more)` : ""}`,
        { code: "SQLITE_CORRUPT", tables: result.tables, pages: result.pages },
      );
      if (this.damaged) this.damaged = err;
      else this.noteDamage(err);
    }
    return result;
  }

  private configure(): void {
    const s = this.sqlite;
    // journal_mode=WAL is persistent; setting it needs a moment of exclusive access, so retry busy.
    for (let attempt = 0; ; attempt++) {
      try {
        const mode = s.pragma("journal_mode = WAL", { simple: true });
        if (mode !== "wal")
          throw new StoreError(`cannot switch ${this.path} to WAL (journal_mode=${String(mode)})`);
        break;
      } catch (e) {
        if (!isBusyError(e) || attempt > 200) throw e;
        sleepSync(backoffMs(attempt));
      }
    }
    s.pragma("synchronous = NORMAL");
    s.pragma("foreign_keys = ON");
    s.pragma("trusted_schema = OFF");
    s.pragma(`busy_timeout = ${this.busyTimeoutMs}`);
  }

  private prepareSchema(opts: OpenStoreOptions): void {
    const shouldMigrate = opts.migrate ?? this.role === "main";
    const tables = this.sqlite
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
      .pluck()
      .all() as string[];
    const looksLichen = tables.includes("__drizzle_migrations") || tables.includes("accounts");
    if (tables.length > 0 && !looksLichen) {
      throw new NotALichenDatabaseError(
        `${this.path} is a SQLite database but not a Lichen one (tables: ${tables.slice(0, 5).join(", ")})`,
      );
    }
    if (shouldMigrate) {
      const applied = applyMigrations(this.sqlite, this.path, (fn) => this.write(() => fn()));
      if (applied > 0) this.logger({ event: "store.migrated", path: this.path, applied });
    } else if (opts.checkSchema ?? true) {
      assertMigrated(this.sqlite, this.path);
    }
  }

  get inTransaction(): boolean {
    return this.depth > 0;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  dataVersion(): number {
    return this.stmts.dataVersion.get() as number;
  }

  write<T>(fn: (tx: StoreTx) => T, opts: WriteOptions = {}): T {
    this.assertOpen();
    if (this.damaged) throw this.damaged;
    if (this.depth > 0) return this.nestedWrite(fenced(fn, opts.fence));
    if (this.otherWriterWaiting()) this.politePauseSync();
    const started = performance.now();
    for (let attempt = 0; ; attempt++) {
      if (this.tryBeginImmediate()) break;
      this.noteBusy(attempt, started, opts.deadlineAt);
      sleepSync(backoffMs(attempt));
    }
    this.withdrawWriteIntent();
    return this.runOutermost("write", fenced(fn, opts.fence), started);
  }

  async writeAsync<T>(fn: (tx: StoreTx) => T, opts: WriteOptions = {}): Promise<T> {
    this.assertOpen();
    if (this.damaged) throw this.damaged;
    if (this.depth > 0) {
      throw new TransactionUsageError(
        "writeAsync() cannot be nested in a running transaction; use write()",
      );
    }
    // Yield first: other work of this process runs, and a waiting process gets its turn.
    if (opts.yieldFirst !== false) await yieldToEventLoop();
    if (this.otherWriterWaiting()) await this.politePauseAsync();
    const started = performance.now();
    for (let attempt = 0; ; attempt++) {
      this.assertOpen();
      if (this.damaged) throw this.damaged;
      // Other code of this process may have opened a transaction while we awaited.
      if (this.depth === 0) {
        if (this.tryBeginImmediate()) {
          this.withdrawWriteIntent();
          return this.runOutermost("write", fenced(fn, opts.fence), started);
        }
        this.noteBusy(attempt, started, opts.deadlineAt);
      } else if (opts.deadlineAt !== undefined && Date.now() >= opts.deadlineAt) {
        throw new StoreLockTimeoutError(
          `${this.path}: deadline passed before the write could begin`,
        );
      }
      let wait = backoffMs(attempt);
      if (opts.deadlineAt !== undefined)
        wait = Math.max(0, Math.min(wait, opts.deadlineAt - Date.now()));
      await sleepAsync(wait);
    }
  }

  read<T>(fn: (tx: StoreTx) => T): T {
    this.assertOpen();
    if (this.depth > 0) {
      // Joins the running transaction (same snapshot).
      this.depth++;
      try {
        return this.call(fn);
      } finally {
        this.depth--;
      }
    }
    // The busy timeout may still be 0 from a write earlier in this turn of the event loop: not
    // restored here (a PRAGMA compile per read between two writes). A WAL reader is busy only
    // while another process recovers or closes the WAL, and this loop waits that out itself.
    const started = performance.now();
    for (let attempt = 0; ; attempt++) {
      if (this.tryBegin(this.stmts.beginDeferred)) {
        try {
          return this.runOutermost("read", fn, started);
        } catch (e) {
          // A reader meets SQLITE_BUSY only while another process recovers or closes the WAL:
          // the read (which changed nothing) is simply run again.
          if (!isBusyError(e)) throw e;
        }
      }
      this.noteBusy(attempt, started);
      sleepSync(backoffMs(attempt));
    }
  }

  close(): void {
    if (this.isClosed) return;
    if (this.depth > 0) throw new TransactionUsageError("close() inside a transaction");
    this.isClosed = true;
    this.sqlite.close();
  }

  private assertOpen(): void {
    if (this.isClosed) throw new StoreError(`store ${this.path} is closed`);
  }

  /**
   * One BEGIN IMMEDIATE attempt with a zero busy timeout: we wait in our own loop (with jitter, and
   * without blocking the event loop in writeAsync) instead of inside SQLite's busy handler, whose
   * coarse sleeps let a process that commits in a loop starve the others. After a failed attempt
   * the write intent is announced (see otherWriterWaiting).
   */
  private tryBeginImmediate(): boolean {
    this.zeroBusyTimeout();
    const began = this.tryBegin(this.stmts.beginImmediate);
    if (!began) this.announceWriteIntent();
    return began;
  }

  /*
   * The connection's busy timeout is 0 from a write's BEGIN until the next turn of the event loop,
   * then back to busyTimeoutMs for plain statements (read() and write() wait in their own loops). Setting it costs a
   * statement compile each time (PRAGMA busy_timeout acts when compiled, so it cannot be a prepared
   * statement), which a loop of writes now pays once.
   */
  private busyTimeoutZero = false;
  private restoreScheduled = false;

  private zeroBusyTimeout(): void {
    if (!this.busyTimeoutZero) {
      this.sqlite.pragma("busy_timeout = 0");
      this.busyTimeoutZero = true;
    }
    if (!this.restoreScheduled) {
      this.restoreScheduled = true;
      setImmediate(() => {
        this.restoreScheduled = false;
        if (!this.isClosed) this.restoreBusyTimeoutNow();
      });
    }
  }

  private restoreBusyTimeoutNow(): void {
    if (!this.busyTimeoutZero) return;
    this.sqlite.pragma(this.restoreBusyTimeout);
    this.busyTimeoutZero = false;
  }

  /*
   * Fairness between processes. SQLite's write lock is not a queue: a process committing in a tight
   * loop holds it almost all the time and a waiter polling at random instants rarely finds it free
   * (measured: 2 s waits for a short NSE write next to a hot writer). So a process that failed to
   * get the lock writes its pid into "<db>-writewait" (refreshed while it waits, removed once it
   * has the lock), and a process about to begin a write checks that file at most once per
   * millisecond; while a fresh one from someone else exists, it pauses (up to 50 ms) before its
   * next transaction. Stale files (a waiter that was killed) are ignored after 200 ms.
   */
  private readonly waitFile: string;
  private readonly restoreBusyTimeout: string;
  private intentAnnouncedAt = 0;
  private lastIntentCheck = 0;

  private announceWriteIntent(): void {
    const now = Date.now();
    if (now - this.intentAnnouncedAt < 20) return;
    this.intentAnnouncedAt = now;
    try {
      fs.writeFileSync(this.waitFile, String(process.pid));
    } catch {
      // Only a hint; a read-only directory just loses fairness.
    }
  }

  private withdrawWriteIntent(): void {
    if (this.intentAnnouncedAt === 0) return;
    this.intentAnnouncedAt = 0;
    try {
      if (fs.readFileSync(this.waitFile, "utf8") === String(process.pid))
        fs.unlinkSync(this.waitFile);
    } catch {
      // Already gone, or another waiter replaced it: fine.
    }
  }

  private otherWriterWaiting(): boolean {
    const now = performance.now();
    if (now - this.lastIntentCheck < 1) return false;
    this.lastIntentCheck = now;
    return this.intentFileFresh();
  }

  private intentFileFresh(): boolean {
    const st = fs.statSync(this.waitFile, { throwIfNoEntry: false });
    if (!st || Date.now() - st.mtimeMs > 200) return false;
    // Our own intent (left by an earlier wait of this process) does not count.
    try {
      return fs.readFileSync(this.waitFile, "utf8") !== String(process.pid);
    } catch {
      return false;
    }
  }

  private politePauseSync(): void {
    const until = performance.now() + 50;
    while (performance.now() < until && this.intentFileFresh()) sleepSync(0.2);
  }

  private async politePauseAsync(): Promise<void> {
    const until = performance.now() + 50;
    while (performance.now() < until && this.intentFileFresh()) await sleepAsync(1);
  }

  private tryBegin(stmt: SqlStatement): boolean {
    try {
      stmt.run();
      return true;
    } catch (e) {
      if (isBusyError(e)) return false;
      throw e;
    }
  }

  private noteBusy(attempt: number, started: number, deadlineAt?: number): void {
    const waited = performance.now() - started;
    if (deadlineAt !== undefined && Date.now() >= deadlineAt) {
      throw new StoreLockTimeoutError(
        `${this.path}: the database lock is still taken by another process after ` +
          `${Math.round(waited)} ms and the caller's deadline has passed`,
      );
    }
    if (waited > this.maxWaitMs) {
      throw new StoreLockTimeoutError(
        `${this.path}: another process has held the database lock for ${Math.round(waited)} ms ` +
          `(more than maxWaitMs ${this.maxWaitMs}); is a process stopped inside a transaction?`,
      );
    }
    // Short waits are normal under contention; report long ones, at doubling intervals.
    if ((attempt & (attempt + 1)) !== 0) return;
    const waitedMs = Math.round(performance.now() - started);
    if (waitedMs < 100) return;
    this.logger({ event: "store.busy-wait", attempt: attempt + 1, waitedMs, role: this.role });
  }

  private call<T>(fn: (tx: StoreTx) => T): T {
    const result = fn(this.tx);
    if (isThenable(result)) {
      throw new TransactionUsageError(
        "transaction functions must be synchronous (the callback returned a promise)",
      );
    }
    return result;
  }

  private runOutermost<T>(mode: "write" | "read", fn: (tx: StoreTx) => T, started: number): T {
    this.depth = 1;
    this.mode = mode;
    this.txStartedAt = this.clock();
    this.txDataVersion = -1;
    this.afterCommitQueue = [];
    let result: T;
    try {
      result = this.call(fn);
    } catch (e) {
      this.finish(false);
      throw e;
    }
    if (this.damaged && mode === "write") {
      // The callback met the damage and went on (caught it): its writes must not be committed.
      this.finish(false);
      throw this.damaged;
    }
    const callbacks = this.afterCommitQueue;
    this.finish(true, started);
    for (const cb of callbacks) {
      try {
        cb();
      } catch (e) {
        this.logger({ event: "store.after-commit-failed", error: String(e) });
      }
    }
    return result;
  }

  private finish(commit: boolean, started = 0): void {
    try {
      if (commit) {
        // COMMIT cannot meet SQLITE_BUSY in WAL mode while we hold the write lock, but a read
        // transaction's COMMIT or a future journal mode could: retry rather than surface it.
        for (let attempt = 0; ; attempt++) {
          try {
            this.stmts.commit.run();
            break;
          } catch (e) {
            if (!isBusyError(e)) throw e;
            this.noteBusy(attempt, started);
            sleepSync(backoffMs(attempt));
          }
        }
      } else if (this.sqlite.inTransaction) {
        this.stmts.rollback.run();
      }
    } catch (e) {
      if (this.sqlite.inTransaction) this.stmts.rollback.run();
      throw e;
    } finally {
      this.depth = 0;
      this.mode = null;
      this.afterCommitQueue = [];
    }
  }

  private nestedWrite<T>(fn: (tx: StoreTx) => T): T {
    if (this.mode !== "write") {
      throw new TransactionUsageError("write() inside read(): start the write transaction first");
    }
    const name = `lichen_sp${this.savepointCounter++}`;
    const queued = this.afterCommitQueue.length;
    this.sqlite.exec(`SAVEPOINT ${name}`);
    this.depth++;
    try {
      const result = this.call(fn);
      this.sqlite.exec(`RELEASE ${name}`);
      return result;
    } catch (e) {
      this.sqlite.exec(`ROLLBACK TO ${name}`);
      this.sqlite.exec(`RELEASE ${name}`);
      this.afterCommitQueue.length = queued;
      throw e;
    } finally {
      this.depth--;
    }
  }
}

const fenceStatements = new WeakMap<Database.Database, SqlStatement>();

/** Throws FencedOutError unless `fence` names the lock's current holder and generation. */
export function checkFence(tx: StoreTx, fence: StoreFence): void {
  let stmt = fenceStatements.get(tx.sqlite);
  if (!stmt) {
    stmt = tx.sqlite.prepare("SELECT holder, generation FROM process_locks WHERE key = ?");
    fenceStatements.set(tx.sqlite, stmt);
  }
  const row = stmt.get(fence.key) as { holder: string; generation: number } | undefined;
  if (!row || row.holder !== fence.holder || row.generation !== fence.generation) {
    throw new FencedOutError(
      fence,
      row ? { holder: row.holder, generation: row.generation } : null,
    );
  }
}

function fenced<T>(
  fn: (tx: StoreTx) => T,
  fence: StoreFence | null | undefined,
): (tx: StoreTx) => T {
  if (!fence) return fn;
  return (tx) => {
    checkFence(tx, fence);
    return fn(tx);
  };
}

/** Open (and for role "main", create and migrate) a Lichen database. */
export function openStore(opts: OpenStoreOptions): Store {
  return new SqliteStore(opts.path, opts.role, opts);
}
