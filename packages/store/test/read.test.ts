// The read API over real SQLite files: time order (not arrival order), paging by position and
// by time without gaps or repeats, lookups by id, chats with unread counts, the unread marker.
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  getMessage,
  listChats,
  listMessages,
  listRecentMessages,
  markChatRead,
  openStore,
  tables,
  type Store,
} from "../src/index.js";
import { tempDir } from "./helpers.js";

let cleanup: () => void;
let store: Store;
let now = 1_000_000;

function insert(chatJid: string, body: string, sentAt: number, direction: "in" | "out" = "in") {
  store.write((tx) =>
    tx
      .insert(tables.messages)
      .values({
        accountId: "acc",
        chatJid,
        direction,
        fromJid: direction === "in" ? chatJid : "acc@example.org",
        toJid: direction === "in" ? "acc@example.org" : chatJid,
        body,
        originId: `o-${body}`,
        stanzaId: `s-${body}`,
        stanzaIdBy: "acc@example.org",
        deliveryState: direction === "in" ? "received" : "pending",
        sentAt,
        storedAt: now++,
      })
      .run(),
  );
}

beforeEach(() => {
  let dir: string;
  ({ dir, cleanup } = tempDir());
  store = openStore({ path: path.join(dir, "read.db"), role: "main", clock: () => now });
  store.write((tx) =>
    tx.insert(tables.accounts).values({ id: "acc", jid: "acc@example.org", createdAt: 1 }).run(),
  );
});
afterEach(() => {
  store.close();
  cleanup();
});

describe("listMessages", () => {
  it("orders by send time to the second, then arrival; pages by position without gaps or repeats", () => {
    // Our 7.5 s send and the reply the server stamped 7 s (whole seconds): arrival order decides.
    insert("erin@example.org", "ours", 7500, "out");
    insert("erin@example.org", "reply", 7000);
    expect(listMessages(store, "acc", "erin@example.org").messages.map((m) => m.body)).toEqual([
      "ours",
      "reply",
    ]);
    // Arrival order differs from send order (a MAM catch-up stores old messages last), and two
    // share a timestamp (the row id breaks the tie).
    const sent = [5, 1, 3, 3, 2, 8, 7, 4, 6, 9];
    sent.forEach((t, i) => insert("bob@example.org", `m${i}`, t * 1000));
    insert("carol@example.org", "other-chat", 4500);
    const all = listMessages(store, "acc", "bob@example.org", { limit: 100 });
    expect(all.messages.map((m) => m.sentAt)).toEqual(
      [...sent].sort((a, b) => a - b).map((t) => t * 1000),
    );
    expect(all).toMatchObject({ hasOlder: false, hasNewer: false });

    // Newest page first, then older pages with `before`: every message exactly once.
    const seen: string[] = [];
    let page = listMessages(store, "acc", "bob@example.org", { limit: 3 });
    expect(page.hasNewer).toBe(false);
    seen.unshift(...page.messages.map((m) => m.body!));
    while (page.hasOlder) {
      page = listMessages(store, "acc", "bob@example.org", { limit: 3, before: page.messages[0]! });
      expect(page.hasNewer).toBe(true);
      seen.unshift(...page.messages.map((m) => m.body!));
    }
    expect(seen).toEqual(all.messages.map((m) => m.body));

    // Forward with `after`, from the first message.
    const forward: string[] = [all.messages[0]!.body!];
    let fwd = listMessages(store, "acc", "bob@example.org", { limit: 4, after: all.messages[0]! });
    forward.push(...fwd.messages.map((m) => m.body!));
    while (fwd.hasNewer) {
      fwd = listMessages(store, "acc", "bob@example.org", {
        limit: 4,
        after: fwd.messages[fwd.messages.length - 1]!,
      });
      forward.push(...fwd.messages.map((m) => m.body!));
    }
    expect(forward).toEqual(seen);
  });

  it("pages by time: since is inclusive, until exclusive", () => {
    for (let t = 1; t <= 6; t++) insert("bob@example.org", `t${t}`, t * 1000);
    const r = listMessages(store, "acc", "bob@example.org", { since: 2000, until: 5000 });
    expect(r.messages.map((m) => m.body)).toEqual(["t2", "t3", "t4"]);
    expect(() =>
      listMessages(store, "acc", "bob@example.org", {
        before: { sentAt: 1, id: 1 },
        after: { sentAt: 1, id: 1 },
      }),
    ).toThrow(RangeError);
  });
});

