// The OS-side calls of lifecycle.ts on a real database file, no server: scheduled local
// notifications are shown once when due and never after a cancel, a corrupt row is quarantined
// (never shown), and background-task requests are recorded, read and resolved.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { addPendingNotification, openStore, tables } from "@lichen/store";
import { describe, expect, it } from "vitest";
import {
  cancelSyncWarning,
  ensureAccount,
  pendingBackgroundTaskRequests,
  requestBackgroundTask,
  resolveBackgroundTaskRequests,
  scheduledLocalNotifications,
  takeDueLocalNotifications,
  unsentWork,
} from "../src/index.js";

function freshStore(now: { t: number }) {
  const path = join(mkdtempSync(join(tmpdir(), "lichen-lifecycle-")), "a.db");
  const store = openStore({ path, role: "main", clock: () => now.t });
  ensureAccount(store, { id: "alice", jid: "alice@localhost" });
  return store;
}

const alert = (body: string) =>
  ({
    kind: "alert",
    title: "Could not synchronize",
    body,
    threadId: "t",
    accountId: "alice",
  }) as const;

describe("lifecycle (OS side)", () => {
  it("a scheduled notification is shown once when due, never after a cancel; a corrupt row is quarantined, never shown", () => {
    const now = { t: 1_000_000 };
    const store = freshStore(now);
    try {
      store.write((tx) => {
        addPendingNotification(tx, {
          id: "sync-warning:alice",
          accountId: "alice",
          content: alert("cancelled"),
          deliverAt: now.t + 60_000,
        });
        addPendingNotification(tx, {
          id: "later",
          accountId: "alice",
          content: alert("later"),
          deliverAt: now.t + 60_000,
        });
        addPendingNotification(tx, { id: "now", accountId: "alice", content: alert("now") });
        // Written by a broken process: not a NotificationContent.
        tx.insert(tables.pendingNotifications)
          .values({ id: "bad", accountId: "alice", content: '{"kind":"alert"}', createdAt: tx.now })
          .run();
      });
      expect(
        scheduledLocalNotifications(store)
          .map((n) => n.id)
          .sort(),
      ).toEqual(["bad", "later", "now", "sync-warning:alice"]);
      expect(takeDueLocalNotifications(store).map((n) => n.content)).toEqual([alert("now")]);
      expect(takeDueLocalNotifications(store)).toEqual([]); // shown once
      expect(cancelSyncWarning(store, "alice")).toBe(true); // a sync finished before it was due
      now.t += 60_000;
      expect(takeDueLocalNotifications(store).map((n) => [n.id, n.deliverAt])).toEqual([
        ["later", 1_060_000],
      ]);
      expect(takeDueLocalNotifications(store)).toEqual([]);
      const quarantined = store.sqlite
        .prepare("SELECT count(*) AS n FROM quarantine WHERE table_name = 'pending_notifications'")
        .get() as { n: number };
      expect(quarantined.n).toBe(1);
    } finally {
      store.close();
    }
  });

  it("background-task requests are recorded, read per account and resolved; unsent work counts queued shares", () => {
    const now = { t: 2_000_000 };
    const store = freshStore(now);
    try {
      expect(pendingBackgroundTaskRequests(store)).toEqual([]);
      requestBackgroundTask(store, "alice", "app terminated with unsent work");
      expect(pendingBackgroundTaskRequests(store, "alice")).toEqual([
        expect.objectContaining({ accountId: "alice", reason: "app terminated with unsent work" }),
      ]);
      expect(pendingBackgroundTaskRequests(store, "bob")).toEqual([]);
      expect(resolveBackgroundTaskRequests(store, "alice")).toBe(1);
      expect(pendingBackgroundTaskRequests(store)).toEqual([]);
      expect(unsentWork(store, "alice")).toEqual({ messages: 0, shares: 0 });
    } finally {
      store.close();
    }
  });
});
