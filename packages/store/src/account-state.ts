/**
 * The persisted session state of an account (one validated JSON blob per account).
 *
 * Loading never throws on bad data: a blob that cannot be parsed or validated is copied verbatim
 * into `quarantine`, an error event is logged, and the state is invalidated with @lichen/schema's
 * `migrateAccountState` — a fresh state that keeps the stream-management counters and the unacked
 * queue reference when they still validate (losing them would lose or duplicate stanzas), with the
 * MAM gap marked open when they do not. A blob of another `stateVersion` is invalidated the same
 * way (Monal's invalidateState), without quarantine.
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

/** Load an account's state (see module comment for corrupt rows). Returns a fresh state when none exists. */
export function loadAccountState(tx: StoreTx, accountId: string): AccountState {
  return loadAccountStateDetailed(tx, accountId).state;
}

export function loadAccountStateDetailed(tx: StoreTx, accountId: string): LoadedAccountState {
  const row = statements(tx).select.get(accountId) as { state: string } | undefined;
  if (!row) return { state: freshAccountState(tx.now || tx.store.clock()), invalidated: "missing" };

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

  const version = (parsed as { stateVersion?: unknown } | null)?.stateVersion;
  if (
    typeof version === "number" &&
    Number.isInteger(version) &&
    version !== ACCOUNT_STATE_VERSION
  ) {
    return invalidate(
      tx,
      accountId,
      row.state,
      parsed,
      `stateVersion ${version} != ${ACCOUNT_STATE_VERSION}`,
      "version",
    );
  }

  try {
    return { state: validateAccountState(parsed), invalidated: null };
  } catch (e) {
    return invalidate(tx, accountId, row.state, parsed, (e as Error).message, "corrupt");
  }
}

/** Validate and store an account's state. Throws SchemaValidationError naming the bad field. */
export function saveAccountState(tx: StoreTx, accountId: string, state: AccountState): void {
  if (tx.mode !== "write")
    throw new TransactionUsageError("saveAccountState() needs a write transaction");
  validateAccountState(state);
  const json = JSON.stringify(state);
  const now = tx.now;
  const stmts = statements(tx);
  // UPDATE first: the row almost always exists, and a plain UPDATE is cheaper than an upsert.
  if (stmts.update.run(json, state.stateVersion, now, accountId).changes === 0) {
    stmts.insert.run(accountId, json, state.stateVersion, now);
  }
}

// This is the per-stanza hot path: prepared once per connection (the query builder costs ~10x).
interface AccountStateStatements {
  select: SqlStatement;
  update: SqlStatement;
  insert: SqlStatement;
}
const cache = new WeakMap<SqliteDriver, AccountStateStatements>();
function statements(tx: StoreTx): AccountStateStatements {
  let s = cache.get(tx.sqlite);
  if (!s) {
    s = {
      select: tx.sqlite.prepare("SELECT state FROM account_state WHERE account_id = ?"),
      update: tx.sqlite.prepare(
        "UPDATE account_state SET state = ?, version = ?, updated_at = ? WHERE account_id = ?",
      ),
      insert: tx.sqlite.prepare(
        "INSERT INTO account_state (account_id, state, version, updated_at) VALUES (?, ?, ?, ?)",
      ),
    };
    cache.set(tx.sqlite, s);
  }
  return s;
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
