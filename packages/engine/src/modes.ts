// The iOS process model as an API: the main app (`AppController`) and the notification service
// extension (`handlePush`). The share extension only writes outbox rows (shareToOutbox, share.ts).
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { NotificationContent } from "@lichen/schema";
import {
  acquireAsMain,
  addPendingNotification,
  FencedOutError,
  Ipc,
  LockTimeoutError,
  ProcessLock,
  roleOfHolder,
  startAsNse,
  StoreLockTimeoutError,
  tables,
  yieldOnDisconnectAll,
  type Store,
} from "@lichen/store";
import { loadAccountState } from "@lichen/store";
import { and, eq, isNull } from "drizzle-orm";
import type { AppControllerEvents } from "./events.js";
import { DurableSession, SessionLockError, type SessionOptions } from "./session.js";
import { sendDeferredReceipts } from "./protocol.js";
import { sendShareOutbox } from "./share.js";

export const SESSION_LOCK_KEY = "xmpp-session";

const syncWarningId = (accountId: string) => `sync-warning:${accountId}`;

function deleteSyncWarning(tx: Parameters<Parameters<Store["write"]>[0]>[0], accountId: string) {
  return (
    tx
      .delete(tables.pendingNotifications)
      .where(
        and(
          eq(tables.pendingNotifications.id, syncWarningId(accountId)),
          isNull(tables.pendingNotifications.deliveredAt),
        ),
      )
      .run().changes > 0
  );
}

/**
 * A sync finished: withdraw the delayed "could not synchronize" warning of an earlier NSE run
 * if it has not been shown yet.
 */
export function cancelSyncWarning(store: Store, accountId: string): boolean {
  return store.write((tx) => deleteSyncWarning(tx, accountId));
}

