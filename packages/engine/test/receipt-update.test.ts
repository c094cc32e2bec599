// XEP-0184 receipts update one outgoing row, found by its origin-id, and only when the recipient
// sends the receipt. SQLite preferred the chat's time index for this update (both are two-column
// equality prefixes) and scanned the whole chat per receipt; the plan is checked here.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore, tables, type Store } from "@lichen/store";
import { and, eq } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ensureAccount } from "../src/index.js";
import { markReceivedByRecipient } from "../src/messages.js";

describe("markReceivedByRecipient", () => {
  let dir: string;
  let store: Store;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "lichen-receipt-update-"));
    store = openStore({ path: join(dir, "r.db"), role: "main" });
    ensureAccount(store, { id: "alice", jid: "alice@example.org", resource: "phone" });
    store.write((tx) => {
      for (let i = 0; i < 50; i++)
        tx.insert(tables.messages)
          .values({
            accountId: "alice",
            chatJid: "bob@example.org",
            direction: "out",
            fromJid: "alice@example.org",
            toJid: "bob@example.org",
            originId: `o-${i}`,
            body: `m${i}`,
            deliveryState: "sent",
            sentAt: i,
            storedAt: i,
          })
          .run();
    });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const state = (originId: string) =>
    store.read(
      (tx) =>
        tx
          .select({ s: tables.messages.deliveryState })
          .from(tables.messages)
          .where(
            and(eq(tables.messages.accountId, "alice"), eq(tables.messages.originId, originId)),
          )
          .get()?.s,
    );

  it("uses the origin-id index, not a scan of the chat", () => {
    const plan = store.read((tx) => {
      const q = markReceivedByRecipient(tx, "alice", "o-7", "bob@example.org").toSQL();
      return (
        store.sqlite.prepare(`EXPLAIN QUERY PLAN ${q.sql}`).all(...q.params) as {
          detail: string;
        }[]
      ).map((r) => r.detail);
    });
    expect(plan.join("; ")).toMatch(/USING INDEX messages_origin_id/);
    expect(plan.join("; ")).not.toMatch(/messages_chat_time|messages_chat\b/);
  });

  it("marks the recipient's message received; a stranger's receipt for the same id changes nothing", () => {
    store.write((tx) => markReceivedByRecipient(tx, "alice", "o-7", "mallory@example.org").run());
    expect(state("o-7")).toBe("sent");
    store.write((tx) => markReceivedByRecipient(tx, "alice", "o-7", "bob@example.org").run());
    expect(state("o-7")).toBe("received");
    expect(state("o-8")).toBe("sent");
  });
});