describe("getMessage, listChats, markChatRead", () => {
  it("finds a message by row id, origin-id or stanza-id, and null for none", () => {
    insert("bob@example.org", "hello", 1000);
    const byOrigin = getMessage(store, "acc", { originId: "o-hello" });
    expect(byOrigin?.body).toBe("hello");
    expect(getMessage(store, "acc", { id: byOrigin!.id })?.body).toBe("hello");
    expect(getMessage(store, "acc", { stanzaId: "s-hello" })?.id).toBe(byOrigin!.id);
    expect(getMessage(store, "acc", { originId: "nope" })).toBeNull();
    expect(getMessage(store, "other", { id: byOrigin!.id })).toBeNull(); // another account's
  });

  it("lists chats by last activity with unread counts and the latest message; read resets the count", () => {
    insert("bob@example.org", "b1", 1000);
    insert("bob@example.org", "b0", 500); // older, stored later
    store.write((tx) =>
      tx
        .insert(tables.chats)
        .values([
          {
            accountId: "acc",
            jid: "bob@example.org",
            unreadCount: 2,
            lastActivityAt: 10,
            createdAt: 1,
          },
          {
            accountId: "acc",
            jid: "room@muc.example.org",
            kind: "groupchat",
            unreadCount: 0,
            lastActivityAt: 20,
            createdAt: 1,
          },
        ])
        .run(),
    );
    insert("dave@example.org", "only-outgoing", 700, "out"); // no chats row yet
    const chats = listChats(store, "acc");
    expect(chats.map((c) => [c.jid, c.unreadCount])).toEqual([
      ["dave@example.org", 0], // its stored time is the latest activity
      ["room@muc.example.org", 0],
      ["bob@example.org", 2],
    ]);
    expect(chats.find((c) => c.jid === "bob@example.org")!.lastMessage?.body).toBe("b1");
    expect(chats.find((c) => c.jid === "room@muc.example.org")!).toMatchObject({
      kind: "groupchat",
      lastMessage: null,
    });
    expect(markChatRead(store, "acc", "bob@example.org")).toBe(2);
    expect(markChatRead(store, "acc", "bob@example.org")).toBe(0);
    expect(listChats(store, "acc").find((c) => c.jid === "bob@example.org")!.unreadCount).toBe(0);
  });
});

describe("listRecentMessages", () => {
  it("the newest across chats and accounts in time order (not arrival), filtered by account or chat, with the account named", () => {
    store.write((tx) =>
      tx.insert(tables.accounts).values({ id: "other", jid: "o@example.org", createdAt: 1 }).run(),
    );
    insert("erin@example.org", "e-late", 9_000);
    insert("fred@example.org", "f-early", 3_000); // arrived later, sent earlier
    insert("erin@example.org", "e-mid", 5_000);
    store.write((tx) =>
      tx
        .insert(tables.messages)
        .values({
          accountId: "other",
          chatJid: "erin@example.org",
          direction: "in",
          fromJid: "erin@example.org",
          body: "other-acc",
          archiveId: "arch-1",
          deliveryState: "received",
          sentAt: 7_000,
          storedAt: now++,
        })
        .run(),
    );
    const all = listRecentMessages(store, { limit: 3 });
    expect(all.map((m) => [m.accountId, m.body])).toEqual([
      ["acc", "e-mid"],
      ["other", "other-acc"],
      ["acc", "e-late"],
    ]);
    expect(all[1]!.archiveId).toBe("arch-1");
    expect(listRecentMessages(store, { accountId: "acc" }).map((m) => m.body)).toEqual([
      "f-early",
      "e-mid",
      "e-late",
    ]);
    expect(
      listRecentMessages(store, { accountId: "acc", chatJid: "erin@example.org", limit: 1 }).map(
        (m) => m.body,
      ),
    ).toEqual(["e-late"]);
    expect(listRecentMessages(store, { chatJid: "nobody@example.org" })).toEqual([]);
  });
});
