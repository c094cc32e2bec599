/**
 * Recovery of a damaged database: a fresh, migrated database receives every row that can still be
 * read, table by table. Rows are read in rowid order; where the read fails (a damaged page), the
 * next readable rowid is searched (doubling steps, then bisection) and copying goes on from there,
 * so only the rows on damaged pages are lost. The damaged file is never written.
 */
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { checkHeader, isCorruptionError } from "./corruption.js";
import { StoreError } from "./errors.js";
import { MIGRATIONS_TABLE, bundledMigrations } from "./migrations.js";
import { openStore } from "./store.js";

export interface RecoveredTable {
  table: string;
  copied: number;
  /**
   * Rows known to be lost: rowids listed by a readable index of the table but not copied, plus rows
   * that were read but rejected by the fresh schema. null when no index could tell (then see
   * skippedRowids).
   */
  lost: number | null;
  /** Rowid ranges that could not be read (inclusive), e.g. [[1021, 1043]]. */
  skippedRowids: [number, number][];
  /** Rows dropped after the copy because the row they refer to was lost (foreign keys). */
  orphaned: number;
  /**
   * Of `copied`: rows read straight from leaf pages that a damaged interior page had cut off from
   * the table (pages integrity_check reports as "never used"), for rowids in the skipped ranges.
   */
  fromDetachedPages: number;
  /** What went wrong, when something did. */
  errors: string[];
}

export interface RecoveryReport {
  source: string;
  output: string;
  /** The header had to be rebuilt (it was damaged) before anything could be read. */
  headerRebuilt: boolean;
  /** The page size the rebuilt header uses (from the damaged file, or found by trying). */
  pageSize: number;
  tables: RecoveredTable[];
  copied: number;
  /** Sum of known losses (tables with unknown loss count as 0 here; see each table). */
  lost: number;
  /** The recovered database passed PRAGMA integrity_check and foreign_key_check. */
  ok: boolean;
}

const quote = (id: string) => `"${id.replaceAll('"', '""')}"`;

/** Page sizes to try when the header no longer says: SQLite's default first. */
const PAGE_SIZES = [4096, 1024, 2048, 8192, 16384, 32768, 65536, 512];

/**
 * Copy every readable row of `source` into a new database at `output` (which must not exist).
 * The output is created and migrated like the main app would; the schema is this build's.
 */
export function recoverDatabase(source: string, output: string): RecoveryReport {
  if (!fs.existsSync(source)) throw new StoreError(`no database at ${source}`);
  if (fs.existsSync(output))
    throw new StoreError(
      `${output} already exists: recovery writes a new file, choose another name`,
    );
  if (path.resolve(source) === path.resolve(output))
    throw new StoreError("the output must be a new file, not the damaged one");

  const header = checkHeader(source);
  if (header === "not-sqlite") throw new StoreError(`${source} is not a SQLite database`);
  let readFrom = source;
  let scratch: string[] = [];
  let pageSize = 0;
  let headerRebuilt = false;
  if (header !== null) {
    ({ file: readFrom, pageSize, scratch } = withRebuiltHeader(source, output));
    headerRebuilt = true;
  }
  let src: Database.Database | null = null;
  try {
    src = new Database(readFrom, { readonly: true, fileMustExist: true });
    if (!pageSize) pageSize = src.pragma("page_size", { simple: true }) as number;
    const out = openStore({ path: output, role: "main" });
    try {
      const tables = copyAll(src, out.sqlite, readFrom);
      const fk = out.sqlite.pragma("foreign_key_check") as { table: string }[];
      const ok =
        fk.length === 0 &&
        (out.sqlite.pragma("integrity_check", { simple: true }) as string) === "ok";
      return {
        source,
        output,
        headerRebuilt,
        pageSize,
        tables,
        copied: tables.reduce((n, t) => n + t.copied, 0),
        lost: tables.reduce((n, t) => n + (t.lost ?? 0) + t.orphaned, 0),
        ok,
      };
    } finally {
      out.close();
    }
  } finally {
    src?.close();
    for (const f of scratch) fs.rmSync(f, { force: true });
  }
}

