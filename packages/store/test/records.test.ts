import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ShareOutboxItem } from "@lichen/schema";
import {
  SchemaValidationError,
  addIdleTimer,
  addIqHandler,
  addPendingNotification,
  addShareOutboxItem,
  duePendingNotifications,
  listShareOutbox,
  markNotificationDelivered,
  openStore,
  setShareOutboxState,
  tables,
  takeIqHandler,
  tickConnectedTime,
  type Store,
} from "../src/index.js";
import { tempDir } from "./helpers.js";

let dir: string;
let cleanup: () => void;
let store: Store;
let now = 1_000_000;
const events: { event: string }[] = [];

beforeEach(() => {
  ({ dir, cleanup } = tempDir());
  events.length = 0;
  store = openStore({
    path: path.join(dir, "r.db"),
    role: "main",
    clock: () => now,
    logger: (e) => events.push(e),
  });
  store.write((tx) =>
    tx
      .insert(tables.accounts)
      .values({ id: "acc", jid: "acc@example.org", createdAt: tx.now })
      .run(),
  );
});
afterEach(() => {
  store.close();
  cleanup();
});

const item = (id: string): ShareOutboxItem => ({
  v: 1,
  id,
  accountId: "acc",
  to: "bob@example.org",
  createdAt: now,
  content: { kind: "text", text: `hello ${id}` },
});

describe("share outbox", () => {
  it("validates on write, lists pending in order, tracks state", () => {
    store.write((tx) => {
      addShareOutboxItem(tx, item("a"));
      addShareOutboxItem(tx, { ...item("b"), createdAt: now + 1 });
    });
    expect(() =>
      store.write((tx) =>
        addShareOutboxItem(tx, {
          ...item("c"),
          content: { kind: "geo", latitude: 91, longitude: 0 },
        }),
      ),
    ).toThrow(/content\.latitude must be <= 90/);
    expect(store.read((tx) => listShareOutbox(tx)).map((e) => e.item.id)).toEqual(["a", "b"]);
    store.write((tx) => setShareOutboxState(tx, "a", "sent"));
    expect(store.read((tx) => listShareOutbox(tx)).map((e) => e.item.id)).toEqual(["b"]);
    expect(store.read((tx) => listShareOutbox(tx, ["sent"]))[0]).toMatchObject({
      state: "sent",
      item: { id: "a" },
    });
  });

  it("a corrupt row is quarantined (kept verbatim), logged and skipped; the others still come", () => {
    store.write((tx) => {
      addShareOutboxItem(tx, item("good"));
      addShareOutboxItem(tx, item("bad"));
    });
    store.sqlite
      .prepare("UPDATE share_outbox SET item = json_set(item, '$.to', 42) WHERE id = 'bad'")
      .run();
    const listed = store.write((tx) => listShareOutbox(tx));
    expect(listed.map((e) => e.item.id)).toEqual(["good"]);
    const q = store.sqlite
      .prepare("SELECT table_name, row_key, raw, error FROM quarantine")
      .all() as Record<string, string>[];
    expect(q).toHaveLength(1);
    expect(q[0]).toMatchObject({ table_name: "share_outbox", row_key: "bad" });
    expect(q[0]!.error).toMatch(/invalid ShareOutboxItem: to must be (a )?string/);
    expect((JSON.parse(q[0]!.raw!) as { item: string }).item).toContain('"to":42');
    expect(events.some((e) => e.event === "store.quarantined")).toBe(true);
  });
});

describe("IQ handlers and idle timers", () => {
  it("time out only by ticks of connected time; take() removes on response", () => {
    store.write((tx) => {
      addIqHandler(tx, {
        accountId: "acc",
        iqId: "q1",
        handler: { v: 1, name: "disco.result", bound: { n: 1 } },
        timeoutTicks: 2,
      });
      addIqHandler(tx, {
        accountId: "acc",
        iqId: "q2",
        handler: { v: 1, name: "roster.result", invalidation: "roster.failed", bound: {} },
        peer: "bob@example.org/desk",
        timeoutTicks: 5,
      });
      addIdleTimer(tx, {
        id: "t1",
        accountId: "acc",
        handler: { v: 1, name: "csi.inactive", bound: {} },
        ticks: 1,
      });
    });
    expect(() =>
      store.write((tx) =>
        addIqHandler(tx, {
          accountId: "acc",
          iqId: "q3",
          handler: { v: 1, name: "", bound: {} },
          timeoutTicks: 1,
        }),
      ),
    ).toThrow(SchemaValidationError);
    // Wall-clock time passing (a frozen process) changes nothing.
    now += 3_600_000;
    const t1 = store.write((tx) => tickConnectedTime(tx, "acc"));
    expect(t1.expiredIq).toEqual([]);
    expect(t1.firedTimers.map((t) => t.id)).toEqual(["t1"]);
    const t2 = store.write((tx) => tickConnectedTime(tx, "acc"));
    expect(t2.expiredIq.map((h) => [h.iqId, h.handler.name])).toEqual([["q1", "disco.result"]]);
    const taken = store.write((tx) => takeIqHandler(tx, "acc", "q2"));
    expect(taken?.handler).toEqual({
      v: 1,
      name: "roster.result",
      invalidation: "roster.failed",
      bound: {},
    });
    expect(taken?.remainingTicks).toBe(3);
    expect(taken?.peer).toBe("bob@example.org/desk"); // only bob's answer may complete it
    expect(store.write((tx) => takeIqHandler(tx, "acc", "q2"))).toBeUndefined();
  });

  it("a handler row with a broken descriptor is quarantined, not run", () => {
    store.write((tx) =>
      addIqHandler(tx, {
        accountId: "acc",
        iqId: "q1",
        handler: { v: 1, name: "x", bound: {} },
        timeoutTicks: 1,
      }),
    );
    store.sqlite.prepare("UPDATE iq_handlers SET handler = '{\"v\":2}'").run();
    expect(store.write((tx) => takeIqHandler(tx, "acc", "q1"))).toBeUndefined();
    expect(store.sqlite.prepare("SELECT error FROM quarantine").pluck().get()).toMatch(
      /invalid HandlerDescriptor: (v|name|bound) /,
    );
  });
});

describe("pending notifications", () => {
  it("deliver when due, once", () => {
    store.write((tx) => {
      addPendingNotification(tx, {
        id: "n1",
        accountId: "acc",
        content: { kind: "alert", title: "Bob", body: "hi", threadId: "bob", accountId: "acc" },
      });
      addPendingNotification(tx, {
        id: "n2",
        content: { kind: "silent", reason: "no-new-messages" },
        deliverAt: now + 60_000,
      });
    });
    expect(() =>
      store.write((tx) =>
        addPendingNotification(tx, { id: "n3", content: { kind: "loud" } as never }),
      ),
    ).toThrow(/kind must be one of/);
    expect(store.read((tx) => duePendingNotifications(tx)).map((n) => n.id)).toEqual(["n1"]);
    store.write((tx) => markNotificationDelivered(tx, "n1"));
    now += 60_000;
    expect(store.read((tx) => duePendingNotifications(tx)).map((n) => n.id)).toEqual(["n2"]);
  });
});
