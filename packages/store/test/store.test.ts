import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import {
  NotALichenDatabaseError,
  SchemaAheadError,
  SchemaBehindError,
  SchemaValidationError,
  StoreError,
  StoreLockTimeoutError,
  TransactionUsageError,
  loadAccountState,
  loadAccountStateDetailed,
  migrationsFolder,
  openStore,
  saveAccountState,
  tables,
  type Store,
} from "../src/index.js";
import { useTempStores } from "./helpers.js";
import { Child, stopAll } from "./children.js";

const temp = useTempStores();

function open(
  role: "main" | "nse" | "share",
  extra: Partial<Parameters<typeof openStore>[0]> = {},
): Store {
  const s = openStore({ path: path.join(temp.dir, "lichen.db"), role, ...extra });
  return temp.track(s);
}

function addAccount(s: Store, id = "acc1"): void {
  s.write((tx) =>
    tx
      .insert(tables.accounts)
      .values({ id, jid: `${id}@example.org`, createdAt: tx.now })
      .run(),
  );
}

describe("openStore", () => {
  it("main creates the file in WAL mode with foreign keys and applies the bundled migrations", () => {
    const s = open("main");
    expect(s.sqlite.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(s.sqlite.pragma("synchronous", { simple: true })).toBe(1); // NORMAL
    expect(s.sqlite.pragma("foreign_keys", { simple: true })).toBe(1);
    const journal = JSON.parse(
      fs.readFileSync(path.join(migrationsFolder(), "meta/_journal.json"), "utf8"),
    );
    const applied = s.sqlite.prepare("SELECT count(*) FROM __drizzle_migrations").pluck().get();
    expect(applied).toBe(journal.entries.length);
    const names = s.sqlite
      .prepare("SELECT name FROM sqlite_master WHERE type='table'")
      .pluck()
      .all();
    for (const t of [
      "accounts",
      "account_state",
      "outbound_queue",
      "iq_handlers",
      "messages",
      "ipc_messages",
      "process_locks",
      "omemo_trust",
    ]) {
      expect(names).toContain(t);
    }
  });

  it("nse and share refuse a missing file and a DB that is behind, with a clear error", () => {
    expect(() => open("nse")).toThrow(/does not exist.*main/);
    const main = open("main");
    main.sqlite.exec("DELETE FROM __drizzle_migrations");
    expect(() => open("share")).toThrow(SchemaBehindError);
    expect(() => open("nse")).toThrow(/0 of \d+ migrations applied; only the main app migrates/);
    // main re-applying is idempotent for the bookkeeping (tables already exist -> error is clear).
  });

  it("refuses a DB with a migration this build does not know, in every role", () => {
    const main = open("main");
    main.sqlite
      .prepare("INSERT INTO __drizzle_migrations (hash, created_at) VALUES (?, ?)")
      .run("f".repeat(64), Date.now() + 10 ** 9);
    expect(() => open("nse")).toThrow(SchemaAheadError);
    expect(() => open("main")).toThrow(
      /has a migration this build does not know \(hash ffffffffffff\)/,
    );
  });

  it("several processes creating the same new DB at once: all open it, migrations applied once", async () => {
    const db = path.join(temp.dir, "race.db");
    const startAt = Date.now() + 1500;
    const children = [0, 1, 2].map(() => new Child("open.mjs", { db, role: "main", startAt }));
    try {
      const results = await Promise.all(
        children.map((c) => c.waitFor((l) => "opened" in l, "open result")),
      );
      const bundled = JSON.parse(
        fs.readFileSync(path.join(migrationsFolder(), "meta/_journal.json"), "utf8"),
      ).entries.length;
      for (const r of results) expect(r).toEqual({ opened: true, applied: bundled });
    } finally {
      await stopAll(children);
    }
  });

  it("nse opens a migrated DB and sees main's writes", () => {
    const main = open("main");
    addAccount(main);
    const nse = open("nse");
    expect(nse.read((tx) => tx.select().from(tables.accounts).all()).map((a) => a.id)).toEqual([
      "acc1",
    ]);
  });

  it("rejects files that are not Lichen databases", () => {
    const junk = path.join(temp.dir, "junk.db");
    fs.writeFileSync(junk, "this is not sqlite at all, just text".repeat(100));
    expect(() => openStore({ path: junk, role: "main" })).toThrow(NotALichenDatabaseError);
    const other = path.join(temp.dir, "other.db");
    const raw = new Database(other);
    raw.exec("CREATE TABLE foo (x)");
    raw.close();
    expect(() => openStore({ path: other, role: "main" })).toThrow(/not a Lichen one/);
  });
});

describe("write / read", () => {
  it("commits, rolls back on throw, and returns the callback's value", () => {
    const s = open("main");
    addAccount(s);
    expect(() =>
      s.write((tx) => {
        tx.insert(tables.chats).values({ accountId: "acc1", jid: "a@x", createdAt: 1 }).run();
        throw new Error("handler failed");
      }),
    ).toThrow("handler failed");
    expect(s.db.select().from(tables.chats).all()).toHaveLength(0);
    const n = s.write((tx) => {
      tx.insert(tables.chats).values({ accountId: "acc1", jid: "b@x", createdAt: 1 }).run();
      return 42;
    });
    expect(n).toBe(42);
    expect(s.db.select().from(tables.chats).all()).toHaveLength(1);
  });

  it("nested write is a savepoint: an inner throw caught by the outer keeps the outer rows", () => {
    const s = open("main");
    addAccount(s);
    s.write((tx) => {
      tx.insert(tables.chats).values({ accountId: "acc1", jid: "outer@x", createdAt: 1 }).run();
      expect(() =>
        s.write((inner) => {
          inner
            .insert(tables.chats)
            .values({ accountId: "acc1", jid: "inner@x", createdAt: 1 })
            .run();
          throw new Error("inner");
        }),
      ).toThrow("inner");
      s.write((inner) =>
        inner
          .insert(tables.chats)
          .values({ accountId: "acc1", jid: "inner2@x", createdAt: 1 })
          .run(),
      );
    });
    expect(
      s.db
        .select()
        .from(tables.chats)
        .all()
        .map((c) => c.jid)
        .sort(),
    ).toEqual(["inner2@x", "outer@x"]);
  });

  it("afterCommit runs after commit only, and not for a rolled-back savepoint", () => {
    const s = open("main");
    const seen: string[] = [];
    s.write((tx) => {
      tx.afterCommit(() => seen.push(`outer committed=${!s.inTransaction}`));
      try {
        s.write((inner) => {
          inner.afterCommit(() => seen.push("inner-rolled-back"));
          throw new Error("x");
        });
      } catch {
        /* expected */
      }
    });
    expect(seen).toEqual(["outer committed=true"]);
    expect(() =>
      s.write((tx) => {
        tx.afterCommit(() => seen.push("never"));
        throw new Error("rb");
      }),
    ).toThrow("rb");
    expect(seen).toEqual(["outer committed=true"]);
  });

  it("rejects async callbacks, write inside read, and use after close", async () => {
    const s = open("main");
    expect(() => s.write(async () => 1)).toThrow(TransactionUsageError);
    expect(s.inTransaction).toBe(false);
    expect(() => s.read(() => s.write(() => 1))).toThrow(/write\(\) inside read\(\)/);
    await expect(s.writeAsync((tx) => tx.now)).resolves.toBeTypeOf("number");
    const other = openStore({ path: path.join(temp.dir, "lichen.db"), role: "nse" });
    other.close();
    expect(() => other.write(() => 1)).toThrow(StoreError);
  });

  it("concurrent writeAsync calls of one process are serialized and all commit", async () => {
    const s = open("main");
    addAccount(s);
    s.write((tx) =>
      tx.insert(tables.chats).values({ accountId: "acc1", jid: "n@x", createdAt: 1 }).run(),
    );
    const bump = (tx: Parameters<Parameters<Store["write"]>[0]>[0]) => {
      const row = tx.select().from(tables.chats).get()!;
      tx.update(tables.chats)
        .set({ unreadCount: row.unreadCount + 1 })
        .run();
      return row.unreadCount;
    };
    const seen = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        i % 3 === 0 ? Promise.resolve(s.write(bump)) : s.writeAsync(bump),
      ),
    );
    expect(new Set(seen).size).toBe(50);
    expect(s.db.select().from(tables.chats).get()!.unreadCount).toBe(50);
    let inner: Promise<number> | undefined;
    s.write(() => {
      inner = s.writeAsync(() => 1);
    });
    await expect(inner).rejects.toThrow(/writeAsync\(\) cannot be nested/);
  });

  it("a process stopped inside a transaction: write() gives up after maxWaitMs with a clear error (never SQLITE_BUSY), and recovers when it dies", async () => {
    const s = open("main", { maxWaitMs: 300 });
    addAccount(s);
    const stuck = new Child("stuck-writer.mjs", { db: path.join(temp.dir, "lichen.db") });
    try {
      await stuck.waitFor((l) => l.inTransaction === true, "stuck transaction");
      let err: unknown;
      try {
        s.write((tx) =>
          tx.insert(tables.chats).values({ accountId: "acc1", jid: "x@y", createdAt: 1 }).run(),
        );
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(StoreLockTimeoutError);
      expect((err as Error).message).toMatch(
        /held the database lock for \d+ ms \(more than maxWaitMs 300\)/,
      );
      expect((err as { code?: string }).code).toBeUndefined();
      await expect(s.writeAsync(() => 1)).rejects.toBeInstanceOf(StoreLockTimeoutError);
      // Reads are not blocked by a writer (WAL).
      expect(s.read((tx) => tx.select().from(tables.accounts).all())).toHaveLength(1);
    } finally {
      await stopAll([stuck]);
    }
    // The OS released the dead process's lock; its transaction never happened.
    s.write((tx) =>
      tx.insert(tables.chats).values({ accountId: "acc1", jid: "x@y", createdAt: 1 }).run(),
    );
    expect(s.db.select().from(tables.syncErrors).all()).toHaveLength(0);
    expect(s.sqlite.pragma("integrity_check", { simple: true })).toBe("ok");
  });

  it("tx.now comes from the injected clock; dataVersion changes only on another connection's commit", () => {
    let t = 1000;
    const a = open("main", { clock: () => t });
    const b = open("nse");
    expect(a.write((tx) => tx.now)).toBe(1000);
    t = 2000;
    expect(a.write((tx) => tx.now)).toBe(2000);
    const v0 = a.dataVersion();
    addAccount(a);
    expect(a.dataVersion()).toBe(v0);
    b.write((tx) => tx.insert(tables.accounts).values({ id: "x", jid: "x@y", createdAt: 1 }).run());
    expect(a.dataVersion()).not.toBe(v0);
  });

  it("deduplicates replayed messages through the unique ids", () => {
    const s = open("main");
    addAccount(s);
    const base = {
      accountId: "acc1",
      chatJid: "b@x",
      direction: "in" as const,
      fromJid: "b@x/r",
      sentAt: 1,
      storedAt: 1,
    };
    s.write((tx) => {
      for (let i = 0; i < 2; i++) {
        tx.insert(tables.messages)
          .values({ ...base, stanzaId: "s1", stanzaIdBy: "acc1@example.org", body: "hi" })
          .onConflictDoNothing()
          .run();
        tx.insert(tables.messages)
          .values({ ...base, originId: "o1", body: "o" })
          .onConflictDoNothing()
          .run();
        tx.insert(tables.messages)
          .values({ ...base, archiveId: "m1", body: "mam" })
          .onConflictDoNothing()
          .run();
      }
      // Messages without any id never clash.
      tx.insert(tables.messages)
        .values({ ...base, body: "no ids" })
        .run();
      tx.insert(tables.messages)
        .values({ ...base, body: "no ids" })
        .run();
    });
    expect(s.db.select().from(tables.messages).all()).toHaveLength(5);
  });
});

