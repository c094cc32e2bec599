/**
 * The persisted session state of an account: one row of `account_state`.
 *
 * Layout. The fields a stanza changes — XEP-0198 `sm.inboundH`, `sm.outboundSent`,
 * `sm.outboundAcked` and the MAM marks `mam.syncedAt`, `mam.lastStanzaId`, `mam.lastTimestamp` —
 * live in their own columns; the rest of AccountState is one JSON blob. The type stays one
 * AccountState (callers and a Swift NSE decode one object; the SQL contract merges the columns in
 * with json_set), only the row is split, so that handling a stanza costs one prepared UPDATE of
 * the columns instead of parsing, validating and writing the whole blob. **The columns win** over
 * any copy of those fields in the blob (an older or foreign writer's): the blob is written only
 * when something else changed, so its copy would be stale.
 *
 * Fast path. Each connection keeps the last blob text it validated per account and its parsed
 * value: a load whose blob text is unchanged clones that value and checks only the column values;
 * a save whose blob part equals what was loaded writes only the columns, guarded by the blob text
 * it was loaded from (`WHERE state = ?`: another writer's blob is never overwritten blindly). A
 * load right after this connection's own committed save, with no other connection's commit and no
 * other row change of this connection since, does not read the row at all (see knownRow).
 *
 * Loading never throws on bad data: a state that cannot be parsed or validated (blob or column) is
 * copied into `quarantine` (the stored AccountState as JSON, columns merged in; the blob verbatim
 * when it is not JSON), an error event is logged, and the state is invalidated with
 * @lichen/schema's `migrateAccountState` — a fresh state that keeps the stream-management counters
 * and the unacked queue reference when they still validate (losing them would lose or duplicate
 * stanzas), with the MAM gap marked open when they do not. A blob of another `stateVersion` is
 * invalidated the same way (Monal's invalidateState), without quarantine.
 */
import { eq } from "drizzle-orm";
import { ACCOUNT_STATE_VERSION, migrateAccountState, type AccountState } from "@lichen/schema";
import { accountState, quarantine } from "./schema.js";
import type { StoreTx } from "./store.js";
import type { SqlStatement, SqliteDriver } from "./driver.js";
import { TransactionUsageError } from "./errors.js";
import {
  freshAccountState,
  validateAccountState,
  validateStreamManagementState,
} from "./validation.js";

export interface LoadedAccountState {
  state: AccountState;
  /** Why the stored state was not used as is (null: it was). */
  invalidated: null | "missing" | "corrupt" | "version";
}

/** The AccountState fields kept in columns, by object: sm.* and mam.* (see module comment). */
const COLUMN_FIELDS = {
  sm: new Set(["inboundH", "outboundSent", "outboundAcked"]),
  mam: new Set(["syncedAt", "lastStanzaId", "lastTimestamp"]),
} as const;

/**
 * SQL expression (over the `account_state` row) giving the stored AccountState as one JSON text:
 * the blob with the column fields merged in, or the blob as is when it is not JSON. For readers
 * outside this module (the Swift NSE's accountStateLoad, lichen-store).
 */
export const ACCOUNT_STATE_JSON_SQL =
  "CASE WHEN json_valid(state) THEN json_set(state, " +
  "'$.sm.inboundH', sm_inbound_h, '$.sm.outboundSent', sm_outbound_sent, " +
  "'$.sm.outboundAcked', sm_outbound_acked, '$.mam.syncedAt', mam_synced_at, " +
  "'$.mam.lastStanzaId', mam_last_stanza_id, '$.mam.lastTimestamp', mam_last_timestamp) " +
  "ELSE state END";

interface StateRow {
  state: string;
  sm_inbound_h: unknown;
  sm_outbound_sent: unknown;
  sm_outbound_acked: unknown;
  mam_synced_at: unknown;
  mam_last_stanza_id: unknown;
  mam_last_timestamp: unknown;
}

/** A validated blob: its text and its parsed value (coldValue; never handed out). */
interface BlobEntry {
  raw: string;
  cold: Record<string, unknown>;
}

/** Load an account's state (see module comment for corrupt rows). Returns a fresh state when none exists. */
export function loadAccountState(tx: StoreTx, accountId: string): AccountState {
  return loadAccountStateDetailed(tx, accountId).state;
}

