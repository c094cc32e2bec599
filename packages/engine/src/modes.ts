// The iOS process model as an API: the main app (`AppController`) and the notification service
// extension (`handlePush`). The share extension only writes outbox rows (shareToOutbox, share.ts).
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { NotificationContent } from "@lichen/schema";
import {
  acquireAsMain,
  addPendingNotification,
  Ipc,
  ProcessLock,
  startAsNse,
  tables,
  yieldOnDisconnectAll,
  type Store,
} from "@lichen/store";
import { loadAccountState } from "@lichen/store";
import { and, eq, isNull } from "drizzle-orm";
import { DurableSession, type SessionOptions } from "./session.js";
import { sendShareOutbox } from "./share.js";

export const SESSION_LOCK_KEY = "xmpp-session";

const syncWarningId = (accountId: string) => `sync-warning:${accountId}`;

/**
 * A sync finished: withdraw the delayed "could not synchronize" warning of an earlier NSE run
 * if it has not been shown yet.
 */
export function cancelSyncWarning(store: Store, accountId: string): boolean {
  return store.write(
    (tx) =>
      tx
        .delete(tables.pendingNotifications)
        .where(
          and(
            eq(tables.pendingNotifications.id, syncWarningId(accountId)),
            isNull(tables.pendingNotifications.deliveredAt),
          ),
        )
        .run().changes > 0,
  );
}

type SessionConfig = Omit<SessionOptions, "store">;

/** Main app: long-lived; takes the session from the NSE (priority) and gives it up before a freeze. */
export class AppController extends EventEmitter {
  readonly lock: ProcessLock;
  readonly ipc: Ipc;
  session: DurableSession | null = null;

  constructor(
    private readonly store: Store,
    private readonly config: SessionConfig,
    opts: { leaseMs?: number } = {},
  ) {
    super();
    this.lock = new ProcessLock(store, {
      key: SESSION_LOCK_KEY,
      holder: `main:${process.pid}-${randomUUID().slice(0, 8)}`,
      leaseMs: opts.leaseMs ?? 2000,
    });
    this.ipc = new Ipc(store, { role: "main" });
    // The share extension wrote outbox rows: send them now if we hold the session.
    this.ipc.on("outbox-changed", () => {
      if (this.session?.online) this.sendOutbox();
    });
    this.ipc.start();
  }

  /** Send what the share extension queued (also done on every foreground). */
  sendOutbox(): number {
    if (!this.session) return 0;
    return sendShareOutbox(this.store, this.session).length;
  }

  /** Take the lock (asking an NSE to yield), then resume or log in. */
  async foreground(): Promise<"resumed" | "new"> {
    const got = await acquireAsMain(this.lock, this.ipc, { reason: "main-app-foreground" });
    void got;
    this.session = new DurableSession({ store: this.store, ...this.config });
    // Before connecting, so listeners see the stanzas a resume replays at once.
    this.emit("session", this.session);
    const how = await this.session.connect();
    cancelSyncWarning(this.store, this.config.accountId); // the app is open: no warning needed
    this.sendOutbox();
    return how;
  }

  /** Finish in-flight work, drop TCP without closing the stream (resumable), release the lock. */
  async background(): Promise<void> {
    await this.session?.suspend();
    this.session = null;
    this.lock.release();
  }

  async close(): Promise<void> {
    await this.background();
    this.ipc.close();
  }
}

export interface NseOptions {
  store: Store;
  session: SessionConfig;
  /** Disconnect this long after start at the latest (default 25 s of iOS's 30). */
  deadlineMs?: number;
  /** After syncing, wait this long for another push before exiting (default 1.5 s). */
  lingerMs?: number;
  /** Synced = no stanza for this long and no MAM catch-up open (default 400 ms). */
  quietMs?: number;
  /** Delay of the "could not synchronize" warning, so a later successful sync can cancel it. */
  syncWarningDelayMs?: number;
  leaseMs?: number;
}

export interface NseResult {
  outcome: "synced" | "main-running" | "deadline" | "yielded";
  notifications: NotificationContent[];
}

/**
 * One NSE run: check twice that the main app is not running, resume (or log in + MAM), handle every
 * stanza, produce notification contents, disconnect before the deadline, linger for another push,
 * and yield at once when the main app asks.
 */