function copyAll(src: Database.Database, out: Database.Database, file: string): RecoveredTable[] {
  const outTables = out
    .prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> ? ORDER BY name",
    )
    .pluck()
    .all(MIGRATIONS_TABLE) as string[];
  let srcTables: Set<string>;
  try {
    srcTables = new Set(
      src.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[],
    );
  } catch (e) {
    throw new StoreError(
      `the schema of the damaged database cannot be read (${(e as Error).message}): nothing can be recovered`,
    );
  }
  // Rows of a child table may arrive before their parent: foreign keys are checked once, at the end.
  out.pragma("foreign_keys = OFF");
  const report: RecoveredTable[] = [];
  const copies: TableCopy[] = [];
  out.exec("BEGIN IMMEDIATE");
  try {
    for (const table of outTables) {
      const r: RecoveredTable = {
        table,
        copied: 0,
        lost: 0,
        skippedRowids: [],
        orphaned: 0,
        fromDetachedPages: 0,
        errors: [],
      };
      report.push(r);
      if (!srcTables.has(table)) {
        r.errors.push("not in the damaged database (older schema): left empty");
        continue;
      }
      copies.push(copyTable(src, out, table, r));
    }
    copyDetachedLeaves(src, file, copies);
    for (const c of copies) c.finish();
    copySequences(src, out);
    moveAccountStateCounters(copies, out);
    // Children whose parent row was lost: dropped, and counted, so the copy is consistent.
    const fk = out.pragma("foreign_key_check") as { table: string; rowid: number }[];
    for (const v of fk) {
      out.prepare(`DELETE FROM ${quote(v.table)} WHERE rowid = ?`).run(v.rowid);
      const t = report.find((x) => x.table === v.table);
      if (t) {
        t.orphaned++;
        t.copied--;
      }
    }
    out.exec("COMMIT");
  } catch (e) {
    out.exec("ROLLBACK");
    throw e;
  } finally {
    out.pragma("foreign_keys = ON");
  }
  return report;
}

interface ColumnInfo {
  name: string;
  type: string;
  pk: number;
}

/**
 * A damaged database from before migration 0011 keeps the account state's counters and MAM marks
 * in the JSON blob only: the copy gets the columns' defaults, which would win over the blob (h = 0
 * beside a stream id). Move them as 0011 does, with its own statement.
 */
function moveAccountStateCounters(copies: TableCopy[], out: Database.Database): void {
  const state = copies.find((c) => c.report.table === "account_state");
  if (!state || state.srcColumns.includes("sm_inbound_h")) return;
  const move = bundledMigrations()
    .flatMap((m) => m.sql)
    .find((stmt) => stmt.includes("UPDATE `account_state`") && stmt.includes("json_remove"));
  if (!move) throw new StoreError("migration 0011's account_state move is missing from this build");
  out.exec(move);
}

interface TableCopy {
  report: RecoveredTable;
  /** The source table's columns in definition order (= record order). */
  srcColumns: string[];
  copied: Set<number>;
  /** Insert one row given the source's values in definition order; false when rejected. */
  insertRecord(rowid: number, values: unknown[]): boolean;
  /** Count copied and lost, once every pass is done. */
  finish(): void;
}