export function loadAccountStateDetailed(tx: StoreTx, accountId: string): LoadedAccountState {
  const stmts = statements(tx);
  const row =
    knownRow(tx, stmts, accountId) ?? (stmts.select.get(accountId) as StateRow | undefined);
  if (!row) return { state: freshAccountState(tx.now || tx.store.clock()), invalidated: "missing" };

  let entry = stmts.blobs.get(accountId);
  if (entry?.raw !== row.state) {
    const checked = checkBlob(tx, accountId, row);
    if ("invalidated" in checked) return checked;
    entry = checked;
    stmts.blobs.set(accountId, entry);
  }
  const state = handOut(entry.cold);
  mergeColumns(state, row);
  if (!columnsValid(state)) {
    // A bad column value beside a known blob: the validator names it, and it is invalidated.
    const checked = checkBlob(tx, accountId, row);
    if ("invalidated" in checked) return checked;
  }
  origins.set(state, entry);
  return { state, invalidated: null };
}

/** Parse and validate a blob (with its columns): its entry, or the invalidated state. */
function checkBlob(tx: StoreTx, accountId: string, row: StateRow): BlobEntry | LoadedAccountState {
  let parsed: unknown;
  try {
    parsed = JSON.parse(row.state);
  } catch (e) {
    return invalidate(
      tx,
      accountId,
      row.state,
      undefined,
      `state is not JSON: ${(e as Error).message}`,
      "corrupt",
    );
  }
  mergeColumns(parsed, row);

  const version = (parsed as { stateVersion?: unknown } | null)?.stateVersion;
  if (
    typeof version === "number" &&
    Number.isInteger(version) &&
    version !== ACCOUNT_STATE_VERSION
  ) {
    return invalidate(
      tx,
      accountId,
      JSON.stringify(parsed),
      parsed,
      `stateVersion ${version} != ${ACCOUNT_STATE_VERSION}`,
      "version",
    );
  }
  try {
    return { raw: row.state, cold: coldValue(validateAccountState(parsed)) };
  } catch (e) {
    return invalidate(
      tx,
      accountId,
      JSON.stringify(parsed),
      parsed,
      (e as Error).message,
      "corrupt",
    );
  }
}

/**
 * Validate and store an account's state. Throws SchemaValidationError naming the bad field. When
 * only column fields changed since the state was loaded, one UPDATE of the columns.
 */
export function saveAccountState(tx: StoreTx, accountId: string, state: AccountState): void {
  if (tx.mode !== "write")
    throw new TransactionUsageError("saveAccountState() needs a write transaction");
  const stmts = statements(tx);
  const now = tx.now;
  const origin = origins.get(state);
  const columns = columnValues(state);
  if (origin && columnsValid(state) && equalOutsideColumns(state, origin.cold)) {
    if (stmts.updateColumns.run(...columns, now, accountId, origin.raw).changes === 1) {
      rememberSaved(tx, stmts, accountId, origin.raw, columns);
      return;
    }
    // The stored blob is not the one this state was loaded from: write it whole.
  }

  validateAccountState(state);
  const json = blobJson(state);
  // UPDATE first: the row almost always exists, and a plain UPDATE is cheaper than an upsert.
  if (stmts.update.run(json, state.stateVersion, ...columns, now, accountId).changes === 0) {
    stmts.insert.run(accountId, json, state.stateVersion, ...columns, now);
  }
  const entry: BlobEntry = { raw: json, cold: coldValue(state) };
  stmts.blobs.set(accountId, entry);
  origins.set(state, entry);
  rememberSaved(tx, stmts, accountId, json, columns);
}

/** The six column values of a state, in COLUMNS order (both UPDATEs and the INSERT bind them so). */
type ColumnValues = [
  inboundH: number,
  outboundSent: number,
  outboundAcked: number,
  syncedAt: number | null,
  lastStanzaId: string | null,
  lastTimestamp: number | null,
];
function columnValues(state: AccountState): ColumnValues {
  const { sm, mam } = state;
  return [
    sm.inboundH,
    sm.outboundSent,
    sm.outboundAcked,
    mam.syncedAt ?? null,
    mam.lastStanzaId,
    mam.lastTimestamp,
  ];
}

/*
 * Skipping the state read. The row this connection saved is the stored row for as long as no other
 * connection has committed (PRAGMA data_version, which changes only when another connection — of
 * this process or another — commits) and this connection has changed no row since
 * (total_changes(): counts every row any statement of this connection inserted, updated or deleted,
 * including raw SQL beside this module and changes later rolled back). Both are read inside the
 * transaction that saved, where no other connection can commit, and the row is only remembered
 * once that transaction committed (afterCommit: dropped on rollback, a rolled-back savepoint's
 * too). A later load whose two values are the same uses the remembered row: one cheap statement
 * pair instead of reading the row. data_version comes from tx.dataVersion(), read once per write
 * transaction: a stanza's load and save share one read (1.9 µs each on the 2-core VM).
 */
interface KnownRow {
  row: StateRow;
  dataVersion: number;
  totalChanges: number;
}

