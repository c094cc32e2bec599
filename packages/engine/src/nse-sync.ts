// One account's sync inside an NSE run. An NSE run syncs every account of the database
// concurrently under one deadline and one process lock (see modes.ts, "one lock per process");
// each account has its own session, connection, catch-up barrier and outcome, so an account whose
// server is unreachable or refuses the password does not hold up the others.
import { roomsCatchingUp } from "./muc.js";
import {
  loadAccountState,
  StoreLockTimeoutError,
  type ProcessLock,
  type Store,
} from "@lichen/store";
import type { MessageStoredEvent } from "./events.js";
import { DurableSession, SessionLockError, type SessionOptions } from "./session.js";
import { isTransientConnectError, reconnectDelay } from "./reconnect.js";
import type { StoredIncoming } from "./notifications.js";

/**
 * synced: everything its server had was stored; deadline: not finished in time (its server
 * unreachable or slow, or the database held); yielded: the main app took the session; failed:
 * a permanent error (refused password, bad certificate): retrying in this run would fail again.
 */
export type AccountSyncOutcome = "synced" | "deadline" | "yielded" | "failed";

/** One account's part of an NseResult. */
export interface AccountSyncResult {
  accountId: string;
  outcome: AccountSyncOutcome;
  /** How its stream was (last) brought online: resumed, a new stream, or never (null). */
  stream: "resumed" | "new" | null;
  /** Whether a MAM catch-up ran for it. */
  mamCatchup: boolean;
  /** New incoming messages stored for it in this run (all pushes of the run). */
  messages: number;
  /** For failed (and deadline after a connect error): what went wrong, in words. */
  error?: string;
}

/** State shared by the accounts of one run. */
export interface NseRunShared {
  store: Store;
  lock: ProcessLock;
  deadline: number;
  /** Set when the main app took the session (IPC yield, or our lease lapsed). */
  yielded: boolean;
  /** The holder that took it, when known. */
  holder?: string;
  afterSync?: (session: DurableSession) => Promise<void> | void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

export class AccountSync {
  readonly accountId: string;
  readonly session: DurableSession;
  stream: "resumed" | "new" | null = null;
  mamCatchup = false;
  outcome: AccountSyncOutcome | null = null;
  messages = 0;
  private error: unknown;
  private lost = false;
  private storeUnavailable = false;
  private barrier = { done: false };

  constructor(
    private readonly run: NseRunShared,
    config: Omit<SessionOptions, "store">,
    receipts: "send" | "defer",
    onMessage: (m: StoredIncoming) => void,
  ) {
    this.accountId = config.accountId;
    this.session = new DurableSession({
      store: run.store,
      ...config,
      receipts,
      lock: run.lock,
    });
    const session = this.session;
    session.deadlineAt = run.deadline;
    session.on("mam-complete", () => (this.mamCatchup = true));
    session.on("online", (how: "resumed" | "new") => (this.stream = how));
    session.on("message-stored", (m: MessageStoredEvent) => {
      if (m.direction !== "in") return;
      this.messages++;
      const messageId = m.stanzaId ?? m.originId;
      onMessage({
        accountId: this.accountId,
        chatJid: m.chatJid,
        body: m.body,
        sentAt: m.sentAt,
        ...(messageId ? { messageId } : {}),
        ...(m.roomNick !== undefined ? { roomNick: m.roomNick, mentioned: !!m.mentioned } : {}),
      });
    });
    session.on("connection-lost", () => (this.lost = true));
    session.on("store-unavailable", () => (this.storeUnavailable = true));
    // Our lease lapsed (this process was frozen) and the main app took the session.
    session.on("session-lost", (info: { holder: string | null }) => {
      run.yielded = true;
      if (info.holder) run.holder = info.holder;
    });
  }

