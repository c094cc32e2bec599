// The iOS process model as an API: the main app (`AppController`) and the notification service
// extension (`handlePush`). The share extension only writes outbox rows (shareToOutbox, share.ts).
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import type { NotificationContent, PushHandledMessage } from "@lichen/schema";
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
import type { AppControllerEvents } from "./app-events.js";
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
   * Runs once the catch-up is complete (once per push the run handles), before the NSE lingers (e.g. fetch what a
   * notification needs). The deadline still applies; if the connection drops meanwhile, the NSE
   * resumes, syncs again and runs it again.
   */
  afterSync?: (session: DurableSession) => Promise<void> | void;
  /**
   * XEP-0184 receipts in the NSE: "defer" (default) stores them for the main app, which sends
   * them when it is online; "send" answers at once, as the main app does.
   */
  receipts?: "send" | "defer";
  /** A further push was handed to this run (NseRun.push or IPC push-arrived); for logs. */
  onFurtherPush?: (info: { pushId: string; via: "api" | "ipc" }) => void;
  /** Delay of the "could not synchronize" warning, so a later successful sync can cancel it. */
  syncWarningDelayMs?: number;
  leaseMs?: number;
}

export interface NseResult {
  /**
   * synced: everything the server had was stored; main-running: the main app holds the session
   * (nothing done); other-nse: another NSE holds it (macOS runs NSEs concurrently; nothing
   * done); deadline: could not finish in time (network or database); yielded: the main app took
   * the session over (asked us to yield, or took the lock after ours lapsed); handed-over: another
   * NSE held the session (lingering) and synced for this push over its connection — the
   * notifications are the ones it produced for this push, `holder` names it.
   */
  outcome: "synced" | "main-running" | "other-nse" | "deadline" | "yielded" | "handed-over";
  notifications: NotificationContent[];
  /** How the stream was (last) brought online: resumed, a new stream, or never (null). */
  stream: "resumed" | "new" | null;
  /** Whether a MAM catch-up ran (the stream could not be resumed, or a gap was open). */
  mamCatchup: boolean;
  /** For main-running / other-nse / yielded / handed-over: the lock holder, e.g. "main:4711-ab12cd34". */
  holder?: string;
  /**
   * Further pushes this run handled while it lingered (NseRun.push, or IPC push-arrived from the
   * NSE process the OS started for them), each with its own notifications; absent when none.
   */
  further?: NsePushResult[];
}

/** The result for one further push handed to a running NSE. */
export interface NsePushResult {
  pushId: string;
  /** "api": NseRun.push in this process; "ipc": push-arrived from another NSE process. */
  via: "api" | "ipc";
  outcome: "synced" | "deadline" | "yielded";
  notifications: NotificationContent[];
}

/** A running NSE (iOS: the extension process, whose didReceive may be called again). */
export interface NseRun {
  /** The first push's result, once the run ended (after its linger), with `further`. */
  readonly result: Promise<NseResult>;
  /**
   * Hand a further push to this run (iOS ≥ 14 calls didReceive again on the living process). It
   * is synced over the same connection (a new sync-barrier round, no new resume). Resolves with
   * its notifications — the messages stored from its arrival until the next push arrives or the
   * run ends — or null when the run is already ending: then handle the push yourself (a new
   * handlePush).
   */
  push(pushId?: string): Promise<NsePushResult | null>;
}

/** One push of a run: collects the messages stored from its arrival until the next push's. */
interface PushSlot {
  pushId: string;
  via: "first" | "api" | "ipc";
  notifications: NotificationContent[];
  outcome: "synced" | "deadline" | "yielded";
  resolve: (r: NsePushResult | null) => void;
}

/**
 * One NSE run: check twice that the main app is not running, resume (or log in + MAM), handle every
 * stanza, produce notification contents, disconnect before the deadline, linger for another push,
 * and yield at once when the main app asks. Every wait for the database is asynchronous and
 * bounded by the deadline: a process stopped inside a transaction cannot make the NSE overrun.
 */
export async function handlePush(opts: NseOptions): Promise<NseResult> {
  return startNse(opts).result;
}

/**
 * handlePush with a handle: `push()` hands a further push to the running NSE. The run also
 * answers IPC push-arrived (from a second NSE process the OS started for the next push) with
 * push-handled carrying that push's notifications, or `accepted: false` once it is ending.
 */
