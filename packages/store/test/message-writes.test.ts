// The prepared per-message writes: a row per message, replays (same stanza-id / origin-id /
// archive id) are no-ops, the chat is created once and counts unread incoming messages only, and
// the statements work on every store (they are cached per connection, not per process).
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  insertMessageRow,
  listChats,
  listMessages,
  markChatRead,
  openStore,
  tables,
  touchChat,
  TransactionUsageError,
  type NewMessageRow,
  type Store,
} from "../src/index.js";
import { tempDir } from "./helpers.js";

let cleanup: () => void;
let dir: string;
let store: Store;
let now = 1_000_000;

const row = (over: Partial<NewMessageRow>): NewMessageRow => ({
  accountId: "acc",
  chatJid: "bob@example.org",
  direction: "in",
  fromJid: "bob@example.org/phone",
  toJid: "acc@example.org",
  type: "chat",
  messageId: null,
  originId: null,
  stanzaId: null,
  stanzaIdBy: null,
  archiveId: null,
  body: "hi",
  deliveryState: "received",
  sentAt: now,
  storedAt: now,
  ...over,
});

function openWithAccount(file: string): Store {
  const s = openStore({ path: path.join(dir, file), role: "main", clock: () => now });
  s.write((tx) =>
    tx.insert(tables.accounts).values({ id: "acc", jid: "acc@example.org", createdAt: 1 }).run(),
  );
  return s;
}

/** What storeMessage does per message: the row, then (if new) its chat. */
function store1(s: Store, r: NewMessageRow): boolean {
  return s.write((tx) => {
    const id = insertMessageRow(tx, r);
    if (id !== null)
      touchChat(tx, {
        accountId: r.accountId,
        jid: r.chatJid,
        kind: r.type === "groupchat" ? "groupchat" : "chat",
        unread: r.direction === "in",
        at: tx.now,
        messageId: id,
      });
    return id !== null;
  });
}

const chatRow = (s: Store, jid = "bob@example.org") =>
  s.sqlite
    .prepare(
      "SELECT unread_count AS unread, last_activity_at AS at, counted_from_id AS countedFrom FROM chats WHERE account_id = 'acc' AND jid = ?",
    )
    .get(jid) as { unread: number; at: number | null; countedFrom: number | null } | undefined;

beforeEach(() => {
  ({ dir, cleanup } = tempDir());
  store = openWithAccount("writes.db");
});
afterEach(() => {
  store.close();
  cleanup();
});

