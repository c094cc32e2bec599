// The one notification of a push (no servers): newest message shown, the rest summarized,
// bounded whatever the flood.
import { describe, expect, it } from "vitest";
import { MAX_NOTIFICATION_BODY, MAX_SUMMARY_CHATS, PushNotificationBuilder } from "../src/index.js";

const msg = (chatJid: string, body: string, accountId = "alice@localhost", messageId?: string) => ({
  accountId,
  chatJid,
  body,
  ...(messageId ? { messageId } : {}),
});

describe("PushNotificationBuilder", () => {
  it("nothing stored: a silent content with the reason", () => {
    const b = new PushNotificationBuilder();
    expect(b.content("no-new-messages")).toEqual({ kind: "silent", reason: "no-new-messages" });
    expect(b.summary()).toEqual({ messages: 0, chats: [], moreChats: 0 });
  });

  it("one message: shown as is, without a summary line", () => {
    const b = new PushNotificationBuilder();
    b.add(msg("bob@localhost", "hi", "alice@localhost", "id-1"));
    expect(b.content("x")).toEqual({
      kind: "alert",
      title: "bob@localhost",
      body: "hi",
      threadId: "bob@localhost",
      accountId: "alice@localhost",
      messageId: "id-1",
      count: 1,
    });
  });

  it("shows the newest message; the others as '+N more' and 'M in K other chats'", () => {
    const b = new PushNotificationBuilder();
    b.add(msg("bob@localhost", "b1"));
    b.add(msg("carol@localhost", "c1"));
    b.add(msg("bob@localhost", "b2"));
    b.add(msg("bob@localhost", "b3", "dave@localhost")); // same contact, other account: other chat
    b.add(msg("bob@localhost", "b4"));
    expect(b.alert()).toMatchObject({
      title: "bob@localhost",
      body: "b4",
      threadId: "bob@localhost",
      accountId: "alice@localhost",
      subtitle: "+2 more · 2 in 2 other chats",
      count: 5,
    });
    const s = b.summary();
    expect(s.messages).toBe(5);
    // The chat of the newest message first.
    expect(s.chats.map((c) => [c.accountId, c.chatJid, c.count, c.lastBody])).toEqual([
      ["alice@localhost", "bob@localhost", 3, "b4"],
      ["dave@localhost", "bob@localhost", 1, "b3"],
      ["alice@localhost", "carol@localhost", 1, "c1"],
    ]);
  });

  it("rooms caught up concurrently: the newest by sent time is shown, not the last to arrive", () => {
    const b = new PushNotificationBuilder();
    const room = (chatJid: string, body: string, sentAt: number) => ({
      ...msg(chatJid, body),
      roomNick: "bob",
      mentioned: body.includes("alice"),
      sentAt,
    });
    // Room a's catch-up ends first; room b's older messages arrive after it.
    b.add(room("a@muc", "a-missed", 1000));
    b.add(room("a@muc", "alice: there?", 3000));
    b.add(room("b@muc", "b-missed", 2000));
    b.add(room("b@muc", "b-older", 1500)); // out of order in its own chat too
    expect(b.alert()).toMatchObject({
      title: "a@muc",
      body: "bob: alice: there?",
      mention: true,
      subtitle: "+1 more · 2 in 1 other chat",
      count: 4,
    });
    expect(b.summary().chats.map((c) => [c.chatJid, c.count, c.lastBody])).toEqual([
      ["a@muc", 2, "bob: alice: there?"],
      ["b@muc", 2, "bob: b-missed"],
    ]);
    // Same stamp (whole-second precision): the later arrival wins; undated: arrival order.
    b.add(room("b@muc", "b-tie", 3000));
    expect(b.alert()).toMatchObject({ title: "b@muc", body: "bob: b-tie" });
    b.add(msg("carol@localhost", "undated"));
    expect(b.alert()).toMatchObject({ title: "carol@localhost", body: "undated" });
  });

  it("a flood stays bounded: capped chats, cut bodies, small JSON", () => {
    const b = new PushNotificationBuilder();
    const long = "x".repeat(10_000);
    for (let i = 0; i < 20_000; i++)
      b.add(msg(`c${i % 50}@localhost`, i === 19_999 ? long : `m${i}`));
    const s = b.summary();
    expect(s.messages).toBe(20_000);
    expect(s.chats).toHaveLength(MAX_SUMMARY_CHATS);
    expect(s.moreChats).toBe(50 - MAX_SUMMARY_CHATS);
    const alert = b.alert()!;
    expect(alert.body).toHaveLength(MAX_NOTIFICATION_BODY);
    expect(alert.body.endsWith("…")).toBe(true);
    expect(alert.subtitle).toBe("+399 more · 19600 in 49 other chats");
    expect(JSON.stringify({ alert, s }).length).toBeLessThan(4096);
  });
});
