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
import { and, eq, isNull } from "drizzle-orm";
import type { AppControllerEvents } from "./app-events.js";
import { DurableSession, SessionLockError, type SessionOptions } from "./session.js";
import { sendDeferredReceipts } from "./protocol.js";
import { sendShareOutbox } from "./share.js";
import { MediaTransfers, type MediaTransferOptions } from "./media/transfers.js";
import { PushNotificationBuilder, type PushSummary } from "./notifications.js";
import { AccountSync, type AccountSyncResult, type NseRunShared } from "./nse-sync.js";
import { isTransientConnectError, reconnectDelay, type ReconnectPolicy } from "./reconnect.js";

export { isTransientConnectError, reconnectDelay, type ReconnectPolicy };

/**
 * The process lock: one per database (per process role), not one per account. Why: the OS
 * freezes, wakes and kills processes, not accounts; the main app drives every account and an NSE
 * syncs every account for one push (Monal's MLProcessLock is per process too). Per-account locks
 * would let the main app and an NSE each own some accounts, turn the NSE's yield into one
 * handshake per account, and make "is the main app running?" a question with several answers.
 * Every session of a process shares its one ProcessLock, so fencing (the lock generation checked
 * on every session write) covers all accounts at once. IPC stays per process as well; messages
 * that concern one account say so in their data (accountId).
 */
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
      /**
       * The process's lock and IPC, when several accounts are driven (MultiAccountApp): one lock
       * per process (see SESSION_LOCK_KEY). Its owner starts, releases and closes them.
       */
      shared?: { lock: ProcessLock; ipc: Ipc };
      /**
       * Media (XEP-0363): the shared container's attachment directory (default
       * `<db>.attachments`), which chats send aesgcm:// files (XEP-0454), CAs for https, how a
       * PUT broken while the app runs is retried (`retry`: back-off, bounded, timers injectable).
       */
      media?: {
        attachmentDir?: string;
        encrypt?: (to: string) => boolean;
        ca?: MediaTransferOptions["ca"];
        retry?: MediaTransferOptions["retry"];
      };
    } = {},
  ) {
    super();
    this.reconnect = opts.reconnect ?? {};
    this.backgroundDrainMs = opts.backgroundDrainMs ?? 4000;
    this.mediaOptions = {
      attachmentDir: opts.media?.attachmentDir ?? `${store.path}.attachments`,
      ...(opts.media?.ca ? { ca: opts.media.ca } : {}),
      ...(opts.media?.retry ? { retry: opts.media.retry } : {}),
    };
    this.encryptMedia = opts.media?.encrypt;
    this.ownsLock = !opts.shared;
    this.lock =
      opts.shared?.lock ??
      new ProcessLock(store, {
        key: SESSION_LOCK_KEY,
        holder: `main:${process.pid}-${randomUUID().slice(0, 8)}`,
        leaseMs: opts.leaseMs ?? 2000,
      });
    this.ipc = opts.shared?.ipc ?? new Ipc(store, { role: "main" });
    // The share extension wrote outbox rows: send them now if we hold the session.
    this.ipc.on("outbox-changed", () => {
      if (this.session?.online) this.sendOutbox();
    });
    if (this.ownsLock) this.ipc.start();
  }

  /** Uploads and their PUTs; created with the session. */
  media: MediaTransfers | null = null;
  private readonly mediaOptions: MediaTransferOptions;
  private readonly encryptMedia: ((to: string) => boolean) | undefined;

  /** Whether this controller created (and so releases and closes) its lock and IPC. */
  private readonly ownsLock: boolean;

  /** Send what the share extension queued (also done on every foreground). */
  sendOutbox(): number {
    if (!this.session) return 0;
    return sendShareOutbox(this.store, this.session, {
      ...(this.media ? { media: this.media } : {}),
      attachmentDir: this.mediaOptions.attachmentDir,
      ...(this.encryptMedia ? { encrypt: this.encryptMedia } : {}),
      // An item to an encrypted chat went out encrypted (or failed for good): the rest follows.
      onEncrypted: () => {
        if (this.session?.online) this.sendOutbox();
      },
    }).length;
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
    const media = new MediaTransfers(session, this.mediaOptions);
    this.media = media;
    // An upload finished (its message queued) or failed: the items behind it go now.
    media.on("uploaded", () => this.sendOutbox());
    session.on("attachment-changed", ({ state }) => {
      if (state === "failed") this.sendOutbox();
    });
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

  /**
   * Finish in-flight work, drop TCP without closing the stream (resumable), release the lock.
   * `drainMs` overrides the constructor's backgroundDrainMs (terminateApp: the swipe budget).
   */
  async background(opts: { drainMs?: number } = {}): Promise<void> {
    this.stopReconnecting();
    this.media?.stop(); // upload retries wait for the next foreground
    await this.session?.suspend({ drainMs: opts.drainMs ?? this.backgroundDrainMs });
    if (this.ownsLock) this.lock.release();
  }

  async close(): Promise<void> {
    await this.background();
    if (this.ownsLock) this.ipc.close();
  }
}