export function startNse(opts: NseOptions): NseRun {
  const queue: PushSlot[] = [];
  let accepting = true;
  let wake: (() => void) | null = null;
  const enqueue = (pushId: string, via: PushSlot["via"]) =>
    new Promise<NsePushResult | null>((resolve) => {
      if (!accepting) return resolve(null);
      queue.push({ pushId, via, notifications: [], outcome: "synced", resolve });
      opts.onFurtherPush?.({ pushId, via: via === "ipc" ? "ipc" : "api" });
      wake?.();
    });
  const run = {
    queue,
    endAccepting: () => {
      accepting = false;
      for (const s of queue.splice(0)) s.resolve(null);
      wake?.(); // a yield ends the linger at once
    },
    waitForPush: (ms: number) =>
      new Promise<void>((r) => {
        if (queue.length > 0 || ms <= 0) return r();
        const t = setTimeout(done, ms);
        function done() {
          clearTimeout(t);
          wake = null;
          r();
        }
        wake = done;
      }),
    enqueue,
  };
  return {
    result: runNse(opts, run),
    push: (pushId = randomUUID()) => enqueue(pushId, "api"),
  };
}

/**
 * Ask the NSE holding the session (`nseHolder`) to handle this push (IPC push-arrived) and wait
 * for its push-handled answer, which comes when that push is done. Stops waiting when that NSE no
 * longer holds the lock (crashed, or ended without reading our request) or at the deadline: null.
 */
async function handOver(
  store: Store,
  ipc: Ipc,
  nseHolder: string,
  deadline: number,
  accountId: string,
): Promise<PushHandledMessage | null> {
  let answer: PushHandledMessage | null = null;
  const timeoutMs = deadline - Date.now();
  if (timeoutMs <= 0) return null;
  const pushId = randomUUID();
  void ipc
    .request<PushHandledMessage>(
      {
        type: "push-arrived",
        destination: "nse",
        data: { pushId, receivedAt: Date.now(), accountId },
      },
      { timeoutMs },
    )
    .then(
      (m) => (answer = m),
      () => {}, // timed out or closed: null below
    );
  const lockRow = () =>
    store.read((tx) =>
      tx
        .select()
        .from(tables.processLocks)
        .where(eq(tables.processLocks.key, SESSION_LOCK_KEY))
        .get(),
    );
  while (answer === null && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    const row = lockRow();
    if (!row || row.holder !== nseHolder || row.leaseExpiresAt <= store.clock()) {
      // It answers before it releases the lock: read what is waiting before giving up.
      ipc.drain();
      await new Promise((r) => setImmediate(r));
      break;
    }
  }
  if (answer === null) {
    // Not taken: withdraw it, so a later NSE run does not sync for a push this process handles.
    await store
      .writeAsync(
        (tx) =>
          tx.sqlite
            .prepare(
              "DELETE FROM ipc_messages WHERE name = 'push-arrived' AND json_extract(data, '$.pushId') = ?",
            )
            .run(pushId),
        { yieldFirst: false, deadlineAt: Date.now() + 1000 },
      )
      .catch(() => {}); // it expires with its ttl anyway
  }
  return answer;
}

interface RunControl {
  queue: PushSlot[];
  endAccepting(): void;
  /** Resolves when a push is queued, or after `ms`. */
  waitForPush(ms: number): Promise<void>;
  enqueue(pushId: string, via: PushSlot["via"]): Promise<NsePushResult | null>;
}