/** The warning an NSE shows when it could not finish (also stored, delayed, for the main app). */
function syncWarning(accountId: string, deliverAt?: number): NotificationContent {
  return {
    kind: "alert",
    title: "Could not synchronize",
    body: "Open the app to receive new messages.",
    threadId: "lichen.sync",
    accountId,
    ...(deliverAt !== undefined ? { deliverAt } : {}),
  };
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
export class AppController extends EventEmitter<AppControllerEvents> {
  readonly lock: ProcessLock;
  readonly ipc: Ipc;
  /** Created by the first foreground(); the same object afterwards (listeners attach once). */
  session: DurableSession | null = null;

  /** Whether the app is in the foreground: only then does it reconnect on its own. */
  private wantOnline = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectAttempt = 0;
  private readonly reconnect: ReconnectPolicy | false;
  private readonly backgroundDrainMs: number;

  constructor(
    private readonly store: Store,
    private readonly config: SessionConfig,
    opts: {
      leaseMs?: number;
      reconnect?: ReconnectPolicy | false;
      /**
       * How long background() waits for the server to acknowledge what the app sent (and so to
       * have answered the server's own IQs) before dropping TCP (default 4 s, inside the few
       * seconds iOS gives an app entering the background). What arrives meanwhile is committed
       * and acknowledged, so the next resume (often an NSE's, at 32 kbit/s) does not replay it.
       */
      backgroundDrainMs?: number;
    } = {},
  ) {
    super();
    this.reconnect = opts.reconnect ?? {};
    this.backgroundDrainMs = opts.backgroundDrainMs ?? 4000;
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
    const session = this.session ?? this.createSession();
    this.wantOnline = true;
    this.reconnectAttempt = 0;
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

  /**
   * The one session of this app: it lives across foreground/background cycles and reconnects,
   * so listeners attach once. Announced (event `session`) before its first connect, so listeners
   * see the stanzas a resume replays at once.
   */
  private createSession(): DurableSession {
    const session = new DurableSession({ store: this.store, ...this.config, lock: this.lock });
    this.session = session;
    session.on("connection-lost", () => this.scheduleReconnect(session));
    session.on("replay-reconnect-failed", () => this.scheduleReconnect(session));
    // Frozen past our lease and thawed after another process took the session: the session has
    // stopped and dropped its socket; take the lock back (main-app priority) and resume.
    session.on("session-lost", (info: { reason: string; holder: string | null }) => {
      this.emit("session-lost", info);
      this.scheduleReconnect(session);
    });
    this.emit("session", session);
    return session;
  }

  private onlineAgain(): void {
    this.reconnectAttempt = 0;
    cancelSyncWarning(this.store, this.config.accountId); // the app is open: no warning needed
    this.sendOutbox();
    // Receipts an NSE deferred (NseOptions.receipts) go out now, each once.
    if (this.session) sendDeferredReceipts(this.session);
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
            // Re-acquire before reconnecting: the lock may have been lost while we were frozen,
            // and a renewal that finds another holder forgets our generation.
            if (this.lock.generation === null || !(await this.lock.renewAsync()))
              await acquireAsMain(this.lock, this.ipc, { reason: "main-app-reconnect" });
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
          // Network errors, and the lock or the database still held by another process, pass.
          const permanent = !(
            isTransientConnectError(error) ||
            error instanceof LockTimeoutError ||
            error instanceof StoreLockTimeoutError ||
            error instanceof SessionLockError ||
            // Another process took the lock between our check and the connect: take it back.
            error instanceof FencedOutError
          );
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
    await this.session?.suspend({ drainMs: this.backgroundDrainMs });
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
  /**
   * Runs once the catch-up is complete, before the NSE disconnects (e.g. fetch what a
   * notification needs). The deadline still applies; if the connection drops meanwhile, the NSE
   * resumes, syncs again and runs it again.
   */
  afterSync?: (session: DurableSession) => Promise<void> | void;
  /**
   * XEP-0184 receipts in the NSE: "defer" (default) stores them for the main app, which sends
   * them when it is online; "send" answers at once, as the main app does.
   */
  receipts?: "send" | "defer";
  /** Delay of the "could not synchronize" warning, so a later successful sync can cancel it. */
  syncWarningDelayMs?: number;
  leaseMs?: number;
}

export interface NseResult {
  /**
   * synced: everything the server had was stored; main-running: the main app holds the session
   * (nothing done); other-nse: another NSE holds it (macOS runs NSEs concurrently; nothing
   * done); deadline: could not finish in time (network or database); yielded: the main app took
   * the session over (asked us to yield, or took the lock after ours lapsed).
   */
  outcome: "synced" | "main-running" | "other-nse" | "deadline" | "yielded";
  notifications: NotificationContent[];
  /** How the stream was (last) brought online: resumed, a new stream, or never (null). */
  stream: "resumed" | "new" | null;
  /** Whether a MAM catch-up ran (the stream could not be resumed, or a gap was open). */
  mamCatchup: boolean;
  /** For main-running / other-nse / yielded: the lock holder, e.g. "main:4711-ab12cd34". */
  holder?: string;
}

/**
 * One NSE run: check twice that the main app is not running, resume (or log in + MAM), handle every
 * stanza, produce notification contents, disconnect before the deadline, linger for another push,
 * and yield at once when the main app asks. Every wait for the database is asynchronous and
 * bounded by the deadline: a process stopped inside a transaction cannot make the NSE overrun.
 */
export async function handlePush(opts: NseOptions): Promise<NseResult> {
  const started = Date.now();
  const deadline = started + (opts.deadlineMs ?? 25_000);
  // Database writes after the deadline (warning, lock release) get a short grace, not more.
  const graceDeadline = () => Math.max(Date.now(), deadline) + 1000;
  const lock = new ProcessLock(opts.store, {
    key: SESSION_LOCK_KEY,
    holder: `nse:${process.pid}-${randomUUID().slice(0, 8)}`,
    leaseMs: opts.leaseMs ?? 2000,
  });
  const ipc = new Ipc(opts.store, { role: "nse" });
  ipc.start();
  const accountId = opts.session.accountId;
  const notifications: NotificationContent[] = [];
  let stream: NseResult["stream"] = null;
  let mamCatchup = false;
  let holder: string | undefined;
  const result = (outcome: NseResult["outcome"]): NseResult => ({
    outcome,
    notifications,
    stream,
    mamCatchup,
    ...(holder !== undefined ? { holder } : {}),
  });
  try {
    let start: Awaited<ReturnType<typeof startAsNse>>;
    try {
      start = await startAsNse(lock, { deadlineAt: deadline });
    } catch (err) {
      if (!(err instanceof StoreLockTimeoutError)) throw err;
      // The database is held by a stopped process: nothing can be synced or even recorded.
      notifications.push(syncWarning(accountId));
      return result("deadline");
    }
    if (!start.started) {
      holder = start.holder;
      const byMain = start.reason === "main-running" || roleOfHolder(start.holder) === "main";
      notifications.push({
        kind: "silent",
        reason: byMain ? "main-app-running" : "other-nse-running",
      });
      return result(byMain ? "main-running" : "other-nse");
    }

    let yielded = false;
    let session: DurableSession | null = null;
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
        session = new DurableSession({
          store: opts.store,
          ...opts.session,
          receipts: opts.receipts ?? opts.session.receipts ?? "defer",
          lock,
        });
        session.deadlineAt = deadline;
        session.on("mam-complete", () => (mamCatchup = true));
        session.on("online", (how: "resumed" | "new") => (stream = how));
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
        let storeUnavailable = false;
        session.on("connection-lost", () => (lost = true));
        session.on("store-unavailable", () => (storeUnavailable = true));
        // Our lease lapsed (this process was frozen) and the main app took the session.
        session.on("session-lost", (info: { holder: string | null }) => {
          yielded = true;
          if (info.holder) holder = info.holder;
        });
        // The end of the catch-up is a protocol fact, never a silence: the answer to a ping
        // queued behind the replay (see DurableSession.syncBarrier), and no open MAM gap (its last
        // page ended with <fin complete='true'/>). Re-armed on every (re)connect.
        let barrier = { done: false };
        const armBarrier = () => {
          const b = { done: false };
          barrier = b;
          session!.syncBarrier().then(
            () => (b.done = true),
            () => {}, // the connection went away: the reconnect arms a new one
          );
        };
        /** One connect attempt; false when it failed for a reason worth retrying. */
        const tryConnect = async (): Promise<boolean> => {
          try {
            await session!.connect(Math.max(1000, deadline - Date.now()));
            armBarrier();
            return true;
          } catch (err) {
            if (err instanceof StoreLockTimeoutError) {
              storeUnavailable = true;
              return false;
            }
            if (err instanceof SessionLockError) {
              yielded = true;
              return false;
            }
            // No network at all yet: keep trying until the deadline, as after a drop.
            if (!isTransientConnectError(err)) throw err;
            return false;
          }
        };
        if (!(await tryConnect())) lost = true;
        let retries = 0;
        // Synced: barrier answered and MAM gap closed (then afterSync); or deadline; or yielded.
        for (;;) {
          if (yielded || lock.generation === null) {
            outcome = "yielded";
            break;
          }
          if (storeUnavailable) {
            outcome = "deadline";
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
            if (yielded || storeUnavailable || Date.now() >= deadline) continue;
            if (await tryConnect()) lost = false;
            continue;
          }
          const gapOpen = opts.store.read((tx) => loadAccountState(tx, accountId).mam.gapOpen);
          if (gapOpen) mamCatchup = true;
          if (barrier.done && !gapOpen) {
            if (!opts.afterSync) break;
            let hookDone = false;
            Promise.resolve()
              .then(() => opts.afterSync!(session!))
              .catch(() => {}) // the app's extra work failing does not undo the sync
              .finally(() => (hookDone = true));
            while (!hookDone && !lost && !yielded && Date.now() < deadline)
              await new Promise((r) => setTimeout(r, 25));
            if (hookDone) break;
            if (!lost && !yielded) {
              outcome = "deadline";
              break;
            }
            continue; // lost: resume and sync again; yielded: see above
          }
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
    if (outcome === "yielded" && holder === undefined) {
      const now = lock.current()?.holder;
      if (now && now !== lock.holder) holder = now;
    }
    if (outcome === "deadline") {
      // Could not finish: a delayed warning (a later successful sync cancels it) and a request
      // for background time, both recorded for the main app. If even that cannot be written
      // (the database is held by a stopped process), the warning is this run's notification.
      const deliverAt = Date.now() + (opts.syncWarningDelayMs ?? 60_000);
      try {
        await opts.store.writeAsync(
          (tx) => {
            tx.delete(tables.pendingNotifications)
              .where(eq(tables.pendingNotifications.id, syncWarningId(accountId)))
              .run();
            addPendingNotification(tx, {
              id: syncWarningId(accountId), // at most one per account; a later sync cancels it
              accountId,
              content: syncWarning(accountId, deliverAt),
              deliverAt,
            });
            tx.insert(tables.syncErrors)
              .values({
                accountId,
                code: "background-task-requested",
                message: "NSE deadline reached before the sync finished",
                createdAt: tx.now,
              })
              .run();
          },
          { yieldFirst: false, deadlineAt: graceDeadline() },
        );
      } catch (err) {
        if (!(err instanceof StoreLockTimeoutError)) throw err;
        notifications.push(syncWarning(accountId));
      }
    }
    if (outcome === "synced") {
      await opts.store
        .writeAsync((tx) => deleteSyncWarning(tx, accountId), {
          yieldFirst: false,
          deadlineAt: graceDeadline(),
        })
        .catch((err: unknown) => {
          if (!(err instanceof StoreLockTimeoutError)) throw err;
        });
    }
    // A damaged database (met by any statement of this run) is never reported as an outcome.
    if (opts.store.damage) throw opts.store.damage;
    if (notifications.length === 0)
      notifications.push({
        kind: "silent",
        reason: outcome === "synced" ? "no-new-messages" : outcome,
      });
    return result(outcome);
  } finally {
    if (lock.generation !== null) await lock.releaseAsync({ deadlineAt: graceDeadline() });
    ipc.close();
  }
}
