/**
 * Applying and checking the drizzle-kit migrations in `packages/store/migrations/`.
 *
 * drizzle's own SQLite migrator reads the last applied migration *before* a deferred BEGIN, so two
 * processes migrating at once can both apply the same migration. Here only role "main" migrates,
 * inside a BEGIN IMMEDIATE transaction (the read of applied migrations happens under the write
 * lock), and uses drizzle's bookkeeping table so drizzle-kit and a Swift port read the same rows.
 * Roles "nse" and "share" only compare the applied rows with the bundled journal.
 */
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { SqliteDriver } from "./driver.js";
import { readMigrationFiles, type MigrationMeta } from "drizzle-orm/migrator";
import { SchemaAheadError, SchemaBehindError } from "./errors.js";

export const MIGRATIONS_TABLE = "__drizzle_migrations";

let cachedFolder: string | undefined;

/**
 * The `migrations/` folder of this package, found from this module's location (not the cwd); when
 * this code was bundled into an app (not inside the package any more), from the installed package.
 */
export function migrationsFolder(): string {
  if (cachedFolder) return cachedFolder;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, "package.json");
    if (fs.existsSync(pkg)) {
      const name = (JSON.parse(fs.readFileSync(pkg, "utf8")) as { name?: string }).name;
      if (name === "@lichen/store") {
        cachedFolder = path.join(dir, "migrations");
        return cachedFolder;
      }
    }
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  try {
    const pkg = createRequire(import.meta.url).resolve("@lichen/store/package.json");
    cachedFolder = path.join(path.dirname(pkg), "migrations");
    return cachedFolder;
  } catch {
    throw new Error("cannot find the @lichen/store package root (migrations/ folder)");
  }
}

let cachedMigrations: MigrationMeta[] | undefined;
export function bundledMigrations(): MigrationMeta[] {
  cachedMigrations ??= readMigrationFiles({ migrationsFolder: migrationsFolder() });
  return cachedMigrations;
}

export interface AppliedMigration {
  hash: string;
  createdAt: number;
}

export function appliedMigrations(sqlite: SqliteDriver): AppliedMigration[] | null {
  const exists = sqlite
    .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?")
    .get(MIGRATIONS_TABLE);
  if (!exists) return null;
  return (
    sqlite
      .prepare(
        `SELECT hash, created_at AS createdAt FROM "${MIGRATIONS_TABLE}" ORDER BY created_at`,
      )
      .all() as {
      hash: string;
      createdAt: number | string;
    }[]
  ).map((r) => ({ hash: r.hash, createdAt: Number(r.createdAt) }));
}

export interface MigrationStatus {
  applied: number;
  bundled: number;
  pending: MigrationMeta[];
  /** Hash of an applied migration that this build does not bundle (DB is newer). */
  unknown?: string;
}

export function migrationStatus(sqlite: SqliteDriver): MigrationStatus {
  const bundled = bundledMigrations();
  const applied = appliedMigrations(sqlite) ?? [];
  const appliedMillis = new Set(applied.map((a) => a.createdAt));
  const bundledMillis = new Set(bundled.map((b) => b.folderMillis));
  const unknown = applied.find((a) => !bundledMillis.has(a.createdAt));
  const last = applied.length ? Math.max(...applied.map((a) => a.createdAt)) : -Infinity;
  return {
    applied: applied.length,
    bundled: bundled.length,
    // Same rule as drizzle's migrator: everything newer than the last applied one is pending.
    pending: bundled.filter((b) => !appliedMillis.has(b.folderMillis) && b.folderMillis > last),
    ...(unknown ? { unknown: unknown.hash } : {}),
  };
}

let cachedJournalMillis: number[] | undefined;
/**
 * The bundled migrations' timestamps, from meta/_journal.json alone: all the nse/share check
 * needs. bundledMigrations() also reads and hashes every SQL file, a cost on the NSE's cold start.
 */
function bundledMigrationMillis(): number[] {
  cachedJournalMillis ??= (
    JSON.parse(fs.readFileSync(path.join(migrationsFolder(), "meta", "_journal.json"), "utf8")) as {
      entries: { when: number }[];
    }
  ).entries.map((e) => e.when);
  return cachedJournalMillis;
}

/** nse/share: fail clearly unless every bundled migration is applied (migrationStatus's rules). */
export function assertMigrated(sqlite: SqliteDriver, dbPath: string): void {
  const bundled = bundledMigrationMillis();
  const applied = appliedMigrations(sqlite) ?? [];
  const bundledMillis = new Set(bundled);
  const unknown = applied.find((a) => !bundledMillis.has(a.createdAt));
  if (unknown) throw new SchemaAheadError(unknown.hash, dbPath);
  const appliedMillis = new Set(applied.map((a) => a.createdAt));
  const last = applied.length ? Math.max(...applied.map((a) => a.createdAt)) : -Infinity;
  if (bundled.some((when) => !appliedMillis.has(when) && when > last))
    throw new SchemaBehindError(applied.length, bundled.length, dbPath);
}

/**
 * main: apply pending migrations. `runImmediate` runs a function inside BEGIN IMMEDIATE with the
 * store's busy retries. Foreign keys are switched off around it because drizzle-kit's
 * table-recreating migrations would otherwise cascade deletes (PRAGMA foreign_keys is a no-op
 * inside a transaction).
 */
export function applyMigrations(
  sqlite: SqliteDriver,
  dbPath: string,
  runImmediate: (fn: () => void) => void,
): number {
  // Cheap check first, without the write lock.
  const before = migrationStatus(sqlite);
  if (before.unknown) throw new SchemaAheadError(before.unknown, dbPath);
  if (before.pending.length === 0) return 0;
  let count = 0;
  sqlite.pragma("foreign_keys = OFF");
  try {
    runImmediate(() => {
      sqlite.exec(
        `CREATE TABLE IF NOT EXISTS "${MIGRATIONS_TABLE}" (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at numeric)`,
      );
      // Re-read under the write lock: another main process may have migrated meanwhile.
      const status = migrationStatus(sqlite);
      const insert = sqlite.prepare(
        `INSERT INTO "${MIGRATIONS_TABLE}" ("hash", "created_at") VALUES (?, ?)`,
      );
      for (const m of status.pending) {
        for (const stmt of m.sql) {
          if (stmt.trim()) sqlite.exec(stmt);
        }
        insert.run(m.hash, m.folderMillis);
        count++;
      }
      const violations = sqlite.pragma("foreign_key_check") as unknown[];
      if (violations.length > 0) {
        throw new Error(`migration left ${violations.length} foreign key violations; rolled back`);
      }
    });
  } finally {
    sqlite.pragma("foreign_keys = ON");
  }
  return count;
}