export interface NseOptions {
  store: Store;
  /** The account to sync (one-account apps); give `accounts` for several. */
  session?: SessionConfig;
  /**
   * Every account to sync: one push syncs all of them, concurrently, under one deadline and one
   * process lock (several accounts share one database; see SESSION_LOCK_KEY). With `session`
   * too, that one comes first.
   */
  accounts?: readonly SessionConfig[];
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
  /**
   * The first push's one notification is final as soon as its sync round is done (the messages
   * it brought are stored), before the run lingers: iOS's NSE calls its contentHandler here and
   * the process lives on for further pushes. Called only when that round synced (pushId
   * "first"); otherwise (deadline, yield) the content comes with the result. With this set,
   * further pushes are answered the same way (NseRun.push resolves, an IPC hand-over is
   * answered, when their round is done), and messages stored later with no push of their own
   * (while the run lingers connected, the server pushes nothing) go to NseResult.late.
   */
  onNotificationReady?: (ready: NotificationReady) => void;
}

/** A push's final notification, handed over before the run ends (NseOptions.onNotificationReady). */
export interface NotificationReady {
  pushId: string;
  outcome: "synced";
  /** Exactly one content, as NseResult.notifications. */
  notifications: NotificationContent[];
  summary: PushSummary;
  /** How the (first) account's stream was brought online. */
  stream: "resumed" | "new" | null;
  mamCatchup: boolean;
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
  /**
   * Exactly one content: the push's own notification (an NSE can only modify that one). An
   * alert for the newest message with a summary subtitle and `count`, or a silent content
   * saying why nothing is shown. See PushNotificationBuilder.
   */
  notifications: NotificationContent[];
  /** What the push brought, bounded (at most MAX_SUMMARY_CHATS chats listed). */
  summary: PushSummary;
  /**
   * Each account the run synced, in the order given: its outcome ("failed": refused password,
   * bad certificate; "deadline": unreachable or not finished), stream and messages. `outcome`
   * above is "synced" when every account that can be synced was (failed ones are only listed
   * here), "deadline" when any did not finish. Empty when the run did not sync (main-running,
   * other-nse, handed-over).
   */
  accounts: AccountSyncResult[];
  /** How the (first) account's stream was (last) brought online: resumed, new, or never (null). */
  stream: "resumed" | "new" | null;
  /** Whether a MAM catch-up ran for any account (a stream could not be resumed, or a gap was open). */
  mamCatchup: boolean;
  /** For main-running / other-nse / yielded / handed-over: the lock holder, e.g. "main:4711-ab12cd34". */
  holder?: string;
  /**
   * Further pushes this run handled while it lingered (NseRun.push, or IPC push-arrived from the
   * NSE process the OS started for them), each with its own notifications; absent when none.
   */
  further?: NsePushResult[];
  /**
   * Only with NseOptions.onNotificationReady: messages stored after every push's notification
   * was handed over (while lingering, no push came for them), as one more notification the NSE
   * posts itself (iOS: UNUserNotificationCenter from the extension); absent when none.
   */
  late?: NotificationContent;
}