export async function handlePush(opts: NseOptions): Promise<NseResult> {
  const started = Date.now();
  const deadline = started + (opts.deadlineMs ?? 25_000);
  const lock = new ProcessLock(opts.store, {
    key: SESSION_LOCK_KEY,
    holder: `nse:${process.pid}-${randomUUID().slice(0, 8)}`,
    leaseMs: opts.leaseMs ?? 2000,
  });
  const ipc = new Ipc(opts.store, { role: "nse" });
  ipc.start();
  const accountId = opts.session.accountId;
  try {
    const start = await startAsNse(lock);
    if (!start.started)
      return {
        outcome: "main-running",
        notifications: [{ kind: "silent", reason: "main-app-running" }],
      };

    const notifications: NotificationContent[] = [];
    let yielded = false;
    let session: DurableSession | null = null;
    let lastActivity = Date.now();
    const stopYield = yieldOnDisconnectAll(lock, ipc, async () => {
      yielded = true;
      await session?.suspend();
      return { handledStanzas: 0 };
    });
    let pushAgain = false;
    const stopPush = ipc.on("push-arrived", () => {
      pushAgain = true;
    });
    let outcome: NseResult["outcome"] = "synced";
    try {
      do {
        pushAgain = false;
        session = new DurableSession({ store: opts.store, ...opts.session });
        session.on("stanza", () => (lastActivity = Date.now()));
        session.on(
          "message-stored",
          (m: {
            chatJid: string;
            body: string;
            direction: string;
            originId: string | null;
            stanzaId: string | null;
          }) => {
            if (m.direction !== "in") return;
            notifications.push({
              kind: "alert",
              title: m.chatJid,
              body: m.body,
              threadId: m.chatJid,
              accountId,
              ...(m.stanzaId || m.originId ? { messageId: (m.stanzaId ?? m.originId)! } : {}),
            });
          },
        );
        await session.connect(Math.max(1000, deadline - Date.now()));
        lastActivity = Date.now();
        // Synced: MAM gap closed and quiet for quietMs; or deadline; or yielded.
        for (;;) {
          if (yielded) {
            outcome = "yielded";
            break;
          }
          const gapOpen = opts.store.read((tx) => loadAccountState(tx, accountId).mam.gapOpen);
          if (!gapOpen && Date.now() - lastActivity >= (opts.quietMs ?? 400)) break;
          if (Date.now() >= deadline) {
            outcome = "deadline";
            break;
          }
          await new Promise((r) => setTimeout(r, 50));
        }
        if (!yielded) await session.suspend();
        if (outcome !== "synced") break;
        // Linger for a further serialized push.
        const lingerEnd = Date.now() + (opts.lingerMs ?? 1500);
        while (!pushAgain && !yielded && Date.now() < lingerEnd)
          await new Promise((r) => setTimeout(r, 25));
      } while (pushAgain && !yielded && Date.now() < deadline);
    } finally {
      stopYield();
      stopPush();
    }
    if (outcome === "deadline") {
      // Could not finish: a delayed warning (a later successful sync cancels it) and a request
      // for background time, both recorded for the main app.
      opts.store.write((tx) => {
        tx.delete(tables.pendingNotifications)
          .where(eq(tables.pendingNotifications.id, syncWarningId(accountId)))
          .run();
        addPendingNotification(tx, {
          id: syncWarningId(accountId), // at most one per account; a later sync cancels it
          accountId,
          content: {
            kind: "alert",
            title: "Could not synchronize",
            body: "Open the app to receive new messages.",
            threadId: "lichen.sync",
            accountId,
            deliverAt: Date.now() + (opts.syncWarningDelayMs ?? 60_000),
          },
          deliverAt: Date.now() + (opts.syncWarningDelayMs ?? 60_000),
        });
        tx.insert(tables.syncErrors)
          .values({
            accountId,
            code: "background-task-requested",
            message: "NSE deadline reached before the sync finished",
            createdAt: tx.now,
          })
          .run();
      });
    }
    if (outcome === "synced") cancelSyncWarning(opts.store, accountId);
    if (notifications.length === 0)
      notifications.push({
        kind: "silent",
        reason: outcome === "synced" ? "no-new-messages" : outcome,
      });
    return { outcome, notifications };
  } finally {
    if (lock.generation !== null) lock.release();
    ipc.close();
  }
}
