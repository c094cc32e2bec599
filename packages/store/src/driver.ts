/**
 * The small SQLite driver interface the store's own code uses (statements, exec, pragmas). Node
 * uses better-sqlite3, which satisfies it as is; another synchronous driver (op-sqlite's sync API,
 * a Swift port) needs only these calls. Drizzle sits beside it on the same connection.
 */
import Database from "better-sqlite3";

export interface SqlRunResult {
  changes: number;
  lastInsertRowid: number | bigint;
}

export interface SqlStatement {
  run(...params: unknown[]): SqlRunResult;
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  /** Return only the first column of each row. */
  pluck(toggle?: boolean): SqlStatement;
}

export interface SqliteDriver {
  prepare(sql: string): SqlStatement;
  exec(sql: string): unknown;
  /** PRAGMA helper; `simple` returns the first column of the first row. */
  pragma(source: string, options?: { simple?: boolean }): unknown;
  readonly inTransaction: boolean;
  close(): unknown;
}

/** Open a file with better-sqlite3 (the Node driver). */
export function openBetterSqlite3(
  path: string,
  opts: { busyTimeoutMs: number },
): Database.Database {
  return new Database(path, { timeout: opts.busyTimeoutMs });
}

// Compile-time proof that better-sqlite3 fits the interface.
const _fits: (db: Database.Database) => SqliteDriver = (db) => db;
void _fits;
