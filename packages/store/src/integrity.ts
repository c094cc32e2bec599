/**
 * PRAGMA integrity_check with its findings named: SQLite reports b-trees by root page ("Tree 32
 * page 261: ...") and pages by number, and on some damage (a record it cannot decode while
 * comparing a table with its indexes) gives up on the whole check with SQLITE_CORRUPT instead of
 * a list. Then each table is checked on its own, so the report still says which ones are damaged.
 */
import type Database from "better-sqlite3";

export interface IntegrityFinding {
  /** The table or index the finding is about, when it can be named. */
  object: string | null;
  /** The table that object belongs to. */
  table: string | null;
  /** The page named in the message, when there is one. */
  page: number | null;
  message: string;
}

export interface SqliteIntegrityResult {
  ok: boolean;
  /** Which check ran ("integrity_check" or "quick_check"). */
  check: string;
  findings: IntegrityFinding[];
  /** Affected tables (sorted). */
  tables: string[];
  /** Affected indexes (sorted). */
  indexes: string[];
  /** Page numbers named in the findings (sorted). */
  pages: number[];
}

interface SchemaObject {
  name: string;
  table: string;
  type: string;
  rootpage: number;
}

const MAX_FINDINGS = 100;

function code(e: unknown): string {
  return String((e as { code?: unknown } | null)?.code ?? "");
}

function isDamage(e: unknown): boolean {
  const c = code(e);
  return c.startsWith("SQLITE_CORRUPT") || c === "SQLITE_NOTADB";
}

export function sqliteIntegrity(
  db: Database.Database,
  opts: { quick?: boolean } = {},
): SqliteIntegrityResult {
  const check = opts.quick ? "quick_check" : "integrity_check";
  const findings: IntegrityFinding[] = [];
  let objects: SchemaObject[];
  try {
    objects = db
      .prepare(
        'SELECT name, tbl_name AS "table", type, rootpage FROM sqlite_master WHERE rootpage > 0',
      )
      .all() as SchemaObject[];
  } catch (e) {
    if (!isDamage(e)) throw e;
    // Page 1 (or the pages of the schema table) is unreadable: nothing can be named.
    return result(check, [
      { object: "sqlite_schema", table: "sqlite_schema", page: 1, message: (e as Error).message },
    ]);
  }
  const byRoot = new Map(objects.map((o) => [o.rootpage, o]));
  const byName = new Map(objects.map((o) => [o.name, o]));
  let pageOwners: Map<number, string> | null | undefined;
  const ownerOfPage = (page: number): SchemaObject | undefined => {
    if (byRoot.has(page)) return byRoot.get(page);
    if (pageOwners === undefined) pageOwners = dbstatOwners(db);
    const name = pageOwners?.get(page);
    return name ? (byName.get(name) ?? { name, table: name, type: "", rootpage: 0 }) : undefined;
  };

  const parse = (line: string, scope?: SchemaObject): IntegrityFinding => {
    // "Tree 32 page 261 cell 4: ..." / "Tree 32 page 261: btreeInitPage() returns error code 11"
    const tree = /Tree (\d+) page (\d+)/.exec(line);
    if (tree) {
      const o = byRoot.get(Number(tree[1])) ?? ownerOfPage(Number(tree[2]));
      return {
        object: o?.name ?? null,
        table: o?.table ?? null,
        page: Number(tree[2]),
        message: line,
      };
    }
    // "wrong # of entries in index X", "row 5 missing from index X", "non-unique entry in index X"
    const index = /\bindex (\S+)/.exec(line);
    if (index && byName.has(index[1]!)) {
      const o = byName.get(index[1]!)!;
      return { object: o.name, table: o.table, page: null, message: line };
    }
    // "Page 45 is never used", "2nd reference to page 45", "invalid page number 812"
    const page = /\b[Pp]age (\d+)/.exec(line) ?? /page number (\d+)/.exec(line);
    if (page) {
      const o = ownerOfPage(Number(page[1]));
      return {
        object: o?.name ?? scope?.name ?? null,
        table: o?.table ?? scope?.table ?? null,
        page: Number(page[1]),
        message: line,
      };
    }
    // "NULL value in messages.body", "CHECK constraint failed in messages"
    const tableRef = /\bin (\w+)(?:\.\w+)?$/.exec(line);
    const o = tableRef ? byName.get(tableRef[1]!) : undefined;
    return {
      object: o?.name ?? scope?.name ?? null,
      table: o?.table ?? scope?.table ?? null,
      page: null,
      message: line,
    };
  };

  const lines = (sql: string): string[] =>
    (db.prepare(sql).pluck().all() as string[])
      .flatMap((l) => l.split("\n"))
      .filter((l) => l !== "ok" && !/^\*\*\* in database \w+ \*\*\*$/.test(l));

  try {
    for (const line of lines(`PRAGMA ${check}(${MAX_FINDINGS})`)) findings.push(parse(line));
  } catch (e) {
    if (!isDamage(e)) throw e;
    // SQLite gave up on the whole file: check table by table (each with its indexes).
    const tables = objects.filter((o) => o.type === "table");
    for (const t of tables) {
      try {
        for (const line of lines(`PRAGMA ${check}("${t.name.replaceAll('"', '""')}")`))
          findings.push(parse(line, t));
      } catch (err) {
        if (!isDamage(err)) throw err;
        // quick_check skips the table-index comparison that gave up, and names pages where it can.
        let named = false;
        if (check !== "quick_check") {
          try {
            for (const line of lines(`PRAGMA quick_check("${t.name.replaceAll('"', '""')}")`)) {
              findings.push(parse(line, t));
              named = true;
            }
          } catch (qe) {
            if (!isDamage(qe)) throw qe;
          }
        }
        // Which b-tree: read the table and each of its indexes on its own.
        const own = objects.filter((o) => o.table === t.name);
        for (const o of own) {
          if (findings.some((f) => f.object === o.name)) continue;
          const failure = probe(db, o);
          if (failure === null) continue;
          named = true;
          findings.push({
            object: o.name,
            table: t.name,
            page: null,
            message: `${o.type} ${o.name} cannot be read: ${failure}`,
          });
        }
        if (!named)
          findings.push({
            object: t.name,
            table: t.name,
            page: null,
            message: `${t.name} fails the check: ${damageMessage(err)}`,
          });
      }
    }
    if (findings.length === 0) {
      findings.push({ object: null, table: null, page: null, message: (e as Error).message });
    }
  }
  return result(check, findings, byName);
}