describe("account state", () => {
  it("round-trips a valid state and rejects an invalid one naming the field", () => {
    const s = open("main");
    addAccount(s);
    const st = s.write((tx) => loadAccountState(tx, "acc1"));
    st.sm.inboundH = 7;
    st.sm.streamId = "abc";
    s.write((tx) => saveAccountState(tx, "acc1", st));
    expect(s.read((tx) => loadAccountState(tx, "acc1")).sm).toMatchObject({
      inboundH: 7,
      streamId: "abc",
    });
    let err: unknown;
    try {
      s.write((tx) =>
        saveAccountState(tx, "acc1", { ...st, sm: { ...st.sm, outboundAcked: 1.5 } }),
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SchemaValidationError);
    expect((err as SchemaValidationError).field).toBe("sm.outboundAcked");
    expect(s.read((tx) => loadAccountState(tx, "acc1")).sm.inboundH).toBe(7);
  });

  it("a corrupt blob is quarantined verbatim, logged, and invalidated keeping valid SM counters", () => {
    const events: { event: string }[] = [];
    const s = open("main", { logger: (e) => events.push(e) });
    addAccount(s);
    const st = s.write((tx) => loadAccountState(tx, "acc1"));
    st.sm.inboundH = 12;
    st.rosterVersion = "v9";
    s.write((tx) => saveAccountState(tx, "acc1", st));
    s.sqlite
      .prepare("UPDATE account_state SET state = json_set(state, '$.features.server', 'oops')")
      .run();
    const raw = s.sqlite.prepare("SELECT state FROM account_state").pluck().get();

    // A read transaction cannot quarantine: it reports and returns the invalidated state.
    const peek = s.read((tx) => loadAccountStateDetailed(tx, "acc1"));
    expect(peek.invalidated).toBe("corrupt");
    expect(s.sqlite.prepare("SELECT count(*) FROM quarantine").pluck().get()).toBe(0);

    const loaded = s.write((tx) => loadAccountStateDetailed(tx, "acc1"));
    expect(loaded.invalidated).toBe("corrupt");
    expect(loaded.state.sm.inboundH).toBe(12);
    expect(loaded.state.rosterVersion).toBeNull();
    const q = s.sqlite.prepare("SELECT * FROM quarantine").all() as {
      table_name: string;
      row_key: string;
      raw: string;
      error: string;
    }[];
    expect(q).toHaveLength(1);
    expect(q[0]).toMatchObject({ table_name: "account_state", row_key: "acc1", raw });
    expect(q[0]!.error).toMatch(/features\.server must be (an )?array/);
    expect(events.find((e) => e.event === "store.account-state.corrupt")).toMatchObject({
      accountId: "acc1",
      keptStreamManagement: true,
    });
    // The row is healthy again and marked invalidated.
    const row = s.sqlite.prepare("SELECT invalidated_at, state FROM account_state").get() as {
      invalidated_at: number;
      state: string;
    };
    expect(row.invalidated_at).toBeTypeOf("number");
    expect(s.write((tx) => loadAccountStateDetailed(tx, "acc1")).invalidated).toBeNull();
  });

  it("unparsable JSON resets everything (SM counters too) and an older version is invalidated", () => {
    const s = open("main");
    addAccount(s);
    const st = s.write((tx) => loadAccountState(tx, "acc1"));
    st.sm.inboundH = 3;
    st.rosterVersion = "r1";
    s.write((tx) => saveAccountState(tx, "acc1", st));
    s.sqlite.prepare("UPDATE account_state SET state = json_set(state, '$.stateVersion', 0)").run();
    const v = s.write((tx) => loadAccountStateDetailed(tx, "acc1"));
    expect(v.invalidated).toBe("version");
    expect(v.state.sm.inboundH).toBe(3);
    expect(v.state.rosterVersion).toBeNull();
    s.sqlite.prepare("UPDATE account_state SET state = '{\"sm\": tru'").run();
    const c = s.write((tx) => loadAccountStateDetailed(tx, "acc1"));
    expect(c.invalidated).toBe("corrupt");
    expect(c.state.sm.inboundH).toBe(0);
  });
});
