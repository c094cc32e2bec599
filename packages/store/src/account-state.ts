/**
 * The persisted session state of an account (one validated JSON blob per account).
 *
 * Loading never throws on bad data: a blob that cannot be parsed or validated is copied verbatim
 * into `quarantine`, an error event is logged, and the state is invalidated — reset to a fresh state
 * that keeps the stream-management counters when they are still valid (losing them would lose or
 * duplicate stanzas). A state of an older `stateVersion` is invalidated the same way (Monal's
 * invalidateState), unless @lichen/schema provides `migrateAccountState`.
 */
import { eq } from "drizzle-orm";
import * as schemaPkg from "@lichen/schema";
import {
  ACCOUNT_STATE_VERSION,
  type AccountState,
  type StreamManagementState,
} from "@lichen/schema";
import { accountState, quarantine } from "./schema.js";
import type { StoreTx } from "./store.js";
import type { SqlStatement, SqliteDriver } from "./driver.js";
import { TransactionUsageError } from "./errors.js";
import {
  SchemaValidationError,
  freshAccountState,
  validateAccountState,
  validateStreamManagementState,
} from "./validation.js";

export interface LoadedAccountState {
  state: AccountState;
  /** Why the stored state was not used as is (null: it was). */
  invalidated: null | "missing" | "corrupt" | "version";
}

type Migrator = (value: unknown) => AccountState;
const schemaMigrate = (schemaPkg as Record<string, unknown>).migrateAccountState as
  Migrator | undefined;

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
      `state is not JSON: ${(e as Error).message}`,
      undefined,
      "corrupt",
    );
  }

  const version = (parsed as { stateVersion?: unknown } | null)?.stateVersion;
  if (typeof version === "number" && version !== ACCOUNT_STATE_VERSION) {
    if (schemaMigrate) {
      try {
        const migrated = validateAccountState(schemaMigrate(parsed));
        if (tx.mode === "write") saveAccountState(tx, accountId, migrated);
        return { state: migrated, invalidated: null };
      } catch (e) {
        return invalidate(
          tx,
          accountId,
          row.state,
          `state migration failed: ${describe(e)}`,
          smOf(parsed),
          "corrupt",
        );
      }
    }
    const sm = smOf(parsed);
    return invalidate(
      tx,
      accountId,
      row.state,
      `stateVersion ${version} != ${ACCOUNT_STATE_VERSION}`,
      sm,
      "version",
      /* quarantineRow */ false,
    );
  }

  try {
    return { state: validateAccountState(parsed), invalidated: null };
  } catch (e) {
    return invalidate(tx, accountId, row.state, describe(e), smOf(parsed), "corrupt");
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

function smOf(parsed: unknown): StreamManagementState | undefined {
  const sm = (parsed as { sm?: unknown } | null)?.sm;
  try {
    return validateStreamManagementState(sm);
  } catch {
    return undefined;
  }
}

function describe(e: unknown): string {
  if (e instanceof SchemaValidationError) return e.message;
  return e instanceof Error ? e.message : String(e);
}

function invalidate(
  tx: StoreTx,
  accountId: string,
  raw: string,
  error: string,
  keepSm: StreamManagementState | undefined,
  reason: "corrupt" | "version",
  quarantineRow = true,
): LoadedAccountState {
  const now = tx.now || tx.store.clock();
  const state = freshAccountState(now, keepSm);
  tx.store.logger({
    event: reason === "corrupt" ? "store.account-state.corrupt" : "store.account-state.invalidated",
    level: reason === "corrupt" ? "error" : "warn",
    accountId,
    error,
    keptStreamManagement: keepSm !== undefined,
    quarantined: quarantineRow && tx.mode === "write",
  });
  // In a read transaction nothing can be written: the next write-mode load quarantines the row.
  if (tx.mode === "write") {
    if (quarantineRow) {
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
