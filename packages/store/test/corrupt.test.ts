// A damaged database is noticed and not written into: real files, damaged at pages computed from
// the page size and dbstat (a data page of messages, an index page, the header).
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  DatabaseCorruptError,
  NotALichenDatabaseError,
  openStore,
  recoverDatabase,
  tables,
} from "../src/index.js";
import { tempDir } from "./helpers.js";
import {
  fileHash,
  leafOfRowid,
  leaves,
  makeChatDb,
  overwriteHeader,
  overwritePage,
} from "./damage.js";

const N = 3000;
let template: string;
let templateDir: { dir: string; cleanup: () => void };
let dir: { dir: string; cleanup: () => void };

beforeAll(() => {
  templateDir = tempDir("lichen-corrupt-template-");
  template = path.join(templateDir.dir, "template.db");
  makeChatDb(template, N);
  return () => templateDir.cleanup();
});
afterEach(() => dir?.cleanup());

/** A fresh copy of the template database in its own directory. */
function copy(name = "chat.db"): string {
  dir = tempDir("lichen-corrupt-");
  const file = path.join(dir.dir, name);
  fs.copyFileSync(template, file);
  return file;
}

const body = (id: number) => `message ${id} ` + "x".repeat(id % 90);
const readMessage = (file: string, id: number) => {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare("SELECT body FROM messages WHERE id = ?").pluck().get(id);
  } finally {
    db.close();
  }
};

describe("a damaged data page", () => {
  it("is found by the first statement that reads it; from then on nothing is written, by this process or any other", () => {
    const file = copy();
    const damaged = leafOfRowid(file, "messages", N / 2);
    overwritePage(file, damaged.page);
    const before = fileHash(file);

    // The cheap check at open cannot see a damaged leaf in the middle of a table (by design).
    const store = openStore({ path: file, role: "main" });
    try {
      expect(store.damage).toBeNull();
      // Rows elsewhere still read.
      expect(store.read((tx) => tx.select().from(tables.accounts).all())).toHaveLength(1);
      const err = (() => {
        try {
          store.read((tx) =>
            tx.sqlite.prepare("SELECT sum(length(body)) FROM messages NOT INDEXED").get(),
          );
        } catch (e) {
          return e;
        }
        return null;
      })();
      expect(err).toBeInstanceOf(DatabaseCorruptError);
      expect((err as DatabaseCorruptError).code).toMatch(/^SQLITE_CORRUPT/);
      expect((err as Error).message).toContain("lichen-store recover");
      expect(store.damage).toBe(err);

      // Every write is refused now, also of tables that are intact, also through the raw handle.
      expect(() =>
        store.write((tx) =>
          tx
            .insert(tables.accounts)
            .values({ id: "bob", jid: "bob@localhost", createdAt: 2 })
            .run(),
        ),
      ).toThrow(DatabaseCorruptError);
      expect(() =>
        store.sqlite
          .prepare("INSERT INTO accounts (id, jid, created_at) VALUES ('c', 'c@x', 1)")
          .run(),
      ).toThrow(DatabaseCorruptError);
      return expect(store.writeAsync(() => 1)).rejects.toBeInstanceOf(DatabaseCorruptError);
    } finally {
      store.close();
      expect(fileHash(file)).toBe(before);
      // Another process opening it later refuses at once (the marker), before writing anything.
      let other: unknown = null;
      try {
        openStore({ path: file, role: "nse" }).close();
      } catch (e) {
        other = e;
      }
      expect(other).toBeInstanceOf(DatabaseCorruptError);
      expect((other as DatabaseCorruptError).code).toBe("marker");
      expect(fileHash(file)).toBe(before);
    }
  });

  it("a transaction that catches the corruption error and goes on is rolled back, not committed", () => {
    const file = copy();
    overwritePage(file, leafOfRowid(file, "messages", N / 2).page);
    const store = openStore({ path: file, role: "main" });
    try {
      expect(() =>
        store.write((tx) => {
          tx.insert(tables.accounts)
            .values({ id: "bob", jid: "bob@localhost", createdAt: 2 })
            .run();
          try {
            tx.sqlite.prepare("SELECT count(body) FROM messages NOT INDEXED").get();
          } catch {
            // swallowed by careless code
          }
        }),
      ).toThrow(DatabaseCorruptError);
      expect(store.read((tx) => tx.select().from(tables.accounts).all()).map((a) => a.id)).toEqual([
        "alice",
      ]);
    } finally {
      store.close();
    }
  });

  it("checkIntegrity names the table; damageCheck 'quick' refuses the open", () => {
    const file = copy();
    overwritePage(file, leafOfRowid(file, "messages", N / 2).page);
    const store = openStore({ path: file, role: "main", damageCheck: "none" });
    try {
      const result = store.checkIntegrity();
      expect(result.ok).toBe(false);
      expect(result.tables).toEqual(["messages"]);
      expect(store.damage?.tables).toEqual(["messages"]);
    } finally {
      store.close();
    }
    fs.rmSync(`${file}-damaged`);
    let err: unknown = null;
    try {
      openStore({ path: file, role: "main", damageCheck: "quick" }).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DatabaseCorruptError);
    expect((err as DatabaseCorruptError).tables).toContain("messages");
  });

  it("recovery copies every row of the intact pages, reports the lost ones, and the copy is sound", () => {
    const file = copy();
    const damaged = leafOfRowid(file, "messages", N / 2);
    overwritePage(file, damaged.page);
    const before = fileHash(file);
    const out = path.join(dir.dir, "recovered.db");
    const report = recoverDatabase(file, out);
    const lostCount = damaged.last - damaged.first + 1;
    const messages = report.tables.find((t) => t.table === "messages")!;
    expect(report.ok).toBe(true);
    expect(report.headerRebuilt).toBe(false);
    expect(messages.copied).toBe(N - lostCount);
    expect(messages.lost).toBe(lostCount);
    expect(messages.skippedRowids).toEqual([[damaged.first, damaged.last]]);
    expect(report.tables.find((t) => t.table === "accounts")!.copied).toBe(1);
    // Messages on intact pages survive unchanged, those on the damaged page are gone.
    for (const id of [1, damaged.first - 1, damaged.last + 1, N])
      expect(readMessage(out, id)).toBe(body(id));
    expect(readMessage(out, damaged.first)).toBeUndefined();
    expect(fileHash(file)).toBe(before); // the damaged file is only read
    // The copy opens like any database, passes the full check, and takes writes (new ids after N).
    const store = openStore({ path: out, role: "main", damageCheck: "quick" });
    try {
      expect(store.checkIntegrity().ok).toBe(true);
      const id = store.write(
        (tx) =>
          tx
            .insert(tables.messages)
            .values({
              accountId: "alice",
              chatJid: "peer1@localhost",
              direction: "out",
              fromJid: "alice@localhost",
              body: "after recovery",
              sentAt: 1,
              storedAt: 1,
            })
            .returning({ id: tables.messages.id })
            .get().id,
      );
      expect(id).toBe(N + 1);
    } finally {
      store.close();
    }
    // A second recovery into the same output is refused: it never overwrites.
    expect(() => recoverDatabase(file, out)).toThrow(/already exists/);
  });
});