describe("insertMessageRow / touchChat", () => {
  it("stores each message once (stanza-id, origin-id, archive id) and counts unread incoming ones", () => {
    expect(store1(store, row({ body: "one", stanzaId: "s1", stanzaIdBy: "acc@example.org" }))).toBe(
      true,
    );
    now += 10;
    // The same stanza-id again (a replay after resume): nothing new, the chat is not bumped.
    expect(
      store1(store, row({ body: "one again", stanzaId: "s1", stanzaIdBy: "acc@example.org" })),
    ).toBe(false);
    expect(store1(store, row({ body: "two", originId: "o2" }))).toBe(true);
    expect(store1(store, row({ body: "two again", originId: "o2" }))).toBe(false);
    expect(store1(store, row({ body: "three", archiveId: "a3" }))).toBe(true);
    expect(store1(store, row({ body: "three again", archiveId: "a3" }))).toBe(false);
    now += 10;
    // Ours: stored, the chat's activity moves, its unread count does not.
    expect(
      store1(
        store,
        row({ body: "mine", direction: "out", fromJid: "acc@example.org", deliveryState: "sent" }),
      ),
    ).toBe(true);

    const msgs = listMessages(store, "acc", "bob@example.org").messages;
    expect(msgs.map((m) => m.body)).toEqual(["one", "two", "three", "mine"]);
    expect(msgs[0]).toMatchObject({ encrypted: false, type: "chat", toJid: "acc@example.org" });
    expect(msgs[3]).toMatchObject({ direction: "out", deliveryState: "sent" });
    const [chat] = listChats(store, "acc");
    expect(chat).toMatchObject({
      jid: "bob@example.org",
      kind: "chat",
      unreadCount: 3,
      lastActivityAt: now,
    });
    const created = store.db.select().from(tables.chats).get()!;
    expect(created.createdAt).toBe(1_000_000);
  });

  it("writes the chat row only when the chat is new: later messages are counted at read time, markChatRead folds them in", () => {
    const changes = () => store.sqlite.prepare("SELECT total_changes()").pluck().get() as number;
    const t0 = now;
    expect(store1(store, row({ body: "one", originId: "o1" }))).toBe(true);
    const first = listMessages(store, "acc", "bob@example.org").messages[0]!;
    expect(chatRow(store)).toEqual({ unread: 1, at: now, countedFrom: first.id });
    // Three more (two incoming, one of ours): one row changed each (the message), no chat write.
    for (const [i, direction] of (["in", "out", "in"] as const).entries()) {
      now += 10;
      const before = changes();
      expect(store1(store, row({ body: `m${i}`, originId: `m${i}`, direction }))).toBe(true);
      expect(changes() - before).toBe(1);
    }
    expect(chatRow(store)).toEqual({ unread: 1, at: t0, countedFrom: first.id });
    expect(listChats(store, "acc")[0]).toMatchObject({ unreadCount: 3, lastActivityAt: now });
    // Read: the count folded into the row, which now counts from the latest message.
    const latest = listMessages(store, "acc", "bob@example.org").messages.at(-1)!;
    expect(markChatRead(store, "acc", "bob@example.org")).toBe(3);
    expect(chatRow(store)).toEqual({ unread: 0, at: now, countedFrom: latest.id });
    expect(listChats(store, "acc")[0]).toMatchObject({ unreadCount: 0, lastActivityAt: now });
    expect(markChatRead(store, "acc", "bob@example.org")).toBe(0);
    now += 10;
    store1(store, row({ body: "after", originId: "after" }));
    expect(listChats(store, "acc")[0]).toMatchObject({ unreadCount: 1, lastActivityAt: now });
    expect(chatRow(store)!.unread).toBe(0);
  });

  it("a chat row without counted_from_id (a send, a room join, or stored before migration 0013) takes the next message in and counts from it", () => {
    store.write((tx) =>
      tx
        .insert(tables.chats)
        .values({
          accountId: "acc",
          jid: "bob@example.org",
          unreadCount: 2,
          lastActivityAt: 5,
          createdAt: 1,
        })
        .run(),
    );
    expect(listChats(store, "acc")[0]).toMatchObject({ unreadCount: 2, lastActivityAt: 5 });
    store1(store, row({ body: "one", originId: "o1" }));
    const first = listMessages(store, "acc", "bob@example.org").messages[0]!;
    expect(chatRow(store)).toEqual({ unread: 3, at: now, countedFrom: first.id });
    now += 10;
    store1(store, row({ body: "two", originId: "o2" }));
    expect(chatRow(store)).toEqual({ unread: 3, at: now - 10, countedFrom: first.id });
    expect(listChats(store, "acc")[0]).toMatchObject({ unreadCount: 4, lastActivityAt: now });
  });

  it("works on a second store in the same process, and only inside a write transaction", () => {
    const other = openWithAccount("other.db");
    try {
      expect(
        store1(
          other,
          row({ body: "elsewhere", chatJid: "room@muc.example.org", type: "groupchat" }),
        ),
      ).toBe(true);
      expect(listChats(other, "acc")[0]).toMatchObject({ kind: "groupchat", unreadCount: 1 });
      expect(listChats(store, "acc")).toEqual([]);
      expect(() => other.read((tx) => insertMessageRow(tx, row({})))).toThrow(
        TransactionUsageError,
      );
    } finally {
      other.close();
    }
  });
});
