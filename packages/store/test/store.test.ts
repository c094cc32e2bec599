import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { defaultAccountState } from "@lichen/schema";
import {
  ACCOUNT_STATE_JSON_SQL,
  MIGRATIONS_TABLE,
  NotALichenDatabaseError,
  bundledMigrations,
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
  recoverDatabase,
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

  it("reads between writes in one turn leave the busy timeout at 0 (no PRAGMA per read); it is back to busyTimeoutMs on the next turn", async () => {
    const a = open("main", { busyTimeoutMs: 4321 });
    const b = open("nse");
    addAccount(a);
    await new Promise((r) => setImmediate(r));
    const pragmas: string[] = [];
    const pragma = a.sqlite.pragma.bind(a.sqlite);
    a.sqlite.pragma = ((source: string, o?: { simple?: boolean }) => {
      pragmas.push(source);
      return pragma(source, o);
    }) as typeof a.sqlite.pragma;
    // The shape of an encrypted message's handling: reads (prepare) then a write, repeated.
    for (let i = 0; i < 3; i++) {
      const before = a.read((tx) => tx.select().from(tables.accounts).all().length);
      a.write((tx) =>
        tx
          .insert(tables.accounts)
          .values({ id: `n${i}`, jid: `n${i}@example.org`, createdAt: tx.now })
          .run(),
      );
      // Another connection's commit between them: the read still sees it (a fresh snapshot).
      b.write((tx) =>
        tx
          .insert(tables.accounts)
          .values({ id: `b${i}`, jid: `b${i}@example.org`, createdAt: 1 })
          .run(),
      );
      expect(a.read((tx) => tx.select().from(tables.accounts).all().length)).toBe(before + 2);
    }
    expect(pragmas.filter((p) => p.startsWith("busy_timeout"))).toEqual(["busy_timeout = 0"]);
    await new Promise((r) => setImmediate(r));
    expect(pragmas.filter((p) => p.startsWith("busy_timeout"))).toEqual([
      "busy_timeout = 0",
      "busy_timeout = 4321",
    ]);
    expect(pragma("busy_timeout", { simple: true })).toBe(4321);
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

  it("a corrupt blob is quarantined (columns merged in), logged, and invalidated keeping valid SM counters", () => {
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
    // Quarantined: the stored AccountState, columns merged in (what a native NSE's load reads).
    const raw = JSON.parse(
      s.sqlite
        .prepare(`SELECT ${ACCOUNT_STATE_JSON_SQL} FROM account_state`)
        .pluck()
        .get() as string,
    ) as unknown;

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
    expect(q[0]).toMatchObject({ table_name: "account_state", row_key: "acc1" });
    expect(JSON.parse(q[0]!.raw)).toEqual(raw);
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

  /** Counts the UPDATEs that rewrite the blob (a temp trigger: this connection's writes only). */
  function countBlobWrites(s: Store): () => number {
    s.sqlite.exec(`CREATE TEMP TABLE blob_writes (n INTEGER);
      CREATE TEMP TRIGGER count_blob_writes AFTER UPDATE OF state ON main.account_state
      BEGIN INSERT INTO blob_writes VALUES (1); END;`);
    return () => s.sqlite.prepare("SELECT count(*) FROM temp.blob_writes").pluck().get() as number;
  }
  const columnsOf = (s: Store) =>
    s.sqlite
      .prepare(
        "SELECT sm_inbound_h AS h, sm_outbound_sent AS sent, sm_outbound_acked AS acked, mam_synced_at AS syncedAt, mam_last_stanza_id AS lastId, mam_last_timestamp AS lastTs FROM account_state",
      )
      .get();

  it("per-stanza saves (counters, MAM marks) write only the columns; the blob only when something else changes", () => {
    const s = open("main", { clock: () => 5000 });
    addAccount(s);
    s.write((tx) => saveAccountState(tx, "acc1", loadAccountState(tx, "acc1")));
    const blobWrites = countBlobWrites(s);
    const blob = () => s.sqlite.prepare("SELECT state FROM account_state").pluck().get() as string;
    const before = blob();
    // What the engine does per stanza (inbound.ts, protocol.ts, outbound.ts).
    for (let i = 1; i <= 3; i++) {
      s.write((tx) => {
        const st = loadAccountState(tx, "acc1");
        st.sm.inboundH += 1;
        st.sm.outboundSent += 2;
        st.sm.outboundAcked += 1;
        st.mam.syncedAt = tx.now;
        st.mam.lastStanzaId = `arch-${i}`;
        st.mam.lastTimestamp = tx.now;
        saveAccountState(tx, "acc1", st);
        // A second save in the same transaction takes the same path.
        saveAccountState(tx, "acc1", st);
      });
    }
    expect(blobWrites()).toBe(0);
    expect(blob()).toBe(before);
    // The blob holds none of the column fields: no stale copy to mislead a reader.
    expect(Object.keys((JSON.parse(before) as { sm: object }).sm)).not.toContain("inboundH");
    expect(Object.keys((JSON.parse(before) as { mam: object }).mam)).not.toContain("syncedAt");
    expect(columnsOf(s)).toEqual({
      h: 3,
      sent: 6,
      acked: 3,
      syncedAt: 5000,
      lastId: "arch-3",
      lastTs: 5000,
    });
    expect(s.read((tx) => loadAccountState(tx, "acc1")).mam).toMatchObject({
      lastStanzaId: "arch-3",
      syncedAt: 5000,
    });
    // Another field changed: the blob is written (once), with the columns.
    s.write((tx) => {
      const st = loadAccountState(tx, "acc1");
      st.sm.inboundH += 1;
      st.rosterVersion = "r7";
      saveAccountState(tx, "acc1", st);
    });
    expect(blobWrites()).toBe(1);
    expect(JSON.parse(blob())).toMatchObject({ rosterVersion: "r7" });
    expect(columnsOf(s)).toMatchObject({ h: 4 });
    // A rolled-back transaction leaves both as they were.
    expect(() =>
      s.write((tx) => {
        const st = loadAccountState(tx, "acc1");
        st.sm.inboundH += 1;
        st.csi = "inactive";
        saveAccountState(tx, "acc1", st);
        throw new Error("handler failed");
      }),
    ).toThrow("handler failed");
    const after = s.read((tx) => loadAccountState(tx, "acc1"));
    expect(after.sm.inboundH).toBe(4);
    expect(after.csi).toBe("active");
  });

  it("a state this connection saved is not read again until another connection or process commits, or this one changes a row", async () => {
    const s = open("main", { clock: () => 5000 });
    addAccount(s);
    // Count executions of the state row's SELECT on this connection (prepared on first load).
    let stateReads = 0;
    const prepare = s.sqlite.prepare.bind(s.sqlite);
    s.sqlite.prepare = ((source: string) => {
      const stmt = prepare(source);
      if (/^SELECT state, .* FROM account_state WHERE/.test(source)) {
        const get = stmt.get.bind(stmt);
        stmt.get = ((...params: unknown[]) => {
          stateReads++;
          return get(...params);
        }) as typeof stmt.get;
      }
      return stmt;
    }) as typeof s.sqlite.prepare;
    const stanza = () =>
      s.write((tx) => {
        const st = loadAccountState(tx, "acc1");
        st.sm.inboundH += 1;
        saveAccountState(tx, "acc1", st);
        return st.sm.inboundH;
      });
    const h = () => s.read((tx) => loadAccountState(tx, "acc1").sm.inboundH);
    expect(stanza()).toBe(1); // no row yet: read, then inserted
    const reads = stateReads;
    for (let i = 2; i <= 5; i++) expect(stanza()).toBe(i);
    expect(h()).toBe(5);
    expect(stateReads).toBe(reads); // loads after its own committed saves: the row it wrote

    // Another connection (another Store in this process) commits: read again.
    const other = open("nse");
    other.write((tx) => {
      const st = loadAccountState(tx, "acc1");
      st.sm.inboundH = 40;
      saveAccountState(tx, "acc1", st);
    });
    expect(h()).toBe(40);
    expect(stateReads).toBe(reads + 1);
    expect(stanza()).toBe(41);

    // Another process commits.
    const writer = new Child("state-writer.mjs", {
      db: path.join(temp.dir, "lichen.db"),
      accountId: "acc1",
      h: 70,
    });
    try {
      expect((await writer.exited).code).toBe(0);
    } finally {
      await stopAll([writer]);
    }
    expect(stanza()).toBe(71);

    // This connection changes the row beside saveAccountState (raw SQL), committed or not.
    s.sqlite.prepare("UPDATE account_state SET sm_inbound_h = 90").run();
    expect(stanza()).toBe(91);
    s.sqlite.exec("BEGIN IMMEDIATE; UPDATE account_state SET sm_inbound_h = 500; ROLLBACK");
    expect(h()).toBe(91);

    // A rolled-back save (whole transaction or savepoint) is not remembered.
    expect(() =>
      s.write((tx) => {
        const st = loadAccountState(tx, "acc1");
        st.sm.inboundH = 1000;
        saveAccountState(tx, "acc1", st);
        throw new Error("handler failed");
      }),
    ).toThrow("handler failed");
    expect(h()).toBe(91);
    s.write((tx) => {
      expect(() =>
        tx.store.write((inner) => {
          const st = loadAccountState(inner, "acc1");
          st.sm.inboundH = 2000;
          saveAccountState(inner, "acc1", st);
          throw new Error("inner failed");
        }),
      ).toThrow("inner failed");
      expect(loadAccountState(tx, "acc1").sm.inboundH).toBe(91);
    });
    expect(stanza()).toBe(92);
    expect(other.read((tx) => loadAccountState(tx, "acc1").sm.inboundH)).toBe(92);
  });

  it("loaded states share the cached lists frozen: changing one in place throws, assigning a new one is saved", () => {
    const s = open("main");
    addAccount(s);
    s.write((tx) => {
      const st = loadAccountState(tx, "acc1");
      st.features.server = ["urn:xmpp:mam:2"];
      saveAccountState(tx, "acc1", st);
    });
    s.write((tx) => {
      const st = loadAccountState(tx, "acc1");
      expect(() => st.features.server.push("urn:xmpp:carbons:2")).toThrow(TypeError);
      st.features.server = [...st.features.server, "urn:xmpp:carbons:2"];
      saveAccountState(tx, "acc1", st);
    });
    const other = open("main");
    expect(other.read((tx) => loadAccountState(tx, "acc1")).features.server).toEqual([
      "urn:xmpp:mam:2",
      "urn:xmpp:carbons:2",
    ]);
    // The first connection's next load sees the list it saved, not a mutated cache.
    expect(s.read((tx) => loadAccountState(tx, "acc1")).features.server).toHaveLength(2);
  });

  it("the columns win over a copy of their fields in the blob; a blob changed since loading is not paired with new columns", () => {
    const s = open("main");
    addAccount(s);
    const st = s.write((tx) => loadAccountState(tx, "acc1"));
    st.sm.inboundH = 5;
    st.mam.lastStanzaId = "col";
    s.write((tx) => saveAccountState(tx, "acc1", st));
    // An older or foreign writer left copies in the blob: ignored.
    s.sqlite
      .prepare(
        "UPDATE account_state SET state = json_set(state, '$.sm.inboundH', 99, '$.mam.lastStanzaId', 'blob')",
      )
      .run();
    const loaded = s.write((tx) => loadAccountStateDetailed(tx, "acc1"));
    expect(loaded.invalidated).toBeNull();
    expect(loaded.state.sm.inboundH).toBe(5);
    expect(loaded.state.mam.lastStanzaId).toBe("col");

    // Loaded outside the write, then another process changes the blob: saving writes the state
    // whole (as it always did), never the new counters beside a blob this state did not see.
    const stale = s.read((tx) => loadAccountState(tx, "acc1"));
    const other = open("main");
    other.write((tx) => {
      const o = loadAccountState(tx, "acc1");
      o.rosterVersion = "other";
      saveAccountState(tx, "acc1", o);
    });
    stale.sm.inboundH += 1;
    s.write((tx) => saveAccountState(tx, "acc1", stale));
    const now = other.read((tx) => loadAccountState(tx, "acc1"));
    expect(now.sm.inboundH).toBe(6);
    expect(now.rosterVersion).toBeNull();
  });

  it("a corrupt counter column (negative, fractional, text) is a typed error on save and invalidates on load (quarantined, MAM gap opened)", () => {
    const events: { event: string; quarantined?: boolean }[] = [];
    const s = open("main", { logger: (e) => events.push(e as { event: string }) });
    addAccount(s);
    const st = s.write((tx) => loadAccountState(tx, "acc1"));
    st.sm.inboundH = 9;
    st.sm.streamId = "stream-1";
    s.write((tx) => saveAccountState(tx, "acc1", st));

    // Save: the fast path does not let a bad counter through; nothing is written.
    for (const [field, bad] of [
      ["inboundH", -1],
      ["outboundSent", 2.5],
    ] as const) {
      let err: unknown;
      try {
        s.write((tx) => {
          const x = loadAccountState(tx, "acc1");
          x.sm[field] = bad;
          saveAccountState(tx, "acc1", x);
        });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SchemaValidationError);
      expect((err as SchemaValidationError).field).toBe(`sm.${field}`);
    }
    expect(columnsOf(s)).toMatchObject({ h: 9, sent: 0 });

    // Load: a column damaged behind the store's back (after this connection cached the blob).
    for (const [i, bad] of [-3, 1.5, "nine"].entries()) {
      s.sqlite.prepare("UPDATE account_state SET sm_inbound_h = ?").run(bad);
      const peek = s.read((tx) => loadAccountStateDetailed(tx, "acc1"));
      expect(peek.invalidated).toBe("corrupt");
      const loaded = s.write((tx) => loadAccountStateDetailed(tx, "acc1"));
      expect(loaded.invalidated).toBe("corrupt");
      // h cannot be trusted: no resumption with it, and MAM fills what may be missing.
      expect(loaded.state.sm).toMatchObject({ inboundH: 0, streamId: null });
      expect(loaded.state.mam.gapOpen).toBe(true);
      const q = s.sqlite.prepare("SELECT raw, error FROM quarantine ORDER BY id").all() as {
        raw: string;
        error: string;
      }[];
      expect(q).toHaveLength(i + 1);
      expect(q[i]!.error).toMatch(/sm\.inboundH must be/);
      expect((JSON.parse(q[i]!.raw) as { sm: { inboundH: unknown } }).sm.inboundH).toBe(bad);
      // Logged by the read (not quarantined there) and by the write.
      expect(
        events.filter((e) => e.event === "store.account-state.corrupt" && e.quarantined),
      ).toHaveLength(i + 1);
      expect(columnsOf(s)).toMatchObject({ h: 0 });
      // Healthy again; damage the next one from a state with a stream.
      s.write((tx) => {
        const x = loadAccountState(tx, "acc1");
        x.sm.streamId = "stream-1";
        x.sm.inboundH = 9;
        saveAccountState(tx, "acc1", x);
      });
    }
  });

  it("migration 0011 moves the counters and MAM marks from the blob into the columns", () => {
    // A database at migration 0010 with states written by the previous build.
    const file = path.join(temp.dir, "old.db");
    const db = new Database(file);
    const migrations = bundledMigrations();
    const upTo = migrations.findIndex((m) => m.sql.join("").includes("sm_inbound_h"));
    expect(upTo).toBeGreaterThan(10); // after 0010 (its number may change at a merge)
    db.exec(
      `CREATE TABLE "${MIGRATIONS_TABLE}" (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at numeric)`,
    );
    for (const m of migrations.slice(0, upTo)) {
      for (const stmt of m.sql) if (stmt.trim()) db.exec(stmt);
      db.prepare(`INSERT INTO "${MIGRATIONS_TABLE}" (hash, created_at) VALUES (?, ?)`).run(
        m.hash,
        m.folderMillis,
      );
    }
    const old = (id: string, sm: object, mam: object) => {
      const fresh = defaultAccountState(100);
      db.prepare("INSERT INTO accounts (id, jid, created_at) VALUES (?, ?, 1)").run(id, `${id}@x`);
      db.prepare(
        "INSERT INTO account_state (account_id, state, version, updated_at) VALUES (?, ?, 1, 1)",
      ).run(
        id,
        JSON.stringify({
          ...fresh,
          sm: { ...fresh.sm, streamId: "s", ...sm },
          mam: {
            lastStanzaId: null,
            lastTimestamp: null,
            gapOpen: false,
            completedAt: null,
            ...mam,
          },
        }),
      );
    };
    old(
      "ok",
      { inboundH: 41, outboundSent: 7, outboundAcked: 6 },
      { lastStanzaId: "a1", lastTimestamp: 90, syncedAt: 95 },
    );
    old("nosync", { inboundH: 3, outboundSent: 0, outboundAcked: 0 }, {});
    old("boolean", { inboundH: true, outboundSent: 0, outboundAcked: 0 }, {});
    old("missing", { inboundH: undefined, outboundSent: 0, outboundAcked: 0 }, {});
    db.prepare("INSERT INTO accounts (id, jid, created_at) VALUES ('garbled', 'g@x', 1)").run();
    db.prepare(
      "INSERT INTO account_state (account_id, state, version, updated_at) VALUES ('garbled', '{{ not json', 1, 1)",
    ).run();
    db.close();

    // lichen-store recover of such a database into this build's schema moves them the same way.
    const recovered = path.join(temp.dir, "recovered.db");
    expect(recoverDatabase(file, recovered).ok).toBe(true);
    const r = temp.track(openStore({ path: recovered, role: "main" }));
    expect(r.write((tx) => loadAccountStateDetailed(tx, "ok")).state.sm).toMatchObject({
      streamId: "s",
      inboundH: 41,
      outboundSent: 7,
    });

    const s = temp.track(openStore({ path: file, role: "main" }));
    const load = (id: string) => s.write((tx) => loadAccountStateDetailed(tx, id));
    const ok = load("ok");
    expect(ok.invalidated).toBeNull();
    expect(ok.state.sm).toMatchObject({
      streamId: "s",
      inboundH: 41,
      outboundSent: 7,
      outboundAcked: 6,
    });
    expect(ok.state.mam).toMatchObject({ lastStanzaId: "a1", lastTimestamp: 90, syncedAt: 95 });
    const blob = s.sqlite
      .prepare("SELECT state FROM account_state WHERE account_id = 'ok'")
      .pluck()
      .get() as string;
    expect(blob).not.toMatch(
      /inboundH|outboundSent|outboundAcked|syncedAt|lastStanzaId|lastTimestamp/,
    );
    const nosync = load("nosync");
    expect(nosync.invalidated).toBeNull();
    expect(nosync.state.sm.inboundH).toBe(3);
    expect(nosync.state.mam.syncedAt).toBeNull();
    // Counters that were corrupt in the blob are still found corrupt: no resumption, MAM gap.
    for (const id of ["boolean", "missing"]) {
      const bad = load(id);
      expect(bad.invalidated).toBe("corrupt");
      expect(bad.state.sm.streamId).toBeNull();
      expect(bad.state.mam.gapOpen).toBe(true);
    }
    // A blob that was not JSON survives the migration and is quarantined at load, as before.
    expect(load("garbled").invalidated).toBe("corrupt");
  });
});
