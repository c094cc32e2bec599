import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { defaultAccountState, validateAccountState, validateIpcMessage } from "@lichen/schema";
import {
  Ipc,
  ProcessLock,
  bundledMigrations,
  loadAccountState,
  openStore,
  saveAccountState,
  sqlContract,
  tables,
  type Store,
} from "../src/index.js";
import { tempDir, waitFor } from "./helpers.js";

// The SQL contract as a native NSE sees it: the committed Swift constants, parsed back.
const swiftFile = path.join(
  import.meta.dirname,
  "..",
  "..",
  "..",
  "apps/swift-nse/Sources/LichenSchema/LichenSQL.swift",
);

interface Statement {
  sql: string;
  parameters: string[];
  returns: string[];
}
function parseSwiftContract(): Map<string, Statement> {
  const text = fs.readFileSync(swiftFile, "utf8");
  const re =
    /public static let (\w+) = Statement\(\n\s+sql: """\n([\s\S]*?)\n\s*""",\n\s+parameters: \[(.*)\],\n\s+returns: \[(.*)\]\n/g;
  const out = new Map<string, Statement>();
  const list = (s: string) => (s.trim() ? (JSON.parse(`[${s}]`) as string[]) : []);
  for (const m of text.matchAll(re)) {
    // Swift strips the closing delimiter's indentation (12 spaces) from every line.
    const sql = m[2]!
      .split("\n")
      .map((l) => l.replace(/^ {12}/, ""))
      .join("\n")
      .replace(/\\\\/g, "\\");
    out.set(m[1]!, { sql, parameters: list(m[3]!), returns: list(m[4]!) });
  }
  return out;
}

const contract = parseSwiftContract();
const swiftText = fs.readFileSync(swiftFile, "utf8");
const swiftConstant = (name: string): string =>
  JSON.parse(new RegExp(`public static let ${name} = ("[^"]*")`).exec(swiftText)![1]!) as string;
const used = new Set<string>();

let dir: string;
let cleanup: () => void;
let store: Store;
let native: Database.Database;

/** Run a contract statement the way Swift would: prepare, bind by position, step. */
function exec(name: string, args: Record<string, unknown> = {}): unknown[][] {
  const s = contract.get(name);
  if (!s) throw new Error(`no statement ${name} in LichenSQL.swift`);
  used.add(name);
  for (const p of s.parameters) if (!(p in args)) throw new Error(`${name}: missing ${p}`);
  const stmt = native.prepare(s.sql);
  const values = s.parameters.map((p) => args[p]);
  if (!stmt.reader) {
    stmt.run(...values);
    return [];
  }
  const rows = stmt.raw(true).all(...values) as unknown[][];
  if (s.returns.length) for (const r of rows) expect(r).toHaveLength(s.returns.length);
  return rows;
}
const changes = () => native.prepare("SELECT changes()").pluck().get() as number;
function tx<T>(fn: () => T): T {
  exec("beginImmediate");
  try {
    const r = fn();
    exec("commit");
    return r;
  } catch (e) {
    exec("rollback");
    throw e;
  }
}

beforeEach(() => {
  ({ dir, cleanup } = tempDir("lichen-sql-contract-"));
  const file = path.join(dir, "lichen.db");
  store = openStore({ path: file, role: "main" }); // creates and migrates
  store.write((t) =>
    t.insert(tables.accounts).values({ id: "alice", jid: "alice@example.org", createdAt: 1 }).run(),
  );
  native = new Database(file);
  for (const p of [
    "pragmaJournalModeWAL",
    "pragmaSynchronousNormal",
    "pragmaForeignKeysOn",
    "pragmaTrustedSchemaOff",
  ]) {
    const rows = exec(p);
    if (p === "pragmaJournalModeWAL") expect(rows).toEqual([["wal"]]);
  }
});
afterEach(() => {
  native.close();
  store.close();
  cleanup();
});

describe("the SQL contract (LichenSQL.swift) against a migrated database", () => {
  it("is the store's sqlContract(), statement for statement", () => {
    const fromStore = sqlContract();
    expect([...contract.keys()]).toEqual(fromStore.map((s) => s.name));
    for (const s of fromStore) {
      expect(contract.get(s.name)!.sql).toBe(s.sql);
      expect(contract.get(s.name)!.parameters).toEqual(s.params);
      expect((s.sql.match(/\?/g) ?? []).length).toBe(s.params.length);
    }
  });

  it("sees the migrations the store applied, which are the ones LichenSQL.migrationHashes lists", () => {
    const rows = exec("appliedMigrations");
    expect(rows.map((r) => r[0])).toEqual(bundledMigrations().map((m) => m.hash));
    const listed = /public static let migrationHashes: \[String\] = \[([^\]]*)\]/.exec(
      swiftText,
    )![1]!;
    expect(JSON.parse(`[${listed.trim().replace(/,$/, "")}]`)).toEqual(rows.map((r) => r[0]));
  });

  it("wake signal: a native commit plus the wake file reaches a TS Ipc without polling", async () => {
    const suffix = swiftConstant("wakeDirectorySuffix");
    const ext = swiftConstant("wakeFileExtension");
    // Polling every minute: only the wake file can deliver within the wait below.
    const ipc = new Ipc(store, { role: "main", pollMs: 60_000 });
    expect(ipc.wakeDir).toBe(`${store.path}${suffix}`);
    const got: string[] = [];
    ipc.on("ping", (m) => void got.push(m.id));
    ipc.start();
    await new Promise((r) => setTimeout(r, 50)); // the initial drain
    const now = Date.now();
    tx(() =>
      exec("ipcInsert", {
        id: "woken",
        name: "ping",
        source: "nse",
        destination: "main",
        data: "{}",
        responseTo: null,
        createdAt: now,
        expiresAt: now + 10_000,
      }),
    );
    fs.writeFileSync(path.join(`${store.path}${suffix}`, `main${ext}`), String(now));
    await waitFor(() => got.length > 0, "the woken message", 5_000);
    expect(got).toEqual(["woken"]);
    ipc.close();
  });

  it("process lock: acquire, renew, release with generations, interoperating with ProcessLock", () => {
    const now = Date.now();
    const acquire = (holder: string, at: number) =>
      tx(() =>
        exec("lockAcquire", { key: "xmpp-session", holder, leaseExpiresAt: at + 2000, now: at }),
      );
    expect(acquire("nse:swift", now)).toEqual([[1]]);
    // The TS main app sees the native holder and cannot take the lock.
    const main = new ProcessLock(store, { key: "xmpp-session", holder: "main:app", leaseMs: 2000 });
    expect(main.tryAcquire()).toMatchObject({ acquired: false, holder: "nse:swift" });
    expect(exec("lockRead", { key: "xmpp-session" })).toEqual([["nse:swift", now + 2000, 1]]);
    // Re-acquiring as the same holder keeps the generation; renew extends the lease.
    expect(acquire("nse:swift", now + 10)).toEqual([[1]]);
    tx(() =>
      exec("lockRenew", {
        leaseExpiresAt: now + 5000,
        key: "xmpp-session",
        holder: "nse:swift",
        generation: 1,
      }),
    );
    expect(changes()).toBe(1);
    expect(exec("lockRead", { key: "xmpp-session" })[0]![1]).toBe(now + 5000);
    // A stale generation renews nothing (the lock was lost).
    tx(() =>
      exec("lockRenew", {
        leaseExpiresAt: now + 9000,
        key: "xmpp-session",
        holder: "nse:swift",
        generation: 7,
      }),
    );
    expect(changes()).toBe(0);
    tx(() => exec("lockRelease", { key: "xmpp-session", holder: "nse:swift", generation: 1 }));
    // Released: TS takes it at once, with a new generation.
    expect(main.tryAcquire()).toMatchObject({ acquired: true, generation: 2 });
    // Now held by main: the native acquire returns no row.
    expect(acquire("nse:swift", Date.now())).toEqual([]);
    main.release();
    // An expired lease may be taken by anyone; the generation moves on.
    expect(acquire("nse:swift", Date.now())).toEqual([[3]]);
  });

  it("IPC: a native insert reaches the TS Ipc, a TS send reaches the native poll, broadcasts once per role", async () => {
    const now = Date.now();
    const ipc = new Ipc(store, { role: "main", wakeDir: path.join(dir, "wake") });
    const got: unknown[] = [];
    ipc.on("*", (m) => void got.push(m));
    tx(() => {
      exec("ipcDeleteExpired", { now });
      exec("ipcInsert", {
        id: "n1",
        name: "sync-error",
        source: "nse",
        destination: "main",
        data: JSON.stringify({ accountId: "alice", code: "deadline", message: "late" }),
        responseTo: null,
        createdAt: now,
        expiresAt: now + 2000,
      });
    });
    expect(ipc.drain()).toBe(1);
    expect(got).toEqual([expect.objectContaining({ id: "n1", type: "sync-error", source: "nse" })]);

    // TS -> native: a direct message and a broadcast.
    const direct = ipc.send({ type: "ping", destination: "nse", data: { nonce: "x" } });
    ipc.send({ type: "state-changed", destination: "*", data: { areas: ["messages"] } });
    const poll = () =>
      tx(() => {
        exec("ipcDeleteExpired", { now: Date.now() });
        const rows = exec("ipcPoll", { role: "nse", roleMark: ",nse," });
        for (const r of rows)
          if (r[4] === "*") exec("ipcMarkDelivered", { roleComma: "nse,", seq: r[0] });
          else exec("ipcConsume", { seq: r[0] });
        return rows;
      });
    const rows = poll();
    expect(rows.map((r) => [r[1] === direct ? "direct" : "other", r[2], r[4]])).toEqual([
      ["direct", "ping", "nse"],
      ["other", "state-changed", "*"],
    ]);
    // Each row rebuilds into a valid IPCMessage (what the Swift side decodes).
    for (const r of rows) {
      const msg = {
        v: 1,
        id: r[1],
        type: r[2],
        source: r[3],
        destination: r[4],
        data: JSON.parse(r[5] as string) as unknown,
        ...(r[6] !== null ? { responseTo: r[6] } : {}),
        createdAt: r[7],
        expiresAt: r[8],
      };
      expect(validateIpcMessage(msg)).toEqual({ ok: true, value: msg });
    }
    // Consumed: the direct one is gone, the broadcast is not delivered to nse twice.
    expect(poll()).toEqual([]);
    // Expired rows go.
    tx(() => exec("ipcDeleteExpired", { now: Date.now() + 60_000 }));
    expect(native.prepare("SELECT count(*) FROM ipc_messages").pluck().get()).toBe(0);
    ipc.close();
  });

  it("account state: native load/update/insert round-trip with the TS store", () => {
    const state = { ...defaultAccountState(1000), rosterVersion: "v1" };
    store.write((t) => saveAccountState(t, "alice", state));
    const [[json, version]] = exec("accountStateLoad", { accountId: "alice" }) as [
      [string, number],
    ];
    expect(validateAccountState(JSON.parse(json))).toEqual({ ok: true, value: state });
    expect(version).toBe(state.stateVersion);
    const next = { ...state, rosterVersion: "v2", updatedAt: 2000 };
    tx(() =>
      exec("accountStateUpdate", {
        state: JSON.stringify(next),
        version: 1,
        updatedAt: 2000,
        accountId: "alice",
      }),
    );
    expect(store.read((t) => loadAccountState(t, "alice"))).toEqual(next);
    // A new account: update changes nothing, insert creates the row.
    store.write((t) =>
      t.insert(tables.accounts).values({ id: "bob", jid: "bob@example.org", createdAt: 1 }).run(),
    );
    tx(() => {
      exec("accountStateUpdate", {
        state: JSON.stringify(next),
        version: 1,
        updatedAt: 3000,
        accountId: "bob",
      });
      expect(changes()).toBe(0);
      exec("accountStateInsert", {
        accountId: "bob",
        state: JSON.stringify(next),
        version: 1,
        updatedAt: 3000,
      });
    });
    expect(store.read((t) => loadAccountState(t, "bob")).rosterVersion).toBe("v2");

    // The per-stanza write: the counters and MAM marks alone, the blob untouched; the TS store
    // and the native load both see them, and a TS column-only save reaches the native load.
    const blob = () =>
      native.prepare("SELECT state FROM account_state WHERE account_id = 'alice'").pluck().get();
    const blobBefore = blob();
    tx(() =>
      exec("accountStateUpdateCounters", {
        inboundH: 17,
        outboundSent: 4,
        outboundAcked: 3,
        syncedAt: 2500,
        lastStanzaId: "arch-1",
        lastTimestamp: 2400,
        updatedAt: 2500,
        accountId: "alice",
      }),
    );
    expect(changes()).toBe(1);
    expect(blob()).toBe(blobBefore);
    const counted = store.read((t) => loadAccountState(t, "alice"));
    expect(counted).toEqual({
      ...next,
      sm: { ...next.sm, inboundH: 17, outboundSent: 4, outboundAcked: 3 },
      mam: { ...next.mam, syncedAt: 2500, lastStanzaId: "arch-1", lastTimestamp: 2400 },
    });
    store.write((t) => {
      const st = loadAccountState(t, "alice");
      st.sm.inboundH += 1;
      saveAccountState(t, "alice", st);
    });
    expect(blob()).toBe(blobBefore);
    const [[merged]] = exec("accountStateLoad", { accountId: "alice" }) as [[string]];
    expect(JSON.parse(merged)).toEqual({ ...counted, sm: { ...counted.sm, inboundH: 18 } });
  });

  it("outbound queue: append, pending, ack", () => {
    expect(exec("outboundMaxSeq", { accountId: "alice" })).toEqual([[null]]);
    tx(() => {
      for (const seq of [1, 2, 3])
        exec("outboundAppend", {
          accountId: "alice",
          streamKey: "q1",
          seq,
          stanza: `<message id='m${seq}'><body>${seq}</body></message>`,
          important: 1,
          createdAt: 5,
        });
    });
    expect(exec("outboundMaxSeq", { accountId: "alice" })).toEqual([[3]]);
    expect(exec("outboundPending", { accountId: "alice", afterSeq: 1 }).map((r) => r[0])).toEqual([
      2, 3,
    ]);
    tx(() => exec("outboundAck", { accountId: "alice", h: 2 }));
    expect(exec("outboundPending", { accountId: "alice", afterSeq: 0 }).map((r) => r[0])).toEqual([
      3,
    ]);
    // The TS side sees the same rows.
    expect(
      store.read((t) => t.select().from(tables.outboundQueue).all()).map((r) => r.seq),
    ).toEqual([3]);
  });

  it("wake-up fallback: data_version changes when another connection commits", () => {
    const before = exec("dataVersion")[0]![0];
    store.write((t) =>
      t
        .insert(tables.accounts)
        .values({ id: "carol", jid: "carol@example.org", createdAt: 1 })
        .run(),
    );
    expect(exec("dataVersion")[0]![0]).not.toBe(before);
    // A read transaction: one snapshot, ended without writing.
    exec("beginDeferred");
    expect(exec("lockRead", { key: "none" })).toEqual([]);
    exec("rollback");
  });

  it("every statement was executed by these tests", () => {
    // Runs last (vitest keeps file order): nothing in the contract is untested.
    expect([...contract.keys()].filter((n) => !used.has(n))).toEqual([]);
  });
});
