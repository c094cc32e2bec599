/**
 * Main-app priority over the session lock (Monal's MLProcessLock + IPC "Monal.disconnectAll").
 *
 * - The main app takes the lock with `acquireAsMain`: if another process holds it, it sends the IPC
 *   request "disconnect-all" to the holder's role (re-sent every `resendEveryMs`), and takes the lock
 *   as soon as the holder answers "yielded" or its lease runs out — within a bounded time.
 * - The NSE installs `yieldOnDisconnectAll`: on "disconnect-all" it runs the caller's shutdown
 *   (finish the current stanza transaction, persist, drop TCP *without* closing the XMPP stream so
 *   it stays resumable), releases the lock and answers "yielded".
 * - The NSE starts only through `startAsNse`, which checks twice (separated by `recheckDelayMs`,
 *   guarding against the race around the main app's freeze/unfreeze) that the main app does not
 *   hold the lock, then takes it atomically.
 */
import type { IpcMessage } from "@lichen/schema";
import type { Ipc } from "./ipc.js";
import { type ProcessLock, roleOfHolder } from "./lock.js";
import { IpcTimeoutError, LockTimeoutError, StoreError } from "./errors.js";

export interface AcquireAsMainResult {
  generation: number;
  /** Who held the lock before (null: it was free or ours). */
  previousHolder: string | null;
  /** How it was freed: it was free, the holder yielded, or the holder's lease expired. */
  via: "free" | "yielded" | "lease-expired";
  waitedMs: number;
}

export async function acquireAsMain(
  lock: ProcessLock,
  ipc: Ipc,
  opts: { timeoutMs?: number; resendEveryMs?: number; reason?: string } = {},
): Promise<AcquireAsMainResult> {
  if (roleOfHolder(lock.holder) !== "main")
    throw new StoreError(`acquireAsMain needs a "main:" holder, got ${lock.holder}`);
  // Bounded: long enough for a frozen holder's lease to run out.
  const timeoutMs = opts.timeoutMs ?? lock.leaseMs * 2 + 1000;
  const resendEveryMs = opts.resendEveryMs ?? 250;
  const started = Date.now();
  const deadlineAt = started + timeoutMs;
  const first = await lock.tryAcquireAsync({ deadlineAt });
  if (first.acquired)
    return { generation: first.generation, previousHolder: null, via: "free", waitedMs: 0 };
  const previousHolder = first.holder ?? null;
  const target = (previousHolder && roleOfHolder(previousHolder)) || "*";
  let via: AcquireAsMainResult["via"] = "lease-expired";
  if (target === "main") {
    // An earlier main-app process (crashed or killed) still has a lease: nobody to ask, wait it out.
    const generation = await lock.acquire({ timeoutMs });
    return { generation, previousHolder, via, waitedMs: Date.now() - started };
  }
  for (;;) {
    const left = timeoutMs - (Date.now() - started);
    if (left <= 0) {
      throw new LockTimeoutError(
        `main could not take lock "${lock.key}" from ${previousHolder} within ${timeoutMs} ms`,
        lock.current()?.holder ?? previousHolder,
      );
    }
    try {
      const reply = await ipc.request(
        {
          type: "disconnect-all",
          destination: target,
          data: { reason: opts.reason ?? "main-app-start" },
        },
        { timeoutMs: Math.min(resendEveryMs, left) },
      );
      if (reply.type === "yielded") via = "yielded";
    } catch (e) {
      if (!(e instanceof IpcTimeoutError)) throw e;
    }
    // A holder that yields releases the lock (lease 0) before its answer can reach us: if we take
    // a released lock, it yielded, whether or not the answer has been read yet. Judged on the row
    // the acquiring transaction replaced: a release between a separate read and the acquisition
    // was labelled "lease-expired" (a 60 s lease, 0.6 s into the wait, in CI).
    const r = await lock.tryAcquireAsync({ deadlineAt });
    if (r.acquired) {
      if (r.previous?.leaseExpiresAt === 0) via = "yielded";
      return { generation: r.generation, previousHolder, via, waitedMs: Date.now() - started };
    }
  }
}

/**
 * NSE side: on "disconnect-all", run `shutdown` (must leave the XMPP stream resumable), release the
 * lock and answer "yielded". Returns an unsubscribe function.
 */
export function yieldOnDisconnectAll(
  lock: ProcessLock,
  ipc: Ipc,
  shutdown: (msg: IpcMessage) => Promise<{ handledStanzas: number }> | { handledStanzas: number },
): () => void {
  let yielding: Promise<void> | null = null;
  return ipc.on("disconnect-all", async (msg) => {
    // Repeated requests (the main app re-sends) while shutting down get the same answer.
    yielding ??= (async () => {
      const { handledStanzas } = await shutdown(msg);
      const generation = lock.generation ?? 0;
      await lock.releaseAsync({ deadlineAt: Date.now() + 2000 });
      ipc.respond(msg, { type: "yielded", data: { lockGeneration: generation, handledStanzas } });
    })();
    try {
      await yielding;
    } finally {
      yielding = null;
    }
  });
}

export type NseStartResult =
  | { started: true; generation: number }
  | { started: false; reason: "main-running"; holder: string; check: 1 | 2 }
  /** Another NSE (macOS runs them concurrently) or an unknown role holds the session. */
  | { started: false; reason: "held-by-other"; holder: string; check: 2 };

/**
 * NSE start: refuse while the main app holds the lock. Checked twice, `recheckDelayMs` apart
 * (default 50 ms), then the lock is taken atomically (which is the last check).
 */
export async function startAsNse(
  lock: ProcessLock,
  opts: {
    recheckDelayMs?: number;
    /** Called after the first check passed. */
    onFirstCheck?: () => void;
    /** Replaces the sleep of recheckDelayMs between the checks (e.g. to wait for an OS event). */
    waitBetweenChecks?: () => Promise<void>;
    /** Give up waiting for the database at this time (StoreLockTimeoutError); e.g. the NSE's deadline. */
    deadlineAt?: number;
  } = {},
): Promise<NseStartResult> {
  const mainHolder = (): string | null => {
    const other = lock.heldByOther();
    return other && roleOfHolder(other.holder) === "main" ? other.holder : null;
  };
  const h1 = mainHolder();
  if (h1) return { started: false, reason: "main-running", holder: h1, check: 1 };
  opts.onFirstCheck?.();
  if (opts.waitBetweenChecks) await opts.waitBetweenChecks();
  else await new Promise((r) => setTimeout(r, opts.recheckDelayMs ?? 50));
  const h2 = mainHolder();
  if (h2) return { started: false, reason: "main-running", holder: h2, check: 2 };
  const r = await lock.tryAcquireAsync(
    opts.deadlineAt !== undefined ? { deadlineAt: opts.deadlineAt } : {},
  );
  if (!r.acquired) {
    if (r.holder && roleOfHolder(r.holder) === "main")
      return { started: false, reason: "main-running", holder: r.holder, check: 2 };
    return { started: false, reason: "held-by-other", holder: r.holder ?? "?", check: 2 };
  }
  return { started: true, generation: r.generation };
}
