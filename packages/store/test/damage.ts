/**
 * Deliberately damaged databases for tests: pages are located from the file's own page size and
 * the dbstat table (which b-tree owns which page, how many cells each leaf holds), never guessed.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import Database from "better-sqlite3";
import { openStore, tables } from "../src/index.js";

/** A closed (checkpointed, no WAL left) database with account "alice" and `n` messages, ids 1..n. */
export function makeChatDb(file: string, n: number): void {
  const store = openStore({ path: file, role: "main" });
  store.write((tx) => {
    tx.insert(tables.accounts).values({ id: "alice", jid: "alice@localhost", createdAt: 1 }).run();
    for (let id = 1; id <= n; id++) {
      const chat = `peer${id % 5}@localhost`;
      tx.insert(tables.messages)
        .values({
          accountId: "alice",
          chatJid: chat,
          direction: "in",
          fromJid: chat,
          body: `message ${id} ` + "x".repeat(id % 90),
          stanzaId: `s${id}`,
          stanzaIdBy: "alice@localhost",
          archiveId: `a${id}`,
          sentAt: id,
          storedAt: id,
        })
        .run();
    }
  });
  store.close();
  if (fs.existsSync(`${file}-wal`) && fs.statSync(`${file}-wal`).size > 0)
    throw new Error("the WAL was not checkpointed on close: page offsets would be wrong");
}

function inspect<T>(file: string, fn: (db: Database.Database) => T): T {
  const db = new Database(file, { readonly: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

export function pageSize(file: string): number {
  return inspect(file, (db) => db.pragma("page_size", { simple: true }) as number);
}

/** Leaf pages of a b-tree in key order, with their cell counts. */
export function leaves(file: string, name: string): { page: number; cells: number }[] {
  return inspect(
    file,
    (db) =>
      db
        .prepare(
          "SELECT pageno AS page, ncell AS cells FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY path",
        )
        .all(name) as { page: number; cells: number }[],
  );
}

/**
 * The leaf of a rowid table holding `rowid`, and the rowids on it, for a table whose rowids are
 * 1..n without gaps (leaves in key order hold consecutive runs).
 */
export function leafOfRowid(
  file: string,
  table: string,
  rowid: number,
): { page: number; first: number; last: number } {
  let first = 1;
  for (const leaf of leaves(file, table)) {
    const last = first + leaf.cells - 1;
    if (rowid >= first && rowid <= last) return { page: leaf.page, first, last };
    first = last + 1;
  }
  throw new Error(`rowid ${rowid} is not in ${table}`);
}

/** Deterministic garbage (xorshift32). */
function garbage(length: number, seed: number): Buffer {
  const buf = Buffer.alloc(length);
  let x = seed || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = x & 0xff;
  }
  return buf;
}

/** Overwrite page `page` (1-based) with garbage. */
export function overwritePage(file: string, page: number, seed = 7): void {
  const size = pageSize(file);
  const fd = fs.openSync(file, "r+");
  try {
    fs.writeSync(fd, garbage(size, seed), 0, size, (page - 1) * size);
  } finally {
    fs.closeSync(fd);
  }
}

/** Overwrite the 100-byte database header (page 1's schema b-tree after it stays intact). */
export function overwriteHeader(file: string, seed = 11): void {
  const fd = fs.openSync(file, "r+");
  try {
    fs.writeSync(fd, garbage(100, seed), 0, 100, 0);
  } finally {
    fs.closeSync(fd);
  }
}

/** Content hash of the database file and its WAL (absent WAL = empty). */
export function fileHash(file: string): string {
  const h = createHash("sha256");
  h.update(fs.readFileSync(file));
  const wal = `${file}-wal`;
  h.update(fs.existsSync(wal) ? fs.readFileSync(wal) : Buffer.alloc(0));
  return h.digest("hex");
}