function result(
  check: string,
  findings: IntegrityFinding[],
  byName?: Map<string, SchemaObject>,
): SqliteIntegrityResult {
  const tables = new Set<string>();
  const indexes = new Set<string>();
  const pages = new Set<number>();
  for (const f of findings) {
    if (f.table) tables.add(f.table);
    if (f.object && byName?.get(f.object)?.type === "index") indexes.add(f.object);
    if (f.page !== null) pages.add(f.page);
  }
  return {
    ok: findings.length === 0,
    check,
    findings,
    tables: [...tables].sort(),
    indexes: [...indexes].sort(),
    pages: [...pages].sort((a, b) => a - b),
  };
}

/** The SQLite message, not the store's wrapper around it. */
function damageMessage(e: unknown): string {
  const cause = (e as { cause?: unknown }).cause;
  return cause instanceof Error ? cause.message : (e as Error).message;
}

/**
 * Reads one b-tree end to end: a table with every column decoded (NOT INDEXED: its own b-tree), an
 * index by counting its entries through it (INDEXED BY walks every page of the index). Returns the
 * error met, or null.
 */
function probe(db: Database.Database, o: SchemaObject): string | null {
  const q = (id: string) => `"${id.replaceAll('"', '""')}"`;
  try {
    if (o.type === "table") {
      for (const _ of db
        .prepare(`SELECT * FROM ${q(o.name)} NOT INDEXED`)
        .raw()
        .iterate())
        void _;
    } else if (o.type === "index") {
      // Selecting the indexed columns makes it a covering scan: every entry of the index is read
      // (count(*) would be answered without visiting the leaves' content).
      const cols = (
        db.prepare(`PRAGMA index_info(${q(o.name)})`).all() as { name: string | null }[]
      )
        .map((c) => c.name)
        .filter((c): c is string => c !== null);
      const list = cols.length ? cols.map(q).join(", ") : "rowid";
      const sql = `SELECT ${list} FROM ${q(o.table)} INDEXED BY ${q(o.name)}`;
      for (const _ of db.prepare(sql).raw().iterate()) void _;
    }
    return null;
  } catch (e) {
    if (!isDamage(e)) return null; // e.g. an index SQLite refuses to use that way: not evidence
    return damageMessage(e);
  }
}

/** page number -> table/index name, from the dbstat virtual table (null when not compiled in). */
function dbstatOwners(db: Database.Database): Map<number, string> | null {
  const owners = new Map<number, string>();
  try {
    for (const r of db.prepare("SELECT name, pageno FROM dbstat").iterate() as Iterable<{
      name: string;
      pageno: number;
    }>)
      owners.set(r.pageno, r.name);
  } catch (e) {
    // No dbstat, or the walk stopped at the damage: what was collected still names pages.
    if (owners.size === 0 && !isDamage(e)) return null;
  }
  return owners;
}