function copyTable(
  src: Database.Database,
  out: Database.Database,
  table: string,
  r: RecoveredTable,
): TableCopy {
  const outCols = out.prepare(`PRAGMA table_info(${quote(table)})`).all() as ColumnInfo[];
  const srcColumns = (src.prepare(`PRAGMA table_info(${quote(table)})`).all() as ColumnInfo[]).map(
    (c) => c.name,
  );
  const srcCols = new Set(srcColumns);
  const cols = outCols.filter((c) => srcCols.has(c.name)).map((c) => c.name);
  const pks = outCols.filter((c) => c.pk > 0);
  // An INTEGER PRIMARY KEY is the rowid itself: copied as that column, not twice.
  const rowidAlias = pks.length === 1 && pks[0]!.type.toUpperCase() === "INTEGER";
  const list = cols.map(quote).join(", ");
  const read = src.prepare(
    `SELECT rowid, ${list} FROM ${quote(table)} NOT INDEXED WHERE rowid >= ? ORDER BY rowid`,
  );
  read.raw(true);
  const probe = src.prepare(
    `SELECT rowid, ${list} FROM ${quote(table)} NOT INDEXED WHERE rowid >= ? ORDER BY rowid LIMIT 1`,
  );
  probe.raw(true);
  const insert = out.prepare(
    `INSERT INTO ${quote(table)} (${rowidAlias ? "" : "rowid, "}${list}) VALUES (${[
      ...(rowidAlias ? [] : ["?"]),
      ...cols.map(() => "?"),
    ].join(", ")})`,
  );
  const copiedRowids = new Set<number>();
  let rejected = 0;

  let from = Number.MIN_SAFE_INTEGER;
  let last: number | null = null;
  for (;;) {
    let failed: unknown = null;
    try {
      for (const row of read.iterate(from) as IterableIterator<unknown[]>) {
        const rowid = row[0] as number;
        last = rowid;
        try {
          insert.run(...(rowidAlias ? row.slice(1) : row));
          copiedRowids.add(rowid);
        } catch (e) {
          // Read, but not valid any more (a damaged value that broke a constraint): lost.
          rejected++;
          if (r.errors.length < 20)
            r.errors.push(`rowid ${rowid} rejected: ${(e as Error).message}`);
        }
      }
    } catch (e) {
      if (!isCorruptionError(e)) throw e;
      failed = e;
    }
    if (!failed) break;
    const gapStart = last === null ? from : last + 1;
    const next = nextReadable(probe, gapStart);
    r.skippedRowids.push([gapStart, next === null ? Number.MAX_SAFE_INTEGER : next - 1]);
    if (r.errors.length < 20)
      r.errors.push(`rows from rowid ${gapStart} unreadable: ${(failed as Error).message}`);
    if (next === null) break;
    from = next;
    last = null;
  }
  const aliasIndex = rowidAlias ? srcColumns.indexOf(pks[0]!.name) : -1;
  const positions = cols.map((c) => srcColumns.indexOf(c));
  return {
    report: r,
    srcColumns,
    copied: copiedRowids,
    insertRecord(rowid, values) {
      // The record stores NULL for an INTEGER PRIMARY KEY: its value is the rowid.
      const row = positions.map((i) => (i === aliasIndex ? rowid : (values[i] ?? null)));
      try {
        insert.run(...(rowidAlias ? row : [rowid, ...row]));
        copiedRowids.add(rowid);
        r.fromDetachedPages++;
        return true;
      } catch {
        return false;
      }
    },
    finish() {
      r.copied = copiedRowids.size;
      const expected = rowidsFromIndexes(src, table);
      r.lost =
        expected === null
          ? r.skippedRowids.length === 0
            ? rejected
            : null
          : [...expected].filter((id) => !copiedRowids.has(id)).length;
    },
  };
}

/**
 * A damaged interior page cuts off every leaf below it, though those leaves are intact: SQLite
 * reports them as "never used". Their rows are read here straight from the file (table leaf
 * format, records decoded by hand) and kept when the rowid is in a range the table could not read
 * and the record has the table's column count; a page that fits no table, or more than one, is
 * left alone. Only without a WAL: the file's pages are then the current ones.
 */