function rememberSaved(
  tx: StoreTx,
  stmts: AccountStateStatements,
  accountId: string,
  blob: string,
  c: ColumnValues,
): void {
  const known: KnownRow = {
    row: {
      state: blob,
      sm_inbound_h: c[0],
      sm_outbound_sent: c[1],
      sm_outbound_acked: c[2],
      mam_synced_at: c[3],
      mam_last_stanza_id: c[4],
      mam_last_timestamp: c[5],
    },
    dataVersion: tx.dataVersion(),
    totalChanges: stmts.totalChanges.get() as number,
  };
  tx.afterCommit(() => stmts.known.set(accountId, known));
}

function knownRow(
  tx: StoreTx,
  stmts: AccountStateStatements,
  accountId: string,
): StateRow | undefined {
  const known = stmts.known.get(accountId);
  if (
    known &&
    known.dataVersion === tx.dataVersion() &&
    known.totalChanges === stmts.totalChanges.get()
  )
    return known.row;
  return undefined;
}

// Which blob each loaded or saved state object came from (for the column-only save).
const origins = new WeakMap<AccountState, BlobEntry>();

// This is the per-stanza hot path: prepared once per connection (the query builder costs ~10x).
interface AccountStateStatements {
  select: SqlStatement;
  updateColumns: SqlStatement;
  update: SqlStatement;
  insert: SqlStatement;
  totalChanges: SqlStatement;
  /** Last validated blob per account on this connection. */
  blobs: Map<string, BlobEntry>;
  /** The row this connection last saved and committed, per account (see knownRow). */
  known: Map<string, KnownRow>;
}
const COLUMNS =
  "sm_inbound_h, sm_outbound_sent, sm_outbound_acked, mam_synced_at, mam_last_stanza_id, mam_last_timestamp";
