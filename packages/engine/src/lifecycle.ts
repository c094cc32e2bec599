// What the OS does around the processes, as data the SDK reads and writes: delayed local
// notifications (the "could not synchronize" warning), background-task requests, the bounded
// shutdown of a swipe, and a background run with a deadline (silent push, BGProcessingTask).
// A Swift app maps each to its iOS call (see the engine README, "Process lifecycle").
import type { NotificationContent } from "@lichen/schema";
import {
  duePendingNotifications,
  markNotificationDelivered,
  tables,
  type Store,
} from "@lichen/store";
import { and, eq, inArray, isNull, sql } from "drizzle-orm";
import { AppController, cancelSyncWarning, type ReconnectPolicy } from "./modes.js";
import type { MultiAccountApp } from "./accounts.js";
import type { SessionOptions } from "./session.js";

/** A local notification the SDK scheduled (iOS: a UNNotificationRequest with this identifier). */
export interface LocalNotification {
  id: string;
  accountId: string | null;
  content: NotificationContent;
  /** Epoch ms when it is due; null = at once. */
  deliverAt: number | null;
}

/**
 * Local notifications scheduled and not yet shown (a Swift NSE hands each to
 * UNUserNotificationCenter with a time trigger before it exits; a row deleted since — e.g. the
 * sync warning cancelled by a later sync — is removed there by the same identifier).
 */
export function scheduledLocalNotifications(store: Store): LocalNotification[] {
  return store.read((tx) =>
    tx
      .select()
      .from(tables.pendingNotifications)
      .where(isNull(tables.pendingNotifications.deliveredAt))
      .all()
      .map((r) => ({
        id: r.id,
        accountId: r.accountId,
        content: JSON.parse(r.content) as NotificationContent,
        deliverAt: r.deliverAt,
      })),
  );
}

/**
 * The scheduled notifications that are due now, marked delivered in the same transaction, so each
 * is shown once whichever process asks (the OS's scheduler, simulated by tools/device-sim). A
 * row that does not parse is quarantined, never shown.
 */
export function takeDueLocalNotifications(store: Store): LocalNotification[] {
  return store.write((tx) => {
    const due = duePendingNotifications(tx);
    const byId = new Map(
      tx
        .select({
          id: tables.pendingNotifications.id,
          deliverAt: tables.pendingNotifications.deliverAt,
        })
        .from(tables.pendingNotifications)
        .where(
          inArray(
            tables.pendingNotifications.id,
            due.map((d) => d.id),
          ),
        )
        .all()
        .map((r) => [r.id, r.deliverAt] as const),
    );
    for (const d of due) markNotificationDelivered(tx, d.id);
    return due.map((d) => ({ ...d, deliverAt: byId.get(d.id) ?? null }));
  });
}

/** The sync_errors code of a request for background time (iOS: BGProcessingTaskRequest). */
export const BACKGROUND_TASK_REQUESTED = "background-task-requested";

export interface BackgroundTaskRequest {
  id: number;
  accountId: string;
  reason: string;
  requestedAt: number;
}

/** Record that this account needs background time (the NSE at its deadline, a swipe with unsent work). */
export function requestBackgroundTask(store: Store, accountId: string, reason: string): void {
  store.write((tx) =>
    tx
      .insert(tables.syncErrors)
      .values({ accountId, code: BACKGROUND_TASK_REQUESTED, message: reason, createdAt: tx.now })
      .run(),
  );
}

/** Open requests for background time (all accounts, or one): what the app submits to the OS. */
export function pendingBackgroundTaskRequests(
  store: Store,
  accountId?: string,
): BackgroundTaskRequest[] {
  return store.read((tx) =>
    tx
      .select()
      .from(tables.syncErrors)
      .where(
        and(
          eq(tables.syncErrors.code, BACKGROUND_TASK_REQUESTED),
          isNull(tables.syncErrors.resolvedAt),
          accountId === undefined ? undefined : eq(tables.syncErrors.accountId, accountId),
        ),
      )
      .all()
      .map((r) => ({
        id: r.id,
        accountId: r.accountId,
        reason: r.message,
        requestedAt: r.createdAt,
      })),
  );
}

/** Mark the account's open requests done (a background run finished its work). */
export function resolveBackgroundTaskRequests(store: Store, accountId: string): number {
  return store.write(
    (tx) =>
      tx
        .update(tables.syncErrors)
        .set({ resolvedAt: tx.now })
        .where(
          and(
            eq(tables.syncErrors.accountId, accountId),
            eq(tables.syncErrors.code, BACKGROUND_TASK_REQUESTED),
            isNull(tables.syncErrors.resolvedAt),
          ),
        )
        .run().changes,
  );
}