describe("a damaged interior page", () => {
  it("cuts off intact leaves; recovery reads them from the file and loses nothing", () => {
    const file = copy();
    const root = (() => {
      const db = new Database(file, { readonly: true });
      try {
        return db
          .prepare("SELECT rootpage FROM sqlite_master WHERE name = 'messages'")
          .pluck()
          .get() as number;
      } finally {
        db.close();
      }
    })();
    expect(leaves(file, "messages").map((l) => l.page)).not.toContain(root); // an interior page
    overwritePage(file, root);
    const out = path.join(dir.dir, "recovered.db");
    const report = recoverDatabase(file, out);
    expect(report.ok).toBe(true);
    expect(report.tables.find((t) => t.table === "messages")).toMatchObject({
      copied: N,
      lost: 0,
      fromDetachedPages: N,
    });
    const rows = (f: string) => {
      const db = new Database(f, { readonly: true });
      try {
        return db.prepare("SELECT * FROM messages ORDER BY id").all();
      } finally {
        db.close();
      }
    };
    expect(rows(out)).toEqual(rows(template)); // every column of every row, as stored
  });
});

describe("a damaged interior page, rows with overflow pages", () => {
  it("recovery follows the overflow chains of the detached leaves' cells", () => {
    dir = tempDir("lichen-corrupt-");
    const file = path.join(dir.dir, "big-rows.db");
    const store = openStore({ path: file, role: "main" });
    store.write((tx) => {
      tx.insert(tables.accounts).values({ id: "a", jid: "a@localhost", createdAt: 1 }).run();
      for (let i = 1; i <= 400; i++)
        tx.insert(tables.messages)
          .values({
            accountId: "a",
            chatJid: "c@localhost",
            direction: "in",
            fromJid: "c@localhost",
            // Every 7th body spans overflow pages (multi-byte UTF-8 included).
            body: i % 7 === 0 ? "ü€😀".repeat(1 + i * 5) : `m${i}`,
            encrypted: i % 2 === 0,
            sentAt: i,
            storedAt: i,
          })
          .run();
    });
    store.close();
    const inspectDb = new Database(file, { readonly: true });
    const root = inspectDb
      .prepare("SELECT rootpage FROM sqlite_master WHERE name = 'messages'")
      .pluck()
      .get() as number;
    const overflowPages = inspectDb
      .prepare("SELECT count(*) FROM dbstat WHERE name = 'messages' AND pagetype = 'overflow'")
      .pluck()
      .get() as number;
    const before = inspectDb.prepare("SELECT * FROM messages ORDER BY id").all();
    inspectDb.close();
    expect(overflowPages).toBeGreaterThan(50);
    overwritePage(file, root);
    const out = path.join(dir.dir, "recovered.db");
    const report = recoverDatabase(file, out);
    expect(report.tables.find((t) => t.table === "messages")).toMatchObject({
      copied: 400,
      lost: 0,
      fromDetachedPages: 400,
    });
    const outDb = new Database(out, { readonly: true });
    try {
      expect(outDb.prepare("SELECT * FROM messages ORDER BY id").all()).toEqual(before);
    } finally {
      outDb.close();
    }
  });
});

