import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  Ipc,
  IpcTimeoutError,
  ProcessLock,
  acquireAsMain,
  addShareOutboxItem,
  listShareOutbox,
  openStore,
  tables,
  type Store,
} from "../src/index.js";
import type { IpcMessage } from "@lichen/schema";
import { Child, stopAll } from "./children.js";
import { tempDir, waitFor } from "./helpers.js";

let dir: string;
let db: string;
let cleanup: () => void;
const children = new Set<Child>();
const closers: (() => void)[] = [];

function child(script: string, args: Record<string, unknown>): Child {
  const c = new Child(script, { db, ...args });
  children.add(c);
  return c;
}

function mainStore(extra: Partial<Parameters<typeof openStore>[0]> = {}): Store {
  const s = openStore({ path: db, role: "main", ...extra });
  closers.push(() => s.close());
  return s;
}

beforeEach(() => {
  ({ dir, cleanup } = tempDir());
  db = path.join(dir, "lichen.db");
  const s = openStore({ path: db, role: "main" });
  s.write((tx) => {
    tx.insert(tables.accounts)
      .values({ id: "acc", jid: "acc@example.org", createdAt: tx.now })
      .run();
    for (const jid of ["counter", "nse-counter"]) {
      tx.insert(tables.chats).values({ accountId: "acc", jid, createdAt: tx.now }).run();
    }
  });
  s.close();
});

afterEach(async () => {
  await stopAll(children);
  children.clear();
  while (closers.length) closers.pop()!();
  cleanup();
});

describe("process lock", () => {
  it("a killed holder's lease is taken over only after it expires (injected clock), with a generation bump", async () => {
    const holder = child("peer.mjs", {
      role: "nse",
      mode: "holder",
      key: "k",
      holder: "nse:victim",
      leaseMs: 600_000,
    });
    const held = await holder.waitFor((l) => l.holding === true, "holding");
    holder.kill("SIGKILL");
    await holder.exited;

    let offset = 0;
    const s = mainStore({ clock: () => Date.now() + offset });
    const lock = new ProcessLock(s, { key: "k", holder: "main:app", leaseMs: 1000 });
    const before = lock.tryAcquire();
    expect(before).toMatchObject({
      acquired: false,
      holder: "nse:victim",
      generation: held.generation,
    });
    await expect(lock.acquire({ timeoutMs: 100 })).rejects.toThrow(/still held by nse:victim/);

    offset = 600_001; // the dead holder's lease has run out
    const after = lock.tryAcquire();
    // What it took over: the dead holder's row, its lease run out (not released).
    expect(after).toEqual({
      acquired: true,
      generation: (held.generation as number) + 1,
      previous: { holder: "nse:victim", leaseExpiresAt: expect.any(Number) },
    });
    expect(after.previous!.leaseExpiresAt).toBeGreaterThan(0);
    expect(lock.generation).toBe(after.generation);
    lock.release();
    expect(lock.generation).toBeNull();
  });

  it("renewal notices a takeover ('lost'); re-acquiring after another holder emits 'generation-changed'", async () => {
    let t = 1_000_000;
    const s1 = mainStore({ clock: () => t });
    const s2 = openStore({ path: db, role: "nse", clock: () => t });
    closers.push(() => s2.close());
    const a = new ProcessLock(s1, { key: "k", holder: "main:a", leaseMs: 1000, renewEveryMs: 100 });
    const b = new ProcessLock(s2, { key: "k", holder: "nse:b", leaseMs: 1000, renewEveryMs: 100 });
    const events: string[] = [];
    a.on("lost", (e) => events.push(`lost:${e.newHolder}`));
    a.on("generation-changed", (e) => events.push(`gen:${e.previous}->${e.current}`));
    expect(a.tryAcquire().generation).toBe(1);
    t += 1001; // a is "frozen": its lease runs out
    expect(b.tryAcquire()).toEqual({
      acquired: true,
      generation: 2,
      previous: { holder: "main:a", leaseExpiresAt: 1_001_000 }, // run out, not released
    });
    expect(a.renew()).toBe(false);
    expect(events).toEqual(["lost:nse:b"]);
    expect(a.generation).toBeNull();
    b.release();
    // A released lock (lease 0): acquireAsMain counts that as the holder having yielded.
    expect(a.tryAcquire()).toEqual({
      acquired: true,
      generation: 3,
      previous: { holder: "nse:b", leaseExpiresAt: 0 },
    });
    expect(events).toEqual(["lost:nse:b", "gen:1->3"]);
    // Same holder re-taking its own released lock: no other holder in between, no bump.
    a.release();
    expect(a.tryAcquire().generation).toBe(3);
    a.release();
    b.release();
  });
});