  /**
   * The end of the catch-up is a protocol fact, never a silence: the answer to a ping queued
   * behind the replay (see DurableSession.syncBarrier), and no open MAM gap (its last page ended
   * with <fin complete='true'/>). Re-armed on every (re)connect and every further push.
   */
  private armBarrier(): void {
    const b = { done: false };
    this.barrier = b;
    this.session.syncBarrier().then(
      () => (b.done = true),
      () => {}, // the connection went away: the reconnect arms a new one
    );
  }

  /** One connect attempt; false when it failed (for a reason worth retrying, or for good). */
  private async tryConnect(): Promise<boolean> {
    try {
      await this.session.connect(Math.max(1000, this.run.deadline - Date.now()));
      this.armBarrier();
      return true;
    } catch (err) {
      this.error = err;
      if (err instanceof StoreLockTimeoutError) {
        this.storeUnavailable = true;
        return false;
      }
      if (err instanceof SessionLockError) {
        this.run.yielded = true;
        return false;
      }
      // No network at all yet: keep trying until the deadline, as after a drop. Anything else
      // (refused password, bad certificate) fails the same way again: this account is done.
      if (!isTransientConnectError(err)) this.outcome = "failed";
      return false;
    }
  }

  /** First connect of the run. */
  async start(): Promise<void> {
    if (!(await this.tryConnect())) this.lost = true;
  }

  /** A further push: one more sync barrier on the same stream (no new connection, no resume). */
  nextPush(): void {
    if (this.outcome === "failed") return;
    this.outcome = null;
    if (!this.lost) this.armBarrier();
  }

  /** Sync until the barrier answered and the MAM gap is closed (then afterSync), or not. */
  async round(): Promise<AccountSyncOutcome> {
    if (this.outcome === "failed") return "failed";
    const run = this.run;
    let retries = 0;
    for (;;) {
      if (run.yielded || run.lock.generation === null) return (this.outcome = "yielded");
      if (this.storeUnavailable) return (this.outcome = "deadline");
      if (this.lost) {
        // The network dropped mid-sync: quiet means nothing then. Resume while time remains.
        if (Date.now() >= run.deadline) return (this.outcome = "deadline");
        await sleep(
          Math.min(
            reconnectDelay(retries++, { initialDelayMs: 250, maxDelayMs: 2000 }),
            run.deadline - Date.now(),
          ),
        );
        if (run.yielded || this.storeUnavailable || Date.now() >= run.deadline) continue;
        if (await this.tryConnect()) this.lost = false;
        else if (this.failed) return "failed";
        continue;
      }
      // Synced means the rooms too: each joined room answered our join and caught up its archive.
      const gapOpen = run.store.read(
        (tx) =>
          loadAccountState(tx, this.accountId).mam.gapOpen || roomsCatchingUp(tx, this.accountId),
      );
      if (gapOpen) this.mamCatchup = true;
      if (this.barrier.done && !gapOpen) {
        if (!run.afterSync) return (this.outcome = "synced");
        let hookDone = false;
        Promise.resolve()
          .then(() => run.afterSync!(this.session))
          .catch(() => {}) // the app's extra work failing does not undo the sync
          .finally(() => (hookDone = true));
        while (!hookDone && !this.lost && !run.yielded && Date.now() < run.deadline)
          await sleep(25);
        if (hookDone) return (this.outcome = "synced");
        if (!this.lost && !run.yielded) return (this.outcome = "deadline");
        continue; // lost: resume and sync again; yielded: see above
      }
      if (Date.now() >= run.deadline) return (this.outcome = "deadline");
      await sleep(50);
    }
  }

  private get failed(): boolean {
    return this.outcome === "failed";
  }

  /** The error that ended (or hampered) this account's sync, when any. */
  get failure(): unknown {
    return this.error;
  }

  result(): AccountSyncResult {
    const err = this.error;
    return {
      accountId: this.accountId,
      outcome: this.outcome ?? "deadline",
      stream: this.stream,
      mamCatchup: this.mamCatchup,
      messages: this.messages,
      ...(err !== undefined && this.outcome !== "synced"
        ? { error: err instanceof Error ? err.message : String(err) }
        : {}),
    };
  }
}