describe("a damaged index page", () => {
  it("checkIntegrity names the index and its page; recovery loses no row", () => {
    const file = copy();
    const indexLeaves = leaves(file, "messages_chat");
    expect(indexLeaves.length).toBeGreaterThan(2);
    const page = indexLeaves[indexLeaves.length >> 1]!.page;
    overwritePage(file, page);
    const store = openStore({ path: file, role: "main", damageCheck: "none" });
    try {
      const result = store.checkIntegrity();
      expect(result.ok).toBe(false);
      expect(result.indexes).toEqual(["messages_chat"]);
      expect(result.tables).toEqual(["messages"]);
      expect(result.pages).toContain(page);
      // Damage found by the check stops writes like a failing statement does.
      expect(() => store.write(() => 1)).toThrow(DatabaseCorruptError);
    } finally {
      store.close();
    }
    const out = path.join(dir.dir, "recovered.db");
    const report = recoverDatabase(file, out);
    expect(report.ok).toBe(true);
    expect(report.tables.find((t) => t.table === "messages")).toMatchObject({
      copied: N,
      lost: 0,
      skippedRowids: [],
    });
    const db = new Database(out, { readonly: true });
    try {
      // The index is rebuilt in the copy: a query through it finds every message of the chat.
      expect(
        db
          .prepare(
            "SELECT count(*) FROM messages INDEXED BY messages_chat WHERE account_id = 'alice' AND chat_jid = 'peer1@localhost'",
          )
          .pluck()
          .get(),
      ).toBe(N / 5);
    } finally {
      db.close();
    }
  });
});

describe("a damaged header", () => {
  it("is refused at open with DatabaseCorruptError (not 'not a database'), and recovery rebuilds it", () => {
    const file = copy();
    overwriteHeader(file);
    const before = fileHash(file);
    let err: unknown = null;
    try {
      openStore({ path: file, role: "main" }).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DatabaseCorruptError);
    expect((err as DatabaseCorruptError).code).toBe("header");
    expect(fileHash(file)).toBe(before);
    const out = path.join(dir.dir, "recovered.db");
    const report = recoverDatabase(file, out);
    expect(report).toMatchObject({ ok: true, headerRebuilt: true, pageSize: 4096, lost: 0 });
    expect(report.tables.find((t) => t.table === "messages")!.copied).toBe(N);
    expect(readMessage(out, N / 2)).toBe(body(N / 2));
    expect(fs.readdirSync(dir.dir).filter((f) => f.includes("recovering"))).toEqual([]);
  });

  it("a file that never was SQLite is still 'not a database'", () => {
    dir = tempDir("lichen-corrupt-");
    const file = path.join(dir.dir, "notes.db");
    fs.writeFileSync(file, "these are my notes\n".repeat(400));
    expect(() => openStore({ path: file, role: "main" })).toThrow(NotALichenDatabaseError);
  });

  it("a truncated file (not whole pages) is damaged", () => {
    const file = copy();
    fs.truncateSync(file, fs.statSync(file).size - 1000);
    expect(() => openStore({ path: file, role: "nse" })).toThrow(/not a multiple of the page size/);
  });
});

describe("a recovered file moved into place", () => {
  it("is not refused because of the marker its damaged predecessor left", () => {
    const file = copy();
    overwritePage(file, leafOfRowid(file, "messages", 10).page);
    const store = openStore({ path: file, role: "main" });
    expect(() =>
      store.read((tx) => tx.sqlite.prepare("SELECT * FROM messages NOT INDEXED").all()),
    ).toThrow(DatabaseCorruptError);
    store.close();
    expect(fs.existsSync(`${file}-damaged`)).toBe(true);
    const out = path.join(dir.dir, "recovered.db");
    expect(recoverDatabase(file, out).ok).toBe(true);
    fs.renameSync(out, file);
    const again = openStore({ path: file, role: "main" });
    try {
      expect(again.damage).toBeNull();
      again.write((tx) =>
        tx.insert(tables.accounts).values({ id: "bob", jid: "bob@localhost", createdAt: 2 }).run(),
      );
    } finally {
      again.close();
    }
  });
});