describe("main-app priority", () => {
  it("an NSE holding the lock yields to the main app within a bounded time; generation bumps", async () => {
    const s = mainStore();
    const ipc = new Ipc(s, { role: "main" });
    closers.unshift(() => ipc.close());
    const lock = new ProcessLock(s, { key: "xmpp-session", holder: "main:app", leaseMs: 2000 });
    const genChanges: number[][] = [];
    lock.on("generation-changed", (e) => genChanges.push([e.previous, e.current]));
    const g1 = lock.tryAcquire().generation;
    lock.release(); // main goes to the background

    // A lease far longer than the wait: the lock can only change hands by the NSE yielding (on a
    // loaded machine a 2 s lease expired first and the test saw "lease-expired").
    const nse = child("peer.mjs", { role: "nse", mode: "nse", leaseMs: 60_000 });
    const started = await nse.waitFor((l) => l.started === true, "NSE start");
    expect(started.generation).toBe(g1 + 1);
    // Let it process some stanzas while holding the lock.
    await waitFor(
      () =>
        (s.sqlite
          .prepare("SELECT unread_count FROM chats WHERE jid='nse-counter'")
          .pluck()
          .get() as number) >= 5,
      "NSE stanzas",
    );

    const r = await acquireAsMain(lock, ipc, { timeoutMs: 20_000, reason: "main-app-foreground" });
    expect(r.via).toBe("yielded");
    expect(r.previousHolder).toMatch(/^nse:/);
    expect(r.waitedMs).toBeLessThan(20_000);
    expect(r.generation).toBe(g1 + 2);
    expect(genChanges).toEqual([[g1, g1 + 2]]);

    const shutdown = await nse.waitFor((l) => l.shutdown === true, "NSE shutdown");
    await nse.waitFor((l) => l.yielded === true, "NSE yielded");
    expect(
      nse.lines.findIndex((l) => l.disconnectAll === "main-app-foreground"),
    ).toBeGreaterThanOrEqual(0);
    const exit = await nse.exited;
    expect(exit.code).toBe(0);
    // Every stanza the NSE handled was committed whole before it yielded.
    expect(
      s.sqlite.prepare("SELECT unread_count FROM chats WHERE jid='nse-counter'").pluck().get(),
    ).toBe(shutdown.handled);
    lock.release();
  });

  it("a frozen NSE (event loop stopped) loses the lock when its lease expires; main still gets it in bounded time", async () => {
    const s = mainStore();
    const ipc = new Ipc(s, { role: "main" });
    closers.unshift(() => ipc.close());
    const nse = child("peer.mjs", { role: "nse", mode: "nse", leaseMs: 600 });
    await nse.waitFor((l) => l.started === true, "NSE start");
    nse.kill("SIGUSR2");
    await nse.waitFor((l) => l.frozen === true, "NSE frozen");
    try {
      const lock = new ProcessLock(s, { key: "xmpp-session", holder: "main:app", leaseMs: 2000 });
      const r = await acquireAsMain(lock, ipc, { timeoutMs: 5000, resendEveryMs: 100 });
      expect(r.via).toBe("lease-expired");
      expect(r.previousHolder).toMatch(/^nse:/);
      lock.release();
    } finally {
      nse.kill("SIGKILL");
    }
  });

  it("a crashed earlier main process: the new one waits out its lease without asking anyone", async () => {
    const old = child("peer.mjs", {
      role: "main",
      mode: "holder",
      key: "xmpp-session",
      holder: "main:old",
      leaseMs: 700,
    });
    const held = await old.waitFor((l) => l.holding === true, "old main holding");
    old.kill("SIGKILL");
    await old.exited;
    const s = mainStore();
    const ipc = new Ipc(s, { role: "main" });
    closers.unshift(() => ipc.close());
    const lock = new ProcessLock(s, { key: "xmpp-session", holder: "main:new", leaseMs: 2000 });
    const r = await acquireAsMain(lock, ipc, { timeoutMs: 5000 });
    expect(r).toMatchObject({
      via: "lease-expired",
      previousHolder: "main:old",
      generation: (held.generation as number) + 1,
    });
    expect(s.sqlite.prepare("SELECT count(*) FROM ipc_messages").pluck().get()).toBe(0);
    lock.release();
  });

  it("the NSE refuses to start while the main app holds the lock (first check)", async () => {
    const s = mainStore();
    const lock = new ProcessLock(s, { key: "xmpp-session", holder: "main:app", leaseMs: 5000 });
    expect(lock.tryAcquire().acquired).toBe(true);
    const nse = child("peer.mjs", { role: "nse", mode: "nse" });
    const refused = await nse.waitFor((l) => l.refused === true, "refusal");
    expect(refused).toMatchObject({ reason: "main-running", check: 1, holder: "main:app" });
    expect((await nse.exited).code).toBe(3);
    expect(lock.current()?.holder).toBe("main:app");
    lock.release();
  });

  it("the NSE checks twice: main starting between the checks makes it refuse (second check)", async () => {
    const s = mainStore();
    const goFile = path.join(dir, "go");
    const nse = child("peer.mjs", { role: "nse", mode: "nse", goFile });
    await nse.waitFor((l) => l.firstCheckOk === true, "first check passed");
    const lock = new ProcessLock(s, { key: "xmpp-session", holder: "main:app", leaseMs: 60_000 });
    expect(lock.tryAcquire().acquired).toBe(true);
    fs.writeFileSync(goFile, "now"); // let the NSE run its second check
    const refused = await nse.waitFor((l) => l.refused === true, "refusal at second check");
    expect(refused).toMatchObject({ reason: "main-running", check: 2 });
    expect((await nse.exited).code).toBe(3);
    lock.release();
  });
});