const cache = new WeakMap<SqliteDriver, AccountStateStatements>();
function statements(tx: StoreTx): AccountStateStatements {
  let s = cache.get(tx.sqlite);
  if (!s) {
    s = {
      select: tx.sqlite.prepare(`SELECT state, ${COLUMNS} FROM account_state WHERE account_id = ?`),
      updateColumns: tx.sqlite.prepare(
        "UPDATE account_state SET sm_inbound_h = ?, sm_outbound_sent = ?, sm_outbound_acked = ?, " +
          "mam_synced_at = ?, mam_last_stanza_id = ?, mam_last_timestamp = ?, updated_at = ? " +
          "WHERE account_id = ? AND state = ?",
      ),
      update: tx.sqlite.prepare(
        "UPDATE account_state SET state = ?, version = ?, sm_inbound_h = ?, sm_outbound_sent = ?, " +
          "sm_outbound_acked = ?, mam_synced_at = ?, mam_last_stanza_id = ?, mam_last_timestamp = ?, " +
          "updated_at = ? WHERE account_id = ?",
      ),
      insert: tx.sqlite.prepare(
        `INSERT INTO account_state (account_id, state, version, ${COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      totalChanges: tx.sqlite.prepare("SELECT total_changes()").pluck(),
      blobs: new Map(),
      known: new Map(),
    };
    cache.set(tx.sqlite, s);
  }
  return s;
}

/** The columns win: copy them over whatever the blob holds (when sm/mam are objects at all). */
function mergeColumns(target: unknown, row: StateRow): void {
  const t = target as { sm?: unknown; mam?: unknown } | null;
  if (!isObject(t)) return;
  if (isObject(t.sm)) {
    const sm = t.sm as Record<string, unknown>;
    sm.inboundH = row.sm_inbound_h;
    sm.outboundSent = row.sm_outbound_sent;
    sm.outboundAcked = row.sm_outbound_acked;
  }
  if (isObject(t.mam)) {
    const mam = t.mam as Record<string, unknown>;
    mam.syncedAt = row.mam_synced_at;
    mam.lastStanzaId = row.mam_last_stanza_id;
    mam.lastTimestamp = row.mam_last_timestamp;
  }
}

const isCounter = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v >= 0;

/** The column fields against their schema (Counter, EpochMsOrNull, string | null), by hand: cheap. */
function columnsValid(state: AccountState): boolean {
  const { sm, mam } = state;
  return (
    isCounter(sm.inboundH) &&
    isCounter(sm.outboundSent) &&
    isCounter(sm.outboundAcked) &&
    (mam.syncedAt === undefined || mam.syncedAt === null || isCounter(mam.syncedAt)) &&
    (mam.lastStanzaId === null || typeof mam.lastStanzaId === "string") &&
    (mam.lastTimestamp === null || isCounter(mam.lastTimestamp))
  );
}

/**
 * The cached value of a blob: a deep copy of the validated state. It keeps the column fields (their
 * values unused, overwritten from the columns on every load) so that the copies handOut makes have
 * one shape and loading only overwrites fields. What handOut shares (below the second level) is
 * frozen; the two levels it copies are not (V8 copies a frozen object on a slow path).
 */
function coldValue(state: AccountState): Record<string, unknown> {
  const cold = cloneJson(state) as Record<string, unknown>;
  for (const top of Object.values(cold))
    if (typeof top === "object" && top !== null) for (const v of Object.values(top)) deepFreeze(v);
  return cold;
}

/** The blob text: the state without the column fields. */
function blobJson(state: AccountState): string {
  const out: Record<string, unknown> = { ...state };
  for (const [key, fields] of Object.entries(COLUMN_FIELDS)) {
    const obj = out[key] as Record<string, unknown>;
    const kept: Record<string, unknown> = {};
    for (const f in obj) if (!fields.has(f)) kept[f] = obj[f];
    out[key] = kept;
  }
  return JSON.stringify(out);
}

/**
 * The state handed to a caller: the top level and each object in it (sm, mam, features, push, …)
 * are fresh copies, so assigning any field works; deeper values (the feature lists, a push error)
 * stay shared with the frozen blob value — a caller replaces them, and changing one in place throws
 * instead of corrupting the cache. Saving then compares those two levels by identity.
 */
function handOut(cold: Record<string, unknown>): AccountState {
  const out: Record<string, unknown> = {};
  for (const k in cold) {
    const v = cold[k];
    out[k] = Array.isArray(v) ? v.slice() : typeof v === "object" && v !== null ? { ...v } : v;
  }
  return out as unknown as AccountState;
}

/**
 * Whether `state` is `cold` apart from the column fields: the top level and the objects in it
 * compared field by field, deeper values by identity (see handOut; a replaced list counts as
 * changed, which only costs a whole write).
 */
function equalOutsideColumns(state: AccountState, cold: Record<string, unknown>): boolean {
  const s = state as unknown as Record<string, unknown>;
  let n = 0;
  for (const k in s) {
    const a = s[k];
    if (a === undefined) continue;
    n++;
    const b = cold[k];
    if (a === b) continue;
    if (!shallowEqual(a, b, (COLUMN_FIELDS as Record<string, ReadonlySet<string>>)[k]))
      return false;
  }
  return n === Object.keys(cold).length;
}

function shallowEqual(a: unknown, b: unknown, skip: ReadonlySet<string> | undefined): boolean {
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  let na = 0;
  for (const k in ra) {
    const x = ra[k];
    if (x === undefined || skip?.has(k)) continue;
    na++;
    if (x !== rb[k]) return false;
  }
  let nb = 0;
  for (const k in rb) if (rb[k] !== undefined && !skip?.has(k)) nb++;
  return na === nb;
}

function isObject(v: unknown): v is object {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Deep copy of JSON data (plain objects, arrays, primitives); undefined members are dropped. */
function cloneJson(v: unknown): unknown {
  if (typeof v !== "object" || v === null) return v;
  if (Array.isArray(v)) return v.map(cloneJson);
  const out: Record<string, unknown> = {};
  for (const k in v) {
    const x = (v as Record<string, unknown>)[k];
    if (x !== undefined) out[k] = cloneJson(x);
  }
  return out;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

function smKept(parsed: unknown): boolean {
  try {
    validateStreamManagementState((parsed as { sm?: unknown } | null)?.sm);
    return true;
  } catch {
    return false;
  }
}

function invalidate(
  tx: StoreTx,
  accountId: string,
  raw: string,
  parsed: unknown,
  error: string,
  reason: "corrupt" | "version",
): LoadedAccountState {
  const now = tx.now || tx.store.clock();
  const state = validateAccountState(migrateAccountState(parsed, now));
  const keptSm = parsed !== undefined && smKept(parsed);
  const quarantined = reason === "corrupt" && tx.mode === "write";
  tx.store.logger({
    event: reason === "corrupt" ? "store.account-state.corrupt" : "store.account-state.invalidated",
    level: reason === "corrupt" ? "error" : "warn",
    accountId,
    error,
    keptStreamManagement: keptSm,
    quarantined,
  });
  // In a read transaction nothing can be written: the next write-mode load does it.
  if (tx.mode === "write") {
    if (quarantined) {
      tx.insert(quarantine)
        .values({ tableName: "account_state", rowKey: accountId, raw, error, at: now })
        .run();
    }
    saveAccountState(tx, accountId, state);
    tx.update(accountState)
      .set({ invalidatedAt: now })
      .where(eq(accountState.accountId, accountId))
      .run();
  }
  return { state, invalidated: reason };
}