function copyDetachedLeaves(src: Database.Database, file: string, copies: TableCopy[]): void {
  const damaged = copies.filter((c) => c.report.skippedRowids.length > 0);
  if (damaged.length === 0) return;
  const wal = fs.statSync(`${file}-wal`, { throwIfNoEntry: false });
  if (wal && wal.size > 0) {
    for (const c of damaged)
      c.report.errors.push("detached leaf pages not searched: the database has a WAL");
    return;
  }
  // The page-usage lines come first; SQLite may give up later (on a record it cannot decode), so
  // rows are taken as they come and the error ends the list.
  const lines: string[] = [];
  try {
    for (const l of src.prepare("PRAGMA quick_check(1000000)").pluck().iterate())
      lines.push(String(l));
  } catch {
    // what was listed stands
  }
  const unused = lines.flatMap((l) =>
    [...l.matchAll(/Page (\d+)(?: is|:) never used/g)].map((m) => Number(m[1])),
  );
  if (unused.length === 0) return;
  const pageSize = src.pragma("page_size", { simple: true }) as number;
  const fd = fs.openSync(file, "r");
  try {
    const reserved = Buffer.alloc(1);
    fs.readSync(fd, reserved, 0, 1, 20);
    const usable = pageSize - reserved[0]!;
    const readPage = (n: number): Buffer => {
      const b = Buffer.alloc(pageSize);
      fs.readSync(fd, b, 0, pageSize, (n - 1) * pageSize);
      return b;
    };
    const inSkipped = (c: TableCopy, rowid: number) =>
      c.report.skippedRowids.some(([a, b]) => rowid >= a && rowid <= b);
    for (const page of unused) {
      let cells: { rowid: number; values: unknown[] }[];
      try {
        cells = tableLeafCells(readPage(page), usable, readPage);
      } catch {
        continue; // not a table leaf, or not a sound one
      }
      if (cells.length === 0) continue;
      const fits = damaged.filter(
        (c) =>
          cells.every((cell) => cell.values.length === c.srcColumns.length) &&
          cells.every((cell) => inSkipped(c, cell.rowid)),
      );
      if (fits.length !== 1) continue;
      const c = fits[0]!;
      for (const cell of cells) {
        if (c.copied.has(cell.rowid)) continue;
        c.insertRecord(cell.rowid, cell.values);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads a SQLite varint at `at`: [value, bytes used]. */
function varint(b: Buffer, at: number): [number, number] {
  let v = 0n;
  for (let i = 0; i < 9; i++) {
    const byte = b[at + i];
    if (byte === undefined) throw new Error("varint past the end");
    if (i === 8) return [Number((v << 8n) | BigInt(byte)), 9];
    v = (v << 7n) | BigInt(byte & 0x7f);
    if ((byte & 0x80) === 0) return [Number(v), i + 1];
  }
  throw new Error("unreachable");
}

/** The cells of a table b-tree leaf page (type 0x0d): rowid and decoded record. */
function tableLeafCells(
  page: Buffer,
  usable: number,
  readPage: (n: number) => Buffer,
): { rowid: number; values: unknown[] }[] {
  if (page[0] !== 0x0d) throw new Error("not a table leaf");
  const count = page.readUInt16BE(3);
  if (8 + 2 * count > usable) throw new Error("cell count too large");
  const maxLocal = usable - 35;
  const minLocal = Math.floor(((usable - 12) * 32) / 255) - 23;
  const cells: { rowid: number; values: unknown[] }[] = [];
  for (let i = 0; i < count; i++) {
    let at = page.readUInt16BE(8 + 2 * i);
    if (at < 8 + 2 * count || at >= usable) throw new Error("cell pointer out of the page");
    const [size, n1] = varint(page, at);
    at += n1;
    const [rowid, n2] = varint(page, at);
    at += n2;
    let local = size;
    if (size > maxLocal) {
      const k = minLocal + ((size - minLocal) % (usable - 4));
      local = k <= maxLocal ? k : minLocal;
    }
    if (at + local > usable) throw new Error("payload past the page");
    const parts = [page.subarray(at, at + local)];
    let have = local;
    let next = local < size ? page.readUInt32BE(at + local) : 0;
    for (let hops = 0; have < size; hops++) {
      if (next === 0 || hops > 100_000) throw new Error("overflow chain broken");
      const o = readPage(next);
      const take = Math.min(usable - 4, size - have);
      parts.push(o.subarray(4, 4 + take));
      have += take;
      next = o.readUInt32BE(0);
    }
    cells.push({ rowid, values: decodeRecord(Buffer.concat(parts)) });
  }
  return cells;
}

/** A record (header of serial types, then the values), as better-sqlite3 would return it. */
function decodeRecord(rec: Buffer): unknown[] {
  const [headerSize, n] = varint(rec, 0);
  if (headerSize > rec.length) throw new Error("record header past the record");
  const types: number[] = [];
  for (let at = n; at < headerSize;) {
    const [t, m] = varint(rec, at);
    types.push(t);
    at += m;
  }
  const values: unknown[] = [];
  let at = headerSize;
  const intOf = (bytes: number) => {
    const v = rec.readIntBE(at, Math.min(bytes, 6));
    return v;
  };
  for (const t of types) {
    let len: number;
    if (t === 0 || t === 8 || t === 9) len = 0;
    else if (t >= 1 && t <= 4) len = t;
    else if (t === 5) len = 6;
    else if (t === 6 || t === 7) len = 8;
    else if (t >= 12) len = Math.floor((t - 12) / 2);
    else throw new Error(`reserved serial type ${t}`);
    if (at + len > rec.length) throw new Error("value past the record");
    if (t === 0) values.push(null);
    else if (t === 8) values.push(0);
    else if (t === 9) values.push(1);
    else if (t <= 5) values.push(intOf(len));
    else if (t === 6) {
      const v = rec.readBigInt64BE(at);
      values.push(
        v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
          ? Number(v)
          : v,
      );
    } else if (t === 7) values.push(rec.readDoubleBE(at));
    else if (t % 2 === 0) values.push(Buffer.from(rec.subarray(at, at + len)));
    else values.push(rec.toString("utf8", at, at + len));
    at += len;
  }
  return values;
}

/**
 * The smallest x > start from which a read succeeds, by doubling the step past the damage and then
 * bisecting back to its end; null when nothing readable follows.
 */
function nextReadable(probe: Database.Statement, start: number): number | null {
  const readable = (x: number): "row" | "end" | "fail" => {
    try {
      return probe.get(x) === undefined ? "end" : "row";
    } catch (e) {
      if (!isCorruptionError(e)) throw e;
      return "fail";
    }
  };
  let bad = start; // known unreadable from here
  let step = 1;
  let good = -1;
  for (;;) {
    if (bad + step > Number.MAX_SAFE_INTEGER) return null;
    const x = bad + step;
    if (readable(x) !== "fail") {
      good = x;
      break;
    }
    bad = x;
    step *= 2;
  }
  while (good - bad > 1) {
    const mid: number = bad + Math.floor((good - bad) / 2);
    if (readable(mid) === "fail") bad = mid;
    else good = mid;
  }
  return readable(good) === "end" ? null : good;
}

/** The rowids a readable index of the table lists (the largest such set), or null. */
function rowidsFromIndexes(src: Database.Database, table: string): Set<number> | null {
  let indexes: string[];
  try {
    indexes = src
      .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?")
      .pluck()
      .all(table) as string[];
  } catch {
    return null;
  }
  let best: Set<number> | null = null;
  for (const idx of indexes) {
    try {
      const partial = src
        .prepare(`SELECT partial FROM pragma_index_list(?) WHERE name = ?`)
        .get(table, idx) as { partial: number } | undefined;
      if (partial?.partial) continue; // lists only some rows
      const ids = src
        .prepare(`SELECT rowid FROM ${quote(table)} INDEXED BY ${quote(idx)}`)
        .pluck()
        .all() as number[];
      if (!best || ids.length > best.size) best = new Set(ids);
    } catch {
      // This index is damaged too: another may still tell.
    }
  }
  return best;
}

function copySequences(src: Database.Database, out: Database.Database): void {
  let rows: { name: string; seq: number }[];
  try {
    rows = src.prepare("SELECT name, seq FROM sqlite_sequence").all() as typeof rows;
  } catch {
    return; // lost: the copied rows' maximum ids stand in (new ids continue after them)
  }
  const update = out.prepare("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?");
  const insert = out.prepare(
    "INSERT INTO sqlite_sequence (name, seq) SELECT ?, ? WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?)",
  );
  for (const r of rows) {
    if (typeof r.seq !== "number") continue;
    update.run(r.seq, r.name);
    insert.run(r.name, r.seq, r.name);
  }
}

/**
 * A copy of the damaged file with a rebuilt 100-byte header (page 1's b-tree, right after it, is
 * what matters: the schema). The page size is the one the old header still says when that is
 * plausible, else the first that makes the schema readable.
 */
function withRebuiltHeader(
  source: string,
  output: string,
): { file: string; pageSize: number; scratch: string[] } {
  const file = `${output}.recovering`;
  const scratch = [file, `${file}-wal`, `${file}-shm`, `${file}-journal`];
  for (const f of scratch) fs.rmSync(f, { force: true });
  fs.copyFileSync(source, file);
  const wal = fs.statSync(`${source}-wal`, { throwIfNoEntry: false });
  const hasWal = wal !== undefined && wal.size > 0;
  if (hasWal) fs.copyFileSync(`${source}-wal`, `${file}-wal`);
  const size = fs.statSync(file).size;
  const old = Buffer.alloc(100);
  const fd0 = fs.openSync(file, "r");
  fs.readSync(fd0, old, 0, 100, 0);
  fs.closeSync(fd0);
  const stated = old.readUInt16BE(16) === 1 ? 65536 : old.readUInt16BE(16);
  const candidates = [
    ...(PAGE_SIZES.includes(stated) ? [stated] : []),
    ...PAGE_SIZES.filter((p) => p !== stated),
  ].filter((p) => size % p === 0);
  for (const pageSize of candidates) {
    const h = Buffer.alloc(100);
    Buffer.from("SQLite format 3\0", "latin1").copy(h, 0);
    h.writeUInt16BE(pageSize === 65536 ? 1 : pageSize, 16);
    h[18] = hasWal ? 2 : 1; // WAL only if there is one to read
    h[19] = hasWal ? 2 : 1;
    h[20] = 0; // reserved bytes per page
    h[21] = 64;
    h[22] = 32;
    h[23] = 32;
    h.writeUInt32BE(1, 24); // change counter
    h.writeUInt32BE(size / pageSize, 28); // page count
    // Freelist (32-39) left empty: its pages are unused anyway, and a reader never needs it.
    h.writeUInt32BE(1, 40); // schema cookie
    h.writeUInt32BE(4, 44); // schema format
    h.writeUInt32BE(1, 56); // UTF-8
    h.writeUInt32BE(1, 92); // version-valid-for = change counter: the page count is trusted
    h.writeUInt32BE(3_045_000, 96);
    const fd = fs.openSync(file, "r+");
    fs.writeSync(fd, h, 0, 100, 0);
    fs.closeSync(fd);
    try {
      const db = new Database(file, { readonly: true, fileMustExist: true });
      try {
        const tables = db
          .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
          .pluck()
          .all() as string[];
        if (tables.length > 0) return { file, pageSize, scratch };
      } finally {
        db.close();
      }
    } catch {
      // Wrong page size: try the next.
    }
  }
  for (const f of scratch) fs.rmSync(f, { force: true });
  throw new StoreError(
    `the header of ${source} is damaged and no page size makes its schema readable: nothing can be recovered`,
  );
}