/** The result for one further push handed to a running NSE. */
export interface NsePushResult {
  pushId: string;
  /** "api": NseRun.push in this process; "ipc": push-arrived from another NSE process. */
  via: "api" | "ipc";
  outcome: "synced" | "deadline" | "yielded";
  /** Exactly one content, as NseResult.notifications. */
  notifications: NotificationContent[];
  summary: PushSummary;
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
  notifications: PushNotificationBuilder;
  /** Its notification was handed over early (onNotificationReady): later messages go to `late`. */
  handedEarly?: boolean;
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
      queue.push({
        pushId,
        via,
        notifications: new PushNotificationBuilder(),
        outcome: "synced",
        resolve,
      });
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
  /** The account the push is for, when the run has only one (a push names no account). */
  accountId: string | undefined,
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
        data: { pushId, receivedAt: Date.now(), ...(accountId !== undefined ? { accountId } : {}) },
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
  const configs = [...(opts.session ? [opts.session] : []), ...(opts.accounts ?? [])];
  if (configs.length === 0) throw new TypeError("handlePush needs `session` or `accounts`");
  // Two sessions of one account would each resume the same stream: a caller's mistake.
  const ids = configs.map((c) => c.accountId);
  const twice = ids.find((id, i) => ids.indexOf(id) !== i);
  if (twice !== undefined) throw new TypeError(`handlePush: account ${twice} is given twice`);
  const started = Date.now();
  const deadline = started + (opts.deadlineMs ?? 25_000);
  // Database writes after the deadline (warning, lock release) get a short grace, not more.
  const graceDeadline = () => Math.max(Date.now(), deadline) + 1000;
  // One lock per process, not per account: see SESSION_LOCK_KEY.
  const lock = new ProcessLock(opts.store, {
    key: SESSION_LOCK_KEY,
    holder: `nse:${process.pid}-${randomUUID().slice(0, 8)}`,
    leaseMs: opts.leaseMs ?? 2000,
  });
  const ipc = new Ipc(opts.store, { role: "nse" });
  ipc.start();
  const firstAccountId = configs[0]!.accountId;
  // The first push's slot; further pushes get their own (see PushSlot).
  const first: PushSlot = {
    pushId: "first",
    via: "first",
    notifications: new PushNotificationBuilder(),
    outcome: "synced",
    resolve: () => {},
  };
  let current = first;
  const further: NsePushResult[] = [];
  let accounts: AccountSync[] = [];
  /** Replaces the first push's content (a warning when nothing could even be recorded). */
  let override: NotificationContent | null = null;
  let handed: NotificationContent[] | null = null;
  /** Messages stored after the last handed-early push (see NseResult.late). */
  const late = new PushNotificationBuilder();
  let holder: string | undefined;
  const shared: NseRunShared = {
    store: opts.store,
    lock,
    deadline,
    yielded: false,
    ...(opts.afterSync ? { afterSync: opts.afterSync } : {}),
  };
  const result = (outcome: NseResult["outcome"], silentReason?: string): NseResult => {
    const notifications = handed ?? [
      override ?? first.notifications.content(silentReason ?? outcome),
    ];
    const alert = notifications.find((n) => n.kind === "alert");
    return {
      outcome,
      notifications,
      summary: handed
        ? { messages: alert?.kind === "alert" ? (alert.count ?? 1) : 0, chats: [], moreChats: 0 }
        : first.notifications.summary(),
      accounts: accounts.map((a) => a.result()),
      stream: accounts[0]?.stream ?? null,
      mamCatchup: accounts.some((a) => a.mamCatchup),
      ...(holder !== undefined ? { holder } : {}),
      ...(further.length > 0 ? { further } : {}),
      ...(late.messages > 0 ? { late: late.content("no-new-messages") } : {}),
    };
  };
  /** Close a further push: its one notification is final (silent when it brought nothing). */
  const settle = (slot: PushSlot) => {
    if (slot === first) return;
    const r: NsePushResult = {
      pushId: slot.pushId,
      via: slot.via === "ipc" ? "ipc" : "api",
      outcome: slot.outcome,
      notifications: [
        slot.notifications.content(slot.outcome === "synced" ? "no-new-messages" : slot.outcome),
      ],
      summary: slot.notifications.summary(),
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
      override = syncWarning(firstAccountId);
      return result("deadline");
    }
    while (!start.started) {
      holder = start.holder;
      // Only a "main:" holder is the main app. Another NSE holding the lock is not (macOS runs
      // NSEs concurrently; on iOS the previous one may still linger): hand the push to it.
      const byMain = start.reason === "main-running" && roleOfHolder(start.holder) === "main";
      if (!byMain && roleOfHolder(start.holder) === "nse") {
        const answer = await handOver(
          opts.store,
          ipc,
          start.holder,
          deadline,
          configs.length === 1 ? firstAccountId : undefined,
        );
        if (answer?.data.accepted) {
          holder = answer.data.handledBy;
          handed = answer.data.notifications ?? [{ kind: "silent", reason: "no-new-messages" }];
          return result("handed-over");
        }
        // It was ending (or gone): the lock is free or about to be; take it ourselves.
        if (Date.now() < deadline) {
          try {
            start = await startAsNse(lock, { deadlineAt: deadline });
          } catch (err) {
            if (!(err instanceof StoreLockTimeoutError)) throw err;
            override = syncWarning(firstAccountId);
            return result("deadline");
          }
          continue;
        }
      }
      return result(
        byMain ? "main-running" : "other-nse",
        byMain ? "main-app-running" : "other-nse-running",
      );
    }

    // The latest push that arrived shows a stored message (one waiting for its round included),
    // so a push never shows a message stored before it arrived and none is shown twice.
    const onMessage = (m: Parameters<PushNotificationBuilder["add"]>[0]) => {
      const slot = run.queue.at(-1) ?? current;
      (slot.handedEarly ? late : slot.notifications).add(m);
    };
    accounts = configs.map(
      (config) =>
        new AccountSync(shared, config, opts.receipts ?? config.receipts ?? "defer", onMessage),
    );
    const stopYield = yieldOnDisconnectAll(lock, ipc, async () => {
      shared.yielded = true;
      run.endAccepting();
      await Promise.all(accounts.map((a) => a.session.suspend()));
      return { handledStanzas: 0 };
    });
    let outcome: NseResult["outcome"] = "synced";
    try {
      let firstRound = true;
      for (;;) {
        // Every account at once, one deadline: a slow or unreachable server (even one whose
        // connect hangs until the deadline) delays only itself.
        const outcomes = await Promise.all(
          accounts.map((a) => (firstRound ? a.start().then(() => a.round()) : a.round())),
        );
        firstRound = false;
        if (outcomes.every((o) => o === "failed")) {
          // Nothing can be synced (one account: its password was refused): an error, as before.
          throw accounts[0]!.failure;
        }
        outcome =
          shared.yielded || outcomes.includes("yielded")
            ? "yielded"
            : outcomes.includes("deadline")
              ? "deadline"
              : "synced";
        current.outcome = outcome === "synced" || outcome === "deadline" ? outcome : "yielded";
        if (outcome !== "synced") break;
        if (opts.onNotificationReady && !current.handedEarly) {
          // Its messages are stored: the push's notification is final now, not after the linger.
          current.handedEarly = true;
          const notifications = [current.notifications.content("no-new-messages")];
          const summary = current.notifications.summary();
          if (current === first)
            opts.onNotificationReady({
              pushId: first.pushId,
              outcome: "synced",
              notifications,
              summary,
              stream: accounts[0]?.stream ?? null,
              mamCatchup: accounts.some((a) => a.mamCatchup),
            });
          // A further push's promise (NseRun.push, or the IPC answer to the NSE that handed it
          // over) resolves now; settle() later only records it in `further`.
          else
            current.resolve({
              pushId: current.pushId,
              via: current.via === "ipc" ? "ipc" : "api",
              outcome: "synced",
              notifications,
              summary,
            });
        }
        // Linger for a further push, connected (Monal keeps the connection): the next push's
        // round is one more sync barrier on the same streams, no new TCP connection, no resume.
        const lingerEnd = Math.min(deadline, Date.now() + (opts.lingerMs ?? 1500));
        while (run.queue.length === 0 && !shared.yielded && Date.now() < lingerEnd)
          await run.waitForPush(Math.min(100, lingerEnd - Date.now()));
        const next = run.queue.shift();
        if (!next || shared.yielded) {
          if (next) run.queue.unshift(next);
          break;
        }
        settle(current);
        current = next;
        for (const a of accounts) a.nextPush();
      }
      run.endAccepting();
      // Suspend at the end of the linger (or at the deadline): the streams stay resumable.
      if (!shared.yielded) await Promise.all(accounts.map((a) => a.session.suspend()));
      settle(current);
    } finally {
      run.endAccepting();
      stopYield();
    }
    if (shared.holder !== undefined) holder = shared.holder;
    if ((outcome === "yielded" || first.outcome === "yielded") && holder === undefined) {
      const now = lock.current()?.holder;
      if (now && now !== lock.holder) holder = now;
    }
    // Per account: a delayed "could not synchronize" warning (a later successful sync cancels
    // it) and a background-task request when it did not finish; the warning withdrawn when it
    // did. A failed account (refused password) gets neither: retrying would not help.
    for (const a of accounts) {
      if (a.outcome === "deadline") {
        const deliverAt = Date.now() + (opts.syncWarningDelayMs ?? 60_000);
        try {
          await opts.store.writeAsync(
            (tx) => {
              tx.delete(tables.pendingNotifications)
                .where(eq(tables.pendingNotifications.id, syncWarningId(a.accountId)))
                .run();
              addPendingNotification(tx, {
                id: syncWarningId(a.accountId), // at most one per account
                accountId: a.accountId,
                content: syncWarning(a.accountId, deliverAt),
                deliverAt,
              });
              tx.insert(tables.syncErrors)
                .values({
                  accountId: a.accountId,
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
          // Not even recorded (the database is held by a stopped process): if the push has
          // nothing else to show, the warning is its notification.
          if (first.notifications.messages === 0) override = syncWarning(a.accountId);
        }
      } else if (a.outcome === "synced") {
        await opts.store
          .writeAsync((tx) => deleteSyncWarning(tx, a.accountId), {
            yieldFirst: false,
            deadlineAt: graceDeadline(),
          })
          .catch((err: unknown) => {
            if (!(err instanceof StoreLockTimeoutError)) throw err;
          });
      }
    }
    // A damaged database (met by any statement of this run) is never reported as an outcome.
    if (opts.store.damage) throw opts.store.damage;
    // The first push's own outcome: a later push's round failing does not undo its sync.
    return result(first.outcome, first.outcome === "synced" ? "no-new-messages" : first.outcome);
  } finally {
    run.endAccepting();
    stopPush();
    if (lock.generation !== null) await lock.releaseAsync({ deadlineAt: graceDeadline() });
    // Answers to push-arrived (queued by the handler above) are written before the IPC closes.
    ipc.close();
  }
}