/** Work that still needs the network: messages not acknowledged by the server, shares not sent. */
export function unsentWork(store: Store, accountId: string): { messages: number; shares: number } {
  return store.read((tx) => ({
    messages:
      tx
        .select({ n: sql<number>`count(*)` })
        .from(tables.outboundQueue)
        .where(
          and(
            eq(tables.outboundQueue.accountId, accountId),
            eq(tables.outboundQueue.important, true),
          ),
        )
        .get()?.n ?? 0,
    shares:
      tx
        .select({ n: sql<number>`count(*)` })
        .from(tables.shareOutbox)
        .where(
          and(
            eq(tables.shareOutbox.accountId, accountId),
            inArray(tables.shareOutbox.state, ["pending", "sending"]),
          ),
        )
        .get()?.n ?? 0,
  }));
}

const hasWork = (w: { messages: number; shares: number }) => w.messages + w.shares > 0;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

/**
 * The user swiped the app away (iOS: applicationWillTerminate, then SIGKILL after a second or
 * two). Within `withinMs`: record a background-task request first when work is unsent (one small
 * write: the kill may come at any instant), then suspend the stream (resumable, lock released),
 * draining acknowledgements for what time remains. Never takes longer than `withinMs` (plus the
 * request's write). Returns what is still unsent and whether a request stays open for it.
 */
export async function terminateApp(
  app: AppController | MultiAccountApp,
  store: Store,
  accountIds: string | readonly string[],
  opts: { withinMs?: number } = {},
): Promise<{ unsent: { messages: number; shares: number }; backgroundTaskRequested: boolean }> {
  const ids = typeof accountIds === "string" ? [accountIds] : accountIds;
  const withinMs = opts.withinMs ?? 1000;
  const end = Date.now() + withinMs;
  const before = new Map(ids.map((id) => [id, unsentWork(store, id)]));
  for (const [id, work] of before)
    if (hasWork(work)) requestBackgroundTask(store, id, "app terminated with unsent work");
  // Keep a margin for dropping the socket and releasing the lock inside the budget.
  const drainMs = Math.max(0, Math.floor(withinMs * 0.6));
  await Promise.race([app.background({ drainMs }).catch(() => {}), sleep(end - Date.now())]);
  const unsent = { messages: 0, shares: 0 };
  for (const [id, work] of before) {
    const left = unsentWork(store, id);
    unsent.messages += left.messages;
    unsent.shares += left.shares;
    // Everything got acknowledged while draining: no background time needed after all.
    if (hasWork(work) && !hasWork(left)) resolveBackgroundTaskRequests(store, id);
  }
  app.ipc.close();
  return { unsent, backgroundTaskRequested: hasWork(unsent) };
}

export interface BackgroundRunOptions {
  store: Store;
  session: Omit<SessionOptions, "store">;
  /** The OS's budget: ~30 s for a silent push, up to 5 min for a BGProcessingTask. */
  deadlineMs: number;
  leaseMs?: number;
}

export interface BackgroundRunResult {
  /** done: synced and nothing unsent; deadline: the budget ran out first (work stays queued). */
  outcome: "done" | "deadline";
  stream: "resumed" | "new" | null;
  unsent: { messages: number; shares: number };
}

/**
 * A background run of the main app with a deadline (silent push, BGProcessingTask granted):
 * take the session as the main app (an NSE yields), resume or log in, sync, send what is unsent
 * (share outbox, queued messages, deferred receipts) and wait for the server's acknowledgements,
 * then suspend (resumable) before the deadline. Resolves the background-task requests when all
 * was sent.
 */
export async function runBackgroundTask(opts: BackgroundRunOptions): Promise<BackgroundRunResult> {
  const deadline = Date.now() + opts.deadlineMs;
  const left = () => deadline - Date.now();
  const accountId = opts.session.accountId;
  const reconnect: ReconnectPolicy | false = false; // one attempt; the OS gives no second chance
  const app = new AppController(opts.store, opts.session, {
    reconnect,
    ...(opts.leaseMs !== undefined ? { leaseMs: opts.leaseMs } : {}),
  });
  let stream: BackgroundRunResult["stream"] = null;
  let outcome: BackgroundRunResult["outcome"] = "deadline";
  const timeUp = (what: string) =>
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: background time ran out`)), left()).unref(),
    );
  try {
    stream = await Promise.race([app.foreground(), timeUp("connect")]);
    const session = app.session!;
    await Promise.race([session.syncBarrier(), timeUp("sync")]);
    while (hasWork(unsentWork(opts.store, accountId)) && left() > 0 && session.online)
      await sleep(Math.min(50, left()));
    if (!hasWork(unsentWork(opts.store, accountId))) outcome = "done";
  } catch {
    outcome = "deadline"; // the connection or the budget failed: the work stays queued
  } finally {
    // Leave time to suspend cleanly (a frozen mid-write process is what the fencing handles).
    await app.background({ drainMs: Math.max(0, Math.min(2000, left() - 500)) }).catch(() => {});
    app.ipc.close();
  }
  if (outcome === "done") {
    resolveBackgroundTaskRequests(opts.store, accountId);
    cancelSyncWarning(opts.store, accountId);
  }
  return { outcome, stream, unsent: unsentWork(opts.store, accountId) };
}
