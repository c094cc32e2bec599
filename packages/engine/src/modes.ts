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

/** How the main app gets back online after the network (or the server) dropped the connection. */
export interface ReconnectPolicy {
  /** First retry after this long (default 1 s); doubled per failed attempt. */
  initialDelayMs?: number;
  /** Never wait longer than this between attempts (default 60 s). */
  maxDelayMs?: number;
  /** Give one attempt this long to get online (default 20 s). */
  connectTimeoutMs?: number;
  /** [0, 1) source for the jitter (default Math.random); inject a seeded one in tests. */
  random?: () => number;
}

const TRANSIENT_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "ENOTFOUND", // no DNS while offline
  "EAI_AGAIN",
]);

/**
 * Whether a failed connect is worth retrying: the network or the server was away. A refused
 * password, a bad certificate or a refused plaintext login will fail the same way again.
 */
export function isTransientConnectError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code;
  if (code && TRANSIENT_CODES.has(code)) return true;
  return /^session not online after|^the connection closed before the session was online/.test(
    err.message,
  );
}

/**
 * Delay before retry `attempt` (0-based): exponential, capped, with "equal jitter" (half fixed,
 * half random) so many clients that lost the same server do not come back in lockstep.
 */
export function reconnectDelay(attempt: number, policy: ReconnectPolicy = {}): number {
  const initial = policy.initialDelayMs ?? 1000;
  const max = policy.maxDelayMs ?? 60_000;
  const base = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  const r = (policy.random ?? Math.random)();
  return Math.round(base / 2 + (base / 2) * r);
}

/** Main app: long-lived; takes the session from the NSE (priority) and gives it up before a freeze. */
export class AppController extends EventEmitter {
  readonly lock: ProcessLock;
  readonly ipc: Ipc;
  session: DurableSession | null = null;

  /** Whether the app is in the foreground: only then does it reconnect on its own. */
  private wantOnline = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectAttempt = 0;
  private readonly reconnect: ReconnectPolicy | false;

  constructor(
    private readonly store: Store,
    private readonly config: SessionConfig,
    opts: { leaseMs?: number; reconnect?: ReconnectPolicy | false } = {},
  ) {
    super();
    this.reconnect = opts.reconnect ?? {};
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

  /**
   * Take the lock (asking an NSE to yield), then resume or log in. If that first connect fails it
   * rejects, and (unless `reconnect: false`) the controller keeps trying with back-off, as it does
   * whenever the connection is lost while in the foreground: events `reconnecting`
   * ({ attempt, delayMs }), `reconnect-failed` ({ attempt, error, permanent }), `reconnected`
   * ("resumed" | "new"). A permanent failure (refused password, bad certificate) ends the retries.
   */
  async foreground(): Promise<"resumed" | "new"> {
    const got = await acquireAsMain(this.lock, this.ipc, { reason: "main-app-foreground" });
    void got;
    const session = new DurableSession({ store: this.store, ...this.config });
    this.session = session;
    this.wantOnline = true;
    this.reconnectAttempt = 0;
    session.on("connection-lost", () => this.scheduleReconnect(session));
    session.on("replay-reconnect-failed", () => this.scheduleReconnect(session));
    // Before connecting, so listeners see the stanzas a resume replays at once.
    this.emit("session", session);
    let how: "resumed" | "new";
    try {
      how = await session.connect(this.reconnect ? this.reconnect.connectTimeoutMs : undefined);
    } catch (err) {
      if (isTransientConnectError(err)) this.scheduleReconnect(session);
      throw err;
    }
    this.onlineAgain();
    return how;
  }

  private onlineAgain(): void {
    this.reconnectAttempt = 0;
    cancelSyncWarning(this.store, this.config.accountId); // the app is open: no warning needed
    this.sendOutbox();
  }

  private scheduleReconnect(session: DurableSession): void {
    if (!this.reconnect || !this.wantOnline || this.session !== session) return;
    if (this.reconnectTimer) return; // one attempt at a time
    const policy = this.reconnect;
    const delayMs = reconnectDelay(this.reconnectAttempt, policy);
    const attempt = ++this.reconnectAttempt;
    this.emit("reconnecting", { attempt, delayMs });
    // The timer handle stays set until the attempt settles, so a connection-lost emitted by the
    // attempt itself does not start a second one.
    this.reconnectTimer = setTimeout(() => {
      void (async () => {
        let error: unknown;
        let failed = false;
        try {
          if (this.wantOnline && this.session === session && !session.online) {
            const how = await session.connect(policy.connectTimeoutMs ?? 20_000);
            if (this.session === session) {
              this.onlineAgain();
              this.emit("reconnected", how);
            }
          }
        } catch (err) {
          failed = true;
          error = err;
        }
        this.reconnectTimer = null;
        if (failed) {
          const permanent = !isTransientConnectError(error);
          this.emit("reconnect-failed", { attempt, error, permanent });
          // A refused password (or certificate) fails the same way again: stop, keep the error.
          if (!permanent) this.scheduleReconnect(session);
        }
      })();
    }, delayMs);
  }

  private stopReconnecting(): void {
    this.wantOnline = false;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }

  /** Finish in-flight work, drop TCP without closing the stream (resumable), release the lock. */
  async background(): Promise<void> {
    this.stopReconnecting();
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
        let lost = false;
        session.on("connection-lost", () => (lost = true));
        try {
          await session.connect(Math.max(1000, deadline - Date.now()));
        } catch (err) {
          // No network at all yet: keep trying until the deadline, as after a drop.
          if (!isTransientConnectError(err)) throw err;
          lost = true;
        }
        lastActivity = Date.now();
        let retries = 0;
        // Synced: MAM gap closed and quiet for quietMs; or deadline; or yielded.
        for (;;) {
          if (yielded) {
            outcome = "yielded";
            break;
          }
          if (lost) {
            // The network dropped mid-sync: quiet means nothing then. Resume while time remains.
            if (Date.now() >= deadline) {
              outcome = "deadline";
              break;
            }
            const wait = reconnectDelay(retries++, { initialDelayMs: 250, maxDelayMs: 2000 });
            await new Promise((r) => setTimeout(r, Math.min(wait, deadline - Date.now())));
            if (yielded || Date.now() >= deadline) continue;
            try {
              await session.connect(Math.max(1000, deadline - Date.now()));
              lost = false;
              lastActivity = Date.now();
            } catch (err) {
              if (!isTransientConnectError(err)) throw err;
              // still down: next round (or the deadline)
            }
            continue;
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