async function runNse(opts: NseOptions, run: RunControl): Promise<NseResult> {
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
  // The first push's slot; further pushes get their own (see PushSlot).
  const first: PushSlot = {
    pushId: "first",
    via: "first",
    notifications: [],
    outcome: "synced",
    resolve: () => {},
  };
  let current = first;
  const further: NsePushResult[] = [];
  const notifications = first.notifications;
  let stream: NseResult["stream"] = null;
  let mamCatchup = false;
  let holder: string | undefined;
  const result = (outcome: NseResult["outcome"]): NseResult => ({
    outcome,
    notifications,
    stream,
    mamCatchup,
    ...(holder !== undefined ? { holder } : {}),
    ...(further.length > 0 ? { further } : {}),
  });
  /** Close a push: its notifications are final (a silent content when there are none). */
  const settle = (slot: PushSlot) => {
    if (slot === first) return;
    if (slot.notifications.length === 0)
      slot.notifications.push({
        kind: "silent",
        reason: slot.outcome === "synced" ? "no-new-messages" : slot.outcome,
      });
    const r: NsePushResult = {
      pushId: slot.pushId,
      via: slot.via === "ipc" ? "ipc" : "api",
      outcome: slot.outcome,
      notifications: slot.notifications,
    };
    further.push(r);
    slot.resolve(r);
  };
  // A second NSE process the OS started for the next push hands it to us while we run.
  const stopPush = ipc.on("push-arrived", async (msg) => {
    // Only a run that holds the session takes a push (another waiting NSE may read this row).
    const r = lock.generation !== null ? await run.enqueue(msg.data.pushId, "ipc") : null;
    ipc.respond(msg, {
      type: "push-handled",
      data: r
        ? {
            pushId: r.pushId,
            accepted: true,
            outcome: r.outcome,
            notifications: r.notifications,
            handledBy: lock.holder,
          }
        : { pushId: msg.data.pushId, accepted: false, handledBy: lock.holder },
    });
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
    while (!start.started) {
      holder = start.holder;
      // Only a "main:" holder is the main app. Another NSE holding the lock is not (macOS runs
      // NSEs concurrently; on iOS the previous one may still linger): hand the push to it.
      const byMain = start.reason === "main-running" && roleOfHolder(start.holder) === "main";
      if (!byMain && roleOfHolder(start.holder) === "nse") {
        const answer = await handOver(opts.store, ipc, start.holder, deadline, accountId);
        if (answer?.data.accepted) {
          holder = answer.data.handledBy;
          notifications.push(...(answer.data.notifications ?? []));
          return result("handed-over");
        }
        // It was ending (or gone): the lock is free or about to be; take it ourselves.
        if (Date.now() < deadline) {
          try {
            start = await startAsNse(lock, { deadlineAt: deadline });
          } catch (err) {
            if (!(err instanceof StoreLockTimeoutError)) throw err;
            notifications.push(syncWarning(accountId));
            return result("deadline");
          }
          continue;
        }
      }
      notifications.push({
        kind: "silent",
        reason: byMain ? "main-app-running" : "other-nse-running",
      });
      return result(byMain ? "main-running" : "other-nse");
    }

    let yielded = false;
    const session = new DurableSession({
      store: opts.store,
      ...opts.session,
      receipts: opts.receipts ?? opts.session.receipts ?? "defer",
      lock,
    });
    const stopYield = yieldOnDisconnectAll(lock, ipc, async () => {
      yielded = true;
      run.endAccepting();
      await session.suspend();
      return { handledStanzas: 0 };
    });
    let outcome: NseResult["outcome"] = "synced";
    try {
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
          // The latest push that arrived shows it (one waiting for its round included), so a
          // push never shows a message stored before it arrived and none is shown twice.
          (run.queue.at(-1) ?? current).notifications.push({
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
      // page ended with <fin complete='true'/>). Re-armed on every (re)connect and every push.
      let barrier = { done: false };
      const armBarrier = () => {
        const b = { done: false };
        barrier = b;
        session.syncBarrier().then(
          () => (b.done = true),
          () => {}, // the connection went away: the reconnect arms a new one
        );
      };
      /** One connect attempt; false when it failed for a reason worth retrying. */
      const tryConnect = async (): Promise<boolean> => {
        try {
          await session.connect(Math.max(1000, deadline - Date.now()));
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
      for (;;) {
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
              .then(() => opts.afterSync!(session))
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
        current.outcome = outcome === "synced" || outcome === "deadline" ? outcome : "yielded";
        if (outcome !== "synced") break;
        // Linger for a further push, connected (Monal keeps the connection): the next push's
        // round is one more sync barrier on the same stream, no new TCP connection, no resume.
        const lingerEnd = Math.min(deadline, Date.now() + (opts.lingerMs ?? 1500));
        while (run.queue.length === 0 && !yielded && Date.now() < lingerEnd)
          await run.waitForPush(Math.min(100, lingerEnd - Date.now()));
        const next = run.queue.shift();
        if (!next || yielded) {
          if (next) run.queue.unshift(next);
          break;
        }
        settle(current);
        current = next;
        if (!lost) armBarrier();
      }
      run.endAccepting();
      // Suspend at the end of the linger (or at the deadline): the stream stays resumable.
      if (!yielded) await session.suspend();
      settle(current);
    } finally {
      run.endAccepting();
      stopYield();
    }
    if ((outcome === "yielded" || first.outcome === "yielded") && holder === undefined) {
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
    // The first push's own outcome: a later push's round failing does not undo its sync.
    if (notifications.length === 0)
      notifications.push({
        kind: "silent",
        reason: first.outcome === "synced" ? "no-new-messages" : first.outcome,
      });
    return result(first.outcome);
  } finally {
    run.endAccepting();
    stopPush();
    if (lock.generation !== null) await lock.releaseAsync({ deadlineAt: graceDeadline() });
    // Answers to push-arrived (queued by the handler above) are written before the IPC closes.
    ipc.close();
  }
}