describe("IPC across processes", () => {
  it("request/response, timeout, and broadcast delivered once to every other role", async () => {
    const s = mainStore();
    const ipc = new Ipc(s, { role: "main" });
    closers.unshift(() => ipc.close());
    ipc.start();
    const own: IpcMessage[] = [];
    ipc.on("*", (m) => void own.push(m));
    const nse = child("peer.mjs", { role: "nse", mode: "responder" });
    const share = child("peer.mjs", { role: "share", mode: "responder" });
    await Promise.all([
      nse.waitFor((l) => l.ready === true, "ready"),
      share.waitFor((l) => l.ready === true, "ready"),
    ]);

    const reply = await ipc.request(
      { type: "ping", destination: "nse", data: { nonce: "n1" } },
      { timeoutMs: 5000 },
    );
    expect(reply).toMatchObject({
      type: "pong",
      source: "nse",
      destination: "main",
      data: { nonce: "n1" },
    });
    const reply2 = await ipc.request(
      { type: "ping", destination: "share", data: { nonce: "n2" } },
      { timeoutMs: 5000 },
    );
    expect(reply2).toMatchObject({ type: "pong", source: "share", data: { nonce: "n2" } });

    const t0 = Date.now();
    share.kill("SIGKILL");
    await share.exited;
    const dead = ipc.request(
      { type: "ping", destination: "share", data: { nonce: "dead" } },
      { timeoutMs: 300 },
    );
    await expect(dead).rejects.toBeInstanceOf(IpcTimeoutError);
    await expect(dead).rejects.toThrow(/no response to ping .* from share within 300 ms/);
    // Its row expires with the request (ttl = timeout) and is cleaned up.
    ipc.cleanExpired();
    expect(
      s.sqlite
        .prepare("SELECT count(*) FROM ipc_messages WHERE destination = 'share'")
        .pluck()
        .get(),
    ).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);

    const bid = ipc.send({
      type: "state-changed",
      destination: "*",
      data: { areas: ["roster"] },
      ttlMs: 60_000,
    });
    await nse.waitFor(
      (l) => (l.got as { id?: string } | undefined)?.id === bid,
      "broadcast at nse",
    );
    // A later message flushes any re-delivery: the broadcast must still have arrived exactly once.
    const after = ipc.send({
      type: "state-changed",
      destination: "nse",
      data: { areas: ["after"] },
    });
    await nse.waitFor((l) => (l.got as { id?: string } | undefined)?.id === after, "follow-up");
    expect(
      nse.lines.filter((l) => (l.got as { id?: string } | undefined)?.id === bid),
    ).toHaveLength(1);
    // The sender never receives its own broadcast; the row stays (for share) until it expires.
    ipc.drain();
    expect(own.find((m) => m.id === bid)).toBeUndefined();
    expect(
      s.sqlite.prepare("SELECT delivered_to FROM ipc_messages WHERE id = ?").pluck().get(bid),
    ).toBe(",nse,");
  });

  it("no loss and no duplicate delivery with three concurrent sender processes", async () => {
    const s = mainStore();
    const ipc = new Ipc(s, { role: "main", pollMs: 20 });
    closers.unshift(() => ipc.close());
    const got = new Map<string, number>();
    ipc.on("state-changed", (m) => {
      const key = m.data.areas[0]!;
      got.set(key, (got.get(key) ?? 0) + 1);
    });
    ipc.start();
    const COUNT = 300;
    const startAt = Date.now() + 1500;
    const senders = [
      child("peer.mjs", {
        role: "nse",
        mode: "sender",
        tag: "a",
        count: COUNT,
        destination: "main",
        startAt,
      }),
      child("peer.mjs", {
        role: "share",
        mode: "sender",
        tag: "b",
        count: COUNT,
        destination: "main",
        startAt,
      }),
      child("peer.mjs", {
        role: "nse",
        mode: "sender",
        tag: "c",
        count: COUNT,
        destination: "main",
        startAt,
      }),
    ];
    for (const c of senders) expect((await c.exited).code, c.stderr).toBe(0);
    await waitFor(() => got.size === 3 * COUNT, `all ${3 * COUNT} messages (have ${got.size})`);
    ipc.drain();
    expect([...got.values()].every((n) => n === 1)).toBe(true);
    for (const tag of ["a", "b", "c"])
      for (let i = 0; i < COUNT; i++) expect(got.has(`${tag}:${i}`)).toBe(true);
    expect(s.sqlite.prepare("SELECT count(*) FROM ipc_messages").pluck().get()).toBe(0);
  });

  it("a send inside write() is part of that transaction: rolled back with it, delivered only after commit", () => {
    const s = mainStore();
    const shareStore = openStore({ path: db, role: "share" });
    closers.push(() => shareStore.close());
    const share = new Ipc(shareStore, { role: "share" });
    const main = new Ipc(s, { role: "main" });
    closers.unshift(
      () => share.close(),
      () => main.close(),
    );
    const got: string[][] = [];
    main.on("outbox-changed", (m) => void got.push(m.data.itemIds));
    const item = (id: string) => ({
      v: 1 as const,
      id,
      accountId: "acc",
      to: "bob@example.org",
      createdAt: 1,
      content: { kind: "text" as const, text: id },
    });
    expect(() =>
      shareStore.write((tx) => {
        addShareOutboxItem(tx, item("o1"));
        share.send({ type: "outbox-changed", destination: "main", data: { itemIds: ["o1"] } });
        throw new Error("share extension killed by the OS");
      }),
    ).toThrow("killed");
    expect(main.drain()).toBe(0);
    shareStore.write((tx) => {
      addShareOutboxItem(tx, item("o2"));
      share.send({ type: "outbox-changed", destination: "main", data: { itemIds: ["o2"] } });
      // Not visible to other connections before commit.
      expect(s.sqlite.prepare("SELECT count(*) FROM ipc_messages").pluck().get()).toBe(0);
    });
    expect(main.drain()).toBe(1);
    expect(got).toEqual([["o2"]]);
    expect(s.read((tx) => listShareOutbox(tx)).map((e) => e.item.id)).toEqual(["o2"]);
  });

  it("expired rows are cleaned and never delivered", () => {
    let t = 5_000_000;
    const s = mainStore({ clock: () => t });
    const sender = new Ipc(s, { role: "main" });
    const nseStore = openStore({ path: db, role: "nse", clock: () => t });
    closers.push(() => nseStore.close());
    const receiver = new Ipc(nseStore, { role: "nse" });
    closers.unshift(
      () => sender.close(),
      () => receiver.close(),
    );
    const got: IpcMessage[] = [];
    receiver.on("*", (m) => void got.push(m));
    sender.send({ type: "ping", destination: "nse", data: { nonce: "old" }, ttlMs: 1000 });
    sender.send({ type: "ping", destination: "*", data: { nonce: "old-broadcast" }, ttlMs: 1000 });
    sender.send({ type: "ping", destination: "share", data: { nonce: "nobody" }, ttlMs: 1000 });
    expect(s.sqlite.prepare("SELECT count(*) FROM ipc_messages").pluck().get()).toBe(3);
    t += 1000; // expires_at <= now: expired
    sender.send({ type: "ping", destination: "nse", data: { nonce: "fresh" }, ttlMs: 1000 });
    expect(receiver.drain()).toBe(1);
    expect(got.map((m) => (m.data as { nonce?: string }).nonce)).toEqual(["fresh"]);
    expect(s.sqlite.prepare("SELECT count(*) FROM ipc_messages").pluck().get()).toBe(0);
  });

  it("malformed rows are quarantined with an error naming the field; valid ones still arrive", async () => {
    const s = mainStore();
    const nse = child("peer.mjs", { role: "nse", mode: "responder" });
    await nse.waitFor((l) => l.ready === true, "ready");
    const now = Date.now();
    const ins = s.sqlite.prepare(
      "INSERT INTO ipc_messages (id, name, source, destination, data, created_at, expires_at) VALUES (?, ?, 'main', 'nse', ?, ?, ?)",
    );
    s.write(() => {
      ins.run("bad-json", "ping", "{nope", now, now + 60_000);
      ins.run("bad-type", "reboot-the-phone", "{}", now, now + 60_000);
      ins.run(
        "bad-field",
        "sync-error",
        JSON.stringify({ accountId: "acc", code: 7, message: "m" }),
        now,
        now + 60_000,
      );
      ins.run("good", "state-changed", JSON.stringify({ areas: ["x"] }), now, now + 60_000);
    });
    const ipc = new Ipc(s, { role: "main" });
    closers.unshift(() => ipc.close());
    ipc.send({ type: "state-changed", destination: "nse", data: { areas: ["wake"] } }); // rings the doorbell
    await nse.waitFor((l) => (l.got as { id?: string } | undefined)?.id === "good", "valid row");
    await waitFor(() => nse.lines.filter((l) => l.ipcError).length === 3, "3 quarantine errors");
    const errors = nse.lines
      .filter((l) => l.ipcError)
      .map((l) => l.ipcError as { message: string; field?: string; id: string });
    expect(errors.map((e) => [e.id, e.field])).toEqual([
      ["bad-json", "data"],
      ["bad-type", "type"],
      ["bad-field", "data.code"],
    ]);
    expect(errors[2]!.message).toMatch(
      /malformed IPC row .*id=bad-field: invalid IpcMessage: data.code must be (a )?string/,
    );
    const q = s.sqlite
      .prepare("SELECT row_key, raw FROM quarantine WHERE table_name = 'ipc_messages' ORDER BY id")
      .all() as {
      row_key: string;
      raw: string;
    }[];
    expect(q.map((r) => r.row_key)).toEqual(["bad-json", "bad-type", "bad-field"]);
    expect(JSON.parse(q[0]!.raw).data).toBe("{nope");
    expect(
      s.sqlite.prepare("SELECT count(*) FROM ipc_messages WHERE destination = 'nse'").pluck().get(),
    ).toBe(0);
  });
});

describe("concurrent writers", () => {
  it("two processes doing read-modify-write transactions: no SQLITE_BUSY surfaces, no lost update", async () => {
    const COUNT = 1500;
    const startAt = Date.now() + 1500;
    const w = [
      child("peer.mjs", { role: "main", mode: "writer", tag: "a", count: COUNT, startAt }),
      child("peer.mjs", { role: "nse", mode: "writer", tag: "b", count: COUNT, startAt }),
    ];
    const results = await Promise.all(
      w.map((c) => c.waitFor((l) => l.done === true, "writer done", 60_000)),
    );
    for (const r of results) expect(r).toMatchObject({ busy: 0, other: 0 });
    const s = mainStore();
    expect(
      s.sqlite.prepare("SELECT unread_count FROM chats WHERE jid = 'counter'").pluck().get(),
    ).toBe(2 * COUNT);
    expect(s.sqlite.prepare("SELECT count(*) FROM sync_errors").pluck().get()).toBe(2 * COUNT);
  }, 90_000);
});
