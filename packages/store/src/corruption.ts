/**
 * Noticing a damaged database: SQLite's own SQLITE_CORRUPT / SQLITE_NOTADB on any statement, a
 * header check at open, and a marker next to the file so that every process (not only the one that
 * met the damage) refuses to write into it until it has been recovered into a fresh file.
 */
import fs from "node:fs";
import type Database from "better-sqlite3";
import { DatabaseCorruptError } from "./errors.js";

/** SQLITE_CORRUPT (and its extended codes: _INDEX, _SEQUENCE, _VTAB) or SQLITE_NOTADB. */
export function isCorruptionError(e: unknown): boolean {
  if (e instanceof DatabaseCorruptError) return true;
  const code = (e as { code?: unknown } | null)?.code;
  return (
    typeof code === "string" && (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB")
  );
}

const MAGIC = Buffer.from("SQLite format 3\0", "latin1");

/**
 * Validates the 100-byte database header (and that the file is whole pages). Costs one open, one
 * 100-byte read and a stat (22 µs with the marker check: open_damage_check_us in the store
 * benchmark), unlike PRAGMA quick_check, which reads every page (2–3.5 ms per MB: 35–60 ms for a
 * 17.7 MB DB of 50,000 messages, far more for a year of chats) — too slow for every NSE wake-up,
 * so the full check runs on demand (checkIntegrity, "lichen-store integrity") or when asked at open.
 *
 * Returns null when the header is sound (or the file is empty: SQLite will create it), "not-sqlite"
 * for a file that never was a SQLite database, or the problem found.
 */
export function checkHeader(path: string): null | "not-sqlite" | string {
  let fd: number;
  try {
    fd = fs.openSync(path, "r");
  } catch {
    return null; // missing: the open reports it
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size === 0) return null;
    const h = Buffer.alloc(Math.min(size, 101));
    fs.readSync(fd, h, 0, h.length, 0);
    if (h.length < 100) return "not-sqlite";
    // Page 1 holds the schema table's b-tree right after the header (type 0x0d leaf or 0x05
    // interior), and a database is whole pages: a file like that with a wrong magic string is a
    // database whose header was overwritten, not some other file.
    const btreeFollows = h.length > 100 && (h[100] === 0x0d || h[100] === 0x05);
    if (!h.subarray(0, 16).equals(MAGIC)) {
      return btreeFollows && size % 512 === 0 ? "header: magic string overwritten" : "not-sqlite";
    }
    const rawPageSize = h.readUInt16BE(16);
    const pageSize = rawPageSize === 1 ? 65536 : rawPageSize;
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0)
      return `header: invalid page size ${rawPageSize}`;
    if (h[18] !== 1 && h[18] !== 2) return `header: invalid write version ${h[18]}`;
    if (h[19] !== 1 && h[19] !== 2) return `header: invalid read version ${h[19]}`;
    if (h[21] !== 64 || h[22] !== 32 || h[23] !== 32)
      return "header: invalid payload fractions (bytes 21-23 must be 64, 32, 32)";
    const schemaFormat = h.readUInt32BE(44);
    if (schemaFormat > 4) return `header: invalid schema format ${schemaFormat}`;
    const encoding = h.readUInt32BE(56);
    if (encoding > 3) return `header: invalid text encoding ${encoding}`;
    if (size % pageSize !== 0)
      return `file size ${size} is not a multiple of the page size ${pageSize} (truncated or appended to)`;
    if (!btreeFollows) return "page 1: the schema b-tree header is overwritten";
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The marker "<db>-damaged": written by the first process that meets the damage, read (one stat)
 * by every open. It names the file's inode, so a recovered database moved into place is not
 * refused because of the marker its damaged predecessor left.
 */
export interface DamageMarker {
  ino: number;
  detectedAt: number;
  pid: number;
  detail: string;
}

export function markerPath(dbPath: string): string {
  return `${dbPath}-damaged`;
}

export function readDamageMarker(dbPath: string): DamageMarker | null {
  let text: string;
  try {
    text = fs.readFileSync(markerPath(dbPath), "utf8");
  } catch {
    return null;
  }
  let marker: DamageMarker;
  try {
    marker = JSON.parse(text) as DamageMarker;
  } catch {
    // Half-written (the writer died mid-write): still a statement that the file is damaged.
    return { ino: -1, detectedAt: 0, pid: 0, detail: "damage marker present (unreadable)" };
  }
  const st = fs.statSync(dbPath, { throwIfNoEntry: false });
  if (!st || (marker.ino !== -1 && st.ino !== marker.ino)) return null; // another file now
  return marker;
}

export function writeDamageMarker(dbPath: string, detail: string): void {
  try {
    const st = fs.statSync(dbPath, { throwIfNoEntry: false });
    if (!st) return;
    const marker: DamageMarker = { ino: st.ino, detectedAt: Date.now(), pid: process.pid, detail };
    const text = JSON.stringify(marker) + "\n";
    try {
      fs.writeFileSync(markerPath(dbPath), text, { flag: "wx" });
    } catch (e) {
      // First writer wins, unless its marker is about a file that is no longer at this path.
      if ((e as { code?: string }).code === "EEXIST" && readDamageMarker(dbPath) === null)
        fs.writeFileSync(markerPath(dbPath), text);
    }
  } catch {
    // A read-only directory: this process refuses anyway.
  }
}

const unguarded = new WeakMap<Database.Database, Database.Database["prepare"]>();

/** The connection's own prepare(), without the guard (benchmark baselines measure raw SQLite). */
export function unguardedPrepare(db: Database.Database): Database.Database["prepare"] {
  return unguarded.get(db) ?? db.prepare.bind(db);
}

export interface StatementGuard {
  /** Called with a corruption error before it is rethrown (as a DatabaseCorruptError). */
  onCorrupt(e: unknown): DatabaseCorruptError;
  /** Non-null once the database is known damaged: statements that write are refused. */
  refusal(): DatabaseCorruptError | null;
}

type Stmt = Database.Statement;

/**
 * Makes every statement prepared on `db` from now on report corruption, and refuse to write once
 * the database is known damaged. Statements are wrapped per instance (a closure per method, no
 * Proxy) so the happy path costs one extra call; drizzle and the raw handle go through it alike.
 */
export function guardStatements(db: Database.Database, guard: StatementGuard): void {
  const prepare = db.prepare.bind(db);
  unguarded.set(db, prepare);
  const wrap = (stmt: Stmt, name: "run" | "get" | "all") => {
    const orig = stmt[name] as (...a: unknown[]) => unknown;
    // Asked once: INSERT ... RETURNING runs through get()/all(), so "reader" would not do.
    const writes = !stmt.readonly;
    (stmt as unknown as Record<string, unknown>)[name] = function (this: Stmt, ...args: unknown[]) {
      if (writes) {
        const refused = guard.refusal();
        if (refused) throw refused;
      }
      try {
        return orig.apply(this, args);
      } catch (e) {
        throw isCorruptionError(e) ? guard.onCorrupt(e) : e;
      }
    };
  };
  const wrapIterate = (stmt: Stmt) => {
    const iterate = stmt.iterate as (...a: unknown[]) => IterableIterator<unknown>;
    (stmt as unknown as Record<string, unknown>).iterate = function (
      this: Stmt,
      ...args: unknown[]
    ) {
      let it: IterableIterator<unknown>;
      try {
        it = iterate.apply(this, args);
      } catch (e) {
        throw isCorruptionError(e) ? guard.onCorrupt(e) : e;
      }
      const wrapped: IterableIterator<unknown> = {
        next: (...a: []) => {
          try {
            return it.next(...a);
          } catch (e) {
            throw isCorruptionError(e) ? guard.onCorrupt(e) : e;
          }
        },
        return: (v?: unknown) => it.return?.(v) ?? { done: true, value: v },
        [Symbol.iterator]() {
          return wrapped;
        },
      };
      return wrapped;
    };
  };
  (db as { prepare: Database.Database["prepare"] }).prepare = ((source: string) => {
    let stmt: Stmt;
    try {
      stmt = prepare(source);
    } catch (e) {
      throw isCorruptionError(e) ? guard.onCorrupt(e) : e;
    }
    wrap(stmt, "run");
    wrap(stmt, "get");
    wrap(stmt, "all");
    wrapIterate(stmt);
    return stmt;
  }) as Database.Database["prepare"];
  // pragma() prepares through the native handle, not through prepare().
  const pragma = db.pragma.bind(db);
  db.pragma = ((source: string, options?: Database.PragmaOptions) => {
    try {
      return pragma(source, options);
    } catch (e) {
      throw isCorruptionError(e) ? guard.onCorrupt(e) : e;
    }
  }) as Database.Database["pragma"];
  const exec = db.exec.bind(db);
  db.exec = (source: string) => {
    try {
      return exec(source);
    } catch (e) {
      throw isCorruptionError(e) ? guard.onCorrupt(e) : e;
    }
  };
}
