import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Ipc,
  ProcessLock,
  loadAccountState,
  openStore,
  saveAccountState,
  tables,
} from "@lichen/store";

// The built CLI, run as a child process like a person would.
const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "dist", "cli.js");
let dir: string;
let db: string;

function run(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [cli, ...args], {
    encoding: "utf8",
    env: { ...process.env, LICHEN_DB: "", ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The raw SQLite handle of any file, without migrating or checking it (to plant bad data). */
function rawSqlite(file: string) {
  return openStore({ path: file, role: "main", migrate: false, checkSchema: false });
}

beforeAll(() => {
  if (!fs.existsSync(cli))
    throw new Error(
      `${cli} is missing: build first (npx turbo run build --filter=@lichen/store-explorer...)`,
    );
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "lichen-explorer-"));
  db = path.join(dir, "lichen.db");
  const store = openStore({ path: db, role: "main" });
  store.write((tx) => {
    tx.insert(tables.accounts)
      .values([
        { id: "alice", jid: "alice@example.org", createdAt: tx.now },
        { id: "bob", jid: "bob@example.org", createdAt: tx.now },
      ])
      .run();
    const st = loadAccountState(tx, "alice");
    st.sm.streamId = "stream-abc";
    st.sm.inboundH = 41;
    st.sm.outboundSent = 7;
    st.sm.outboundAcked = 5;
    saveAccountState(tx, "alice", st);
    for (const seq of [6, 7]) {
      tx.insert(tables.outboundQueue)
        .values({
          accountId: "alice",
          streamKey: "default",
          seq,
          stanza: `<message id='m${seq}'><body>hi ${seq}</body></message>`,
          createdAt: tx.now,
        })
        .run();
    }
    tx.insert(tables.iqHandlers)
      .values({
        accountId: "alice",
        iqId: "disco1",
        handler: JSON.stringify({
          v: 1,
          name: "disco.result",
          invalidation: "disco.failed",
          bound: { node: "x" },
        }),
        peer: "localhost",
        remainingTicks: 30,
        createdAt: tx.now,
      })
      .run();
    tx.insert(tables.idleTimers)
      .values({
        id: "t1",
        accountId: "alice",
        handler: JSON.stringify({ v: 1, name: "csi.inactive", bound: {} }),
        remainingTicks: 5,
        createdAt: tx.now,
      })
      .run();
    for (let i = 1; i <= 5; i++) {
      tx.insert(tables.messages)
        .values({
          accountId: "alice",
          chatJid: "bob@example.org",
          direction: i % 2 ? "in" : "out",
          fromJid: i % 2 ? "bob@example.org/phone" : "alice@example.org/lichen",
          body: `message number ${i}`,
          sentAt: tx.now + i,
          storedAt: tx.now + i,
        })
        .run();
    }
    tx.insert(tables.shareOutbox)
      .values({
        id: "o1",
        accountId: "alice",
        item: JSON.stringify({
          v: 1,
          id: "o1",
          accountId: "alice",
          to: "bob@example.org",
          createdAt: tx.now,
          content: { kind: "text", text: "shared text" },
        }),
        createdAt: tx.now,
        updatedAt: tx.now,
      })
      .run();
  });
  const lock = new ProcessLock(store, {
    key: "xmpp-session",
    holder: "nse:1234",
    leaseMs: 600_000,
  });
  lock.tryAcquire();
  const ipc = new Ipc(store, { role: "main" });
  ipc.send({
    type: "disconnect-all",
    destination: "nse",
    data: { reason: "main-app-foreground" },
    ttlMs: 600_000,
  });
  ipc.close();
  store.close(); // the lock stays in the row (lease 10 min): the explorer shows it
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("lichen-store CLI", () => {
  it("prints help and exits 0; unknown commands and missing --db exit non-zero", () => {
    const help = run(["--help"]);
    expect(help.code).toBe(0);
    for (const c of [
      "accounts",
      "state <account>",
      "queue",
      "handlers",
      "lock",
      "ipc",
      "messages",
      "outbox",
      "integrity",
      "export",
      "migrate",
    ]) {
      expect(help.stdout).toContain(c);
    }
    expect(run(["frobnicate", "--db", db]).code).not.toBe(0);
    const noDb = run(["accounts"]);
    expect(noDb.code).toBe(2);
    expect(noDb.stderr).toMatch(/use --db PATH or set LICHEN_DB/);
  });

  it("fails clearly on a missing file and on files that are not Lichen databases", () => {
    const missing = run(["--db", path.join(dir, "nope.db"), "accounts"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/no database at .*nope\.db/);
    expect(fs.existsSync(path.join(dir, "nope.db"))).toBe(false);
    const text = path.join(dir, "text.db");
    fs.writeFileSync(text, "hello, I am a text file, not a database. ".repeat(50));
    expect(run(["--db", text, "accounts"]).stderr).toMatch(/not a SQLite database/);
    const other = path.join(dir, "other.db");
    const raw = rawSqlite(other);
    raw.sqlite.exec("CREATE TABLE cats (name TEXT)");
    raw.close();
    const r = run(["--db", other, "lock"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/not a Lichen one \(tables: cats\)/);
  });

  it("accounts: a readable table and --json with the SM state (LICHEN_DB works too)", () => {
    const t = run(["accounts"], { LICHEN_DB: db });
    expect(t.code).toBe(0);
    const lines = t.stdout.trim().split("\n");
    expect(lines[0]).toMatch(
      /^id\s+jid\s+enabled\s+stream\s+in h\s+out sent\s+out acked\s+unacked/,
    );
    expect(lines.find((l) => l.startsWith("alice"))).toMatch(
      /alice@example\.org\s+yes\s+stream-abc\s+41\s+7\s+5\s+2\s+yes/,
    );
    const j = JSON.parse(run(["--db", db, "--json", "accounts"]).stdout) as Record<
      string,
      unknown
    >[];
    expect(j.find((a) => a.id === "alice")).toMatchObject({
      streamId: "stream-abc",
      inboundH: 41,
      unacked: 2,
      stateOk: true,
    });
    expect(j.find((a) => a.id === "bob")).toMatchObject({ inboundH: null, stateOk: null });
  });

  it("state, queue, handlers, lock, ipc, messages --tail, outbox", () => {
    const state = run(["--db", db, "state", "alice"]);
    expect(state.code).toBe(0);
    expect(state.stdout).toMatch(/valid:\s+yes/);
    expect(state.stdout).toContain('"inboundH": 41');
    const unknown = run(["--db", db, "state", "carol"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no stored state for account "carol"/);

    expect(run(["--db", db, "queue"]).stdout).toMatch(
      /alice\s+default\s+7\s+no\s+.*<message id='m7'>/,
    );
    const h = run(["--db", db, "handlers"]).stdout;
    expect(h).toMatch(/iq\s+alice\s+disco1\s+disco\.result\s+disco\.failed\s+30\s+localhost/);
    expect(h).toMatch(/timer\s+alice\s+t1\s+csi\.inactive\s+-\s+5/);
    expect(run(["--db", db, "lock"]).stdout).toMatch(
      /xmpp-session\s+nse:1234\s+held\s+.*in 10m.*\s+1\s/,
    );
    const ipcRows = JSON.parse(run(["--db", db, "--json", "ipc"]).stdout) as Record<
      string,
      unknown
    >[];
    expect(ipcRows).toHaveLength(1);
    expect(ipcRows[0]).toMatchObject({
      type: "disconnect-all",
      source: "main",
      destination: "nse",
    });
    expect(run(["--db", db, "ipc"]).stdout).toMatch(/disconnect-all\s+main\s+nse/);

    const tail = JSON.parse(run(["--db", db, "--json", "messages", "--tail", "2"]).stdout) as {
      body: string;
    }[];
    expect(tail.map((m) => m.body)).toEqual(["message number 4", "message number 5"]);
    expect(run(["--db", db, "messages", "--tail", "3"]).stdout.trim().split("\n")).toHaveLength(5); // head + rule + 3
    expect(run(["--db", db, "messages", "--tail", "zero"]).code).toBe(2);
    expect(run(["--db", db, "outbox"]).stdout).toMatch(
      /o1\s+alice\s+bob@example\.org\s+text\s+pending/,
    );
  });

  it("chats, roster, messages: the SDK's read API (time order, not arrival; accounts named)", () => {
    const file = path.join(dir, "read-api.db");
    const store = openStore({ path: file, role: "main" });
    store.write((tx) => {
      tx.insert(tables.accounts)
        .values([
          { id: "carol", jid: "carol@example.org", createdAt: tx.now },
          { id: "dave", jid: "dave@example.org", createdAt: tx.now },
        ])
        .run();
      const msg = (accountId: string, chatJid: string, body: string, sentAt: number) =>
        tx
          .insert(tables.messages)
          .values({
            accountId,
            chatJid,
            direction: "in",
            fromJid: chatJid,
            body,
            deliveryState: "received",
            sentAt,
            storedAt: sentAt + 100_000, // arrival order: as inserted
          })
          .run();
      msg("carol", "erin@example.org", "sent third", 30_000);
      msg("carol", "fred@example.org", "sent first (arrived late, from an archive)", 10_000);
      msg("dave", "erin@example.org", "sent second", 20_000);
      // erin's chat row says it was active last at 130 s; fred's has no row (activity: arrival)
      tx.insert(tables.chats)
        .values({
          accountId: "carol",
          jid: "erin@example.org",
          unreadCount: 2,
          lastActivityAt: 130_000,
          createdAt: 1,
        })
        .run();
      tx.insert(tables.rosterItems)
        .values({
          accountId: "carol",
          jid: "erin@example.org",
          name: "Erin",
          subscription: "both",
          groups: JSON.stringify(["Friends"]),
          updatedAt: 1,
        })
        .run();
    });
    store.close();
    const json = (args: string[]) => {
      const r = run(["--db", file, "--json", ...args]);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as Record<string, unknown>[];
    };
    expect(json(["messages"]).map((m) => [m.account, m.body])).toEqual([
      ["carol", "sent first (arrived late, from an archive)"],
      ["dave", "sent second"],
      ["carol", "sent third"],
    ]);
    expect(json(["messages", "--account", "carol", "--chat", "erin@example.org"])).toHaveLength(1);
    expect(json(["chats", "--account", "carol"])).toEqual([
      expect.objectContaining({ chat: "erin@example.org", unread: 2, lastMessage: "sent third" }),
      expect.objectContaining({ chat: "fred@example.org", unread: 0 }),
    ]);
    expect(json(["chats"]).map((c) => c.account)).toEqual(["carol", "carol", "dave"]);
    expect(json(["roster"])).toEqual([
      {
        account: "carol",
        jid: "erin@example.org",
        name: "Erin",
        subscription: "both",
        ask: null,
        groups: ["Friends"],
        approved: false,
      },
    ]);
    const table = run(["--db", file, "roster", "--account", "carol"]);
    expect(table.stdout).toMatch(/erin@example\.org\s+Erin\s+both/);
    expect(run(["--db", file, "chats"]).stdout).toMatch(/carol\s+erin@example\.org\s+chat\s+2/);
  });

  it("export --json dumps every table", () => {
    const r = run(["--db", db, "export", "--json"]);
    expect(r.code).toBe(0);
    const dump = JSON.parse(r.stdout) as { tables: Record<string, unknown[]> };
    expect(dump.tables.accounts).toHaveLength(2);
    expect(dump.tables.messages).toHaveLength(5);
    expect(Object.keys(dump.tables)).toEqual(
      expect.arrayContaining([
        "__drizzle_migrations",
        "quarantine",
        "omemo_sessions",
        "process_locks",
      ]),
    );
  });

  it("integrity: ok on a healthy DB; exit 1 naming table, row and field when JSON columns are bad", () => {
    const ok = run(["--db", db, "integrity"]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/integrity_check: ok/);
    expect(ok.stdout).toMatch(/OK: no problems found/);

    const bad = path.join(dir, "bad.db");
    fs.copyFileSync(db, bad);
    for (const ext of ["-wal", "-shm"])
      if (fs.existsSync(db + ext)) fs.copyFileSync(db + ext, bad + ext);
    const raw = rawSqlite(bad);
    raw.sqlite.exec(
      // The counter's column (it wins over any copy in the JSON blob).
      `UPDATE account_state SET sm_inbound_h = -3 WHERE account_id = 'alice'`,
    );
    raw.sqlite.exec(`UPDATE iq_handlers SET handler = '{"v":1,"bound":{}}'`);
    raw.sqlite.exec(`UPDATE share_outbox SET item = 'not json'`);
    raw.sqlite.exec(`UPDATE ipc_messages SET data = '{"reason": 5}'`);
    raw.close();
    const r = run(["--db", bad, "integrity"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(
      /account_state\s+alice\s+invalid AccountState: sm\.inboundH must be >= 0/,
    );
    expect(r.stdout).toMatch(
      /iq_handlers\s+alice\/disco1\s+invalid HandlerDescriptor: name (must be a string|is required)/,
    );
    expect(r.stdout).toMatch(/share_outbox\s+o1\s+not JSON/);
    expect(r.stdout).toMatch(
      /ipc_messages\s+\S+\s+invalid IpcMessage: data\.reason must be (a )?string/,
    );
    expect(r.stderr).toMatch(/4 problem\(s\) found/);
    const j = JSON.parse(run(["--db", bad, "--json", "integrity"]).stdout) as {
      ok: boolean;
      problems: unknown[];
    };
    expect(j.ok).toBe(false);
    expect(j.problems).toHaveLength(4);
    // Quarantined rows (set aside by the store) are listed.
    const q = rawSqlite(bad);
    q.sqlite
      .prepare(
        "INSERT INTO quarantine (table_name, row_key, raw, error, at) VALUES (?, ?, ?, ?, ?)",
      )
      .run(
        "ipc_messages",
        "m-17",
        '{"name":"reboot"}',
        "invalid IpcMessage: type must be one of ...",
        Date.now(),
      );
    q.close();
    expect(run(["--db", bad, "quarantine"]).stdout).toMatch(
      /1\s+ipc_messages\s+m-17\s+.*invalid IpcMessage: type/,
    );
    expect(run(["--db", bad, "integrity"]).stdout).toMatch(
      /quarantined rows: 1 \(see "quarantine"\)/,
    );
    // The explorer only reads: the bad rows are still there.
    expect(run(["--db", bad, "state", "alice"]).code).toBe(1);
  });

  it("migrate creates and migrates a new DB; integrity reports a DB that is behind", () => {
    const fresh = path.join(dir, "fresh.db");
    const m = run(["--db", fresh, "--json", "migrate"]);
    expect(m.code).toBe(0);
    const res = JSON.parse(m.stdout) as { applied: number; total: number; bundled: number };
    expect(res.applied).toBeGreaterThan(0);
    expect(res.total).toBe(res.bundled);
    expect(JSON.parse(run(["--db", fresh, "--json", "migrate"]).stdout)).toMatchObject({
      applied: 0,
    });

    const raw = rawSqlite(fresh);
    raw.sqlite.exec("DELETE FROM __drizzle_migrations");
    raw.close();
    const r = run(["--db", fresh, "integrity"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/migration\(s\) not applied \(run "migrate"\)/);
  });
});

describe("damaged databases: integrity names the damage, recover copies out what is readable", () => {
  const N = 2000;
  /** A closed database with account alice and messages 1..N (no WAL left: offsets are exact). */
  function chatDb(file: string): void {
    const store = openStore({ path: file, role: "main" });
    store.write((tx) => {
      tx.insert(tables.accounts)
        .values({ id: "alice", jid: "alice@localhost", createdAt: 1 })
        .run();
      for (let id = 1; id <= N; id++)
        tx.insert(tables.messages)
          .values({
            accountId: "alice",
            chatJid: `peer${id % 4}@localhost`,
            direction: "in",
            fromJid: `peer${id % 4}@localhost`,
            body: `message ${id} ${"y".repeat(id % 70)}`,
            sentAt: id,
            storedAt: id,
          })
          .run();
    });
    store.close();
    expect(fs.existsSync(`${file}-wal`) && fs.statSync(`${file}-wal`).size > 0).toBe(false);
  }
  /** Leaf pages of a b-tree in key order with their cell counts, from dbstat. */
  function leafPages(file: string, name: string) {
    const s = rawSqlite(file);
    try {
      return {
        pageSize: s.sqlite.pragma("page_size", { simple: true }) as number,
        leaves: s.sqlite
          .prepare(
            "SELECT pageno AS page, ncell AS cells FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY path",
          )
          .all(name) as { page: number; cells: number }[],
      };
    } finally {
      s.close();
    }
  }
  function overwrite(file: string, offset: number, length: number): void {
    const junk = Buffer.alloc(length);
    for (let i = 0; i < length; i++) junk[i] = (i * 151 + 89) % 251; // deterministic, no zeros run
    const fd = fs.openSync(file, "r+");
    fs.writeSync(fd, junk, 0, length, offset);
    fs.closeSync(fd);
  }
  const fresh = (name: string) => {
    const file = path.join(dir, name);
    chatDb(file);
    return file;
  };

  it("a damaged data page: integrity exits 1 naming messages; recover keeps every other message", () => {
    const file = fresh("data-page.db");
    const { pageSize, leaves } = leafPages(file, "messages");
    // The middle leaf of messages, and which rowids it holds (ids are 1..N in leaf order).
    const mid = leaves.length >> 1;
    const first = 1 + leaves.slice(0, mid).reduce((n, l) => n + l.cells, 0);
    const last = first + leaves[mid]!.cells - 1;
    overwrite(file, (leaves[mid]!.page - 1) * pageSize, pageSize);

    const r = run(["--db", file, "--json", "integrity"]);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as { ok: boolean; damage: { tables: string[] } };
    expect(report.ok).toBe(false);
    expect(report.damage.tables).toEqual(["messages"]);
    expect(r.stderr).toContain(`lichen-store recover ${file}`);

    const out = path.join(dir, "data-page-recovered.db");
    const rec = run(["--json", "recover", file, out]);
    expect(rec.code).toBe(0);
    const rr = JSON.parse(rec.stdout) as {
      ok: boolean;
      tables: { table: string; copied: number; lost: number | null; skippedRowids: number[][] }[];
    };
    expect(rr.ok).toBe(true);
    expect(rr.tables.find((t) => t.table === "messages")).toMatchObject({
      copied: N - (last - first + 1),
      lost: last - first + 1,
      skippedRowids: [[first, last]],
    });
    // The copy passes the whole integrity command and shows the newest messages.
    expect(run(["--db", out, "integrity"]).code).toBe(0);
    const newest = JSON.parse(run(["--db", out, "--json", "messages", "--tail", "1"]).stdout) as {
      id: number;
      body: string;
    }[];
    expect(newest).toEqual([
      expect.objectContaining({ id: N, body: `message ${N} ${"y".repeat(N % 70)}` }),
    ]);
  });

  it("a damaged index page: integrity names the index and the page; recover loses nothing", () => {
    const file = fresh("index-page.db");
    const { pageSize, leaves } = leafPages(file, "messages_chat");
    const page = leaves[leaves.length >> 1]!.page;
    overwrite(file, (page - 1) * pageSize, pageSize);
    const r = run(["--db", file, "--json", "integrity"]);
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout) as {
      damage: { tables: string[]; indexes: string[]; pages: number[] };
      problems: { table: string; object?: string; page?: number | null }[];
    };
    expect(report.damage).toEqual({
      tables: ["messages"],
      indexes: ["messages_chat"],
      pages: [page],
    });
    expect(report.problems).toContainEqual(
      expect.objectContaining({ table: "messages", object: "messages_chat", page }),
    );
    const out = path.join(dir, "index-page-recovered.db");
    const rec = run(["recover", file, out]);
    expect(rec.code).toBe(0);
    expect(rec.stdout).toMatch(new RegExp(`messages\\s+${N}\\s+0\\s+0\\s+0\\s*$`, "m"));
    expect(run(["--db", out, "integrity"]).code).toBe(0);
  });

  it("a damaged header: integrity reports it as JSON (not a bare SQLite error); recover rebuilds it", () => {
    const file = fresh("header.db");
    overwrite(file, 0, 100);
    const r = run(["--db", file, "--json", "integrity"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      ok: false,
      damage: { pages: [1] },
      problems: [{ table: "(sqlite)", page: 1, problem: "header: magic string overwritten" }],
    });
    // Other commands fail with the damage named and the way out, exit 1 (a finding, not usage).
    const accounts = run(["--db", file, "accounts"]);
    expect(accounts.code).toBe(1);
    expect(accounts.stderr).toMatch(/is damaged .*lichen-store recover/);

    const out = path.join(dir, "header-recovered.db");
    const rec = run(["recover", file, out]);
    expect(rec.code).toBe(0);
    expect(rec.stdout).toMatch(/header rebuilt, page size \d+/);
    expect(rec.stdout).toMatch(new RegExp(`messages\\s+${N}\\s+0`));
    expect(run(["--db", out, "integrity"]).code).toBe(0);
  });

  it("recover: bad input is refused (exit 2) and nothing is overwritten", () => {
    const file = fresh("usage.db");
    const out = path.join(dir, "usage-existing.db");
    fs.writeFileSync(out, "precious");
    const exists = run(["recover", file, out]);
    expect(exists.code).toBe(2);
    expect(exists.stderr).toMatch(/already exists/);
    expect(fs.readFileSync(out, "utf8")).toBe("precious");
    expect(run(["recover", file]).code).toBe(2); // missing <output>
    expect(run(["recover", path.join(dir, "missing.db"), path.join(dir, "x.db")]).code).toBe(2);
    expect(fs.existsSync(path.join(dir, "x.db"))).toBe(false);
  });
});
