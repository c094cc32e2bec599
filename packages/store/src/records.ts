/**
 * Typed access to the tables whose payload is a JSON column (share outbox, IQ handlers, idle timers,
 * pending notifications). Writes validate first and throw SchemaValidationError naming the field;
 * reads in a write transaction move a row that fails validation into `quarantine` (verbatim, with
 * the error), log `store.quarantined`, and skip it — never silently dropped, never fatal.
 */
import { and, asc, eq, inArray, sql } from "drizzle-orm";
import type { HandlerDescriptor, NotificationContent, ShareOutboxItem } from "@lichen/schema";
import { idleTimers, iqHandlers, pendingNotifications, quarantine, shareOutbox } from "./schema.js";
import type { StoreTx } from "./store.js";
import {
  validateHandlerDescriptor,
  validateNotificationContent,
  validateShareOutboxItem,
} from "./validation.js";
import { TransactionUsageError } from "./errors.js";

/** Copy a bad row into `quarantine` (in write transactions) and log it. */
export function quarantineRow(
  tx: StoreTx,
  table: string,
  rowKey: string,
  raw: unknown,
  error: string,
): void {
  tx.store.logger({ event: "store.quarantined", level: "error", table, rowKey, error });
  if (tx.mode !== "write") return;
  tx.insert(quarantine)
    .values({
      tableName: table,
      rowKey,
      raw: typeof raw === "string" ? raw : JSON.stringify(raw),
      error,
      at: tx.now,
    })
    .run();
}

function parseWith<T>(
  text: string,
  validate: (v: unknown) => T,
): { ok: true; value: T } | { ok: false; error: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `not JSON: ${(e as Error).message}` };
  }
  try {
    return { ok: true, value: validate(value) };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

function requireWrite(tx: StoreTx, what: string): void {
  if (tx.mode !== "write") throw new TransactionUsageError(`${what} needs a write transaction`);
}

// ---- share outbox -------------------------------------------------------------------------------

export type ShareOutboxState = "pending" | "sending" | "sent" | "failed";
export interface ShareOutboxEntry {
  item: ShareOutboxItem;
  state: ShareOutboxState;
  error: string | null;
  updatedAt: number;
}

/** Share extension: queue an item (validated) for the main app to send. */
export function addShareOutboxItem(tx: StoreTx, item: ShareOutboxItem): void {
  requireWrite(tx, "addShareOutboxItem()");
  validateShareOutboxItem(item);
  tx.insert(shareOutbox)
    .values({
      id: item.id,
      accountId: item.accountId,
      item: JSON.stringify(item),
      createdAt: item.createdAt,
      updatedAt: tx.now,
    })
    .run();
}

/** Main app: outbox items in the given states (default pending), oldest first. */
export function listShareOutbox(
  tx: StoreTx,
  states: ShareOutboxState[] = ["pending"],
): ShareOutboxEntry[] {
  const rows = tx
    .select()
    .from(shareOutbox)
    .where(inArray(shareOutbox.state, states))
    .orderBy(asc(shareOutbox.createdAt))
    .all();
  const out: ShareOutboxEntry[] = [];
  for (const r of rows) {
    const parsed = parseWith(r.item, validateShareOutboxItem);
    if (parsed.ok) {
      out.push({ item: parsed.value, state: r.state, error: r.error, updatedAt: r.updatedAt });
    } else if (tx.mode === "write") {
      quarantineRow(tx, "share_outbox", r.id, r, parsed.error);
      tx.delete(shareOutbox).where(eq(shareOutbox.id, r.id)).run();
    } else {
      quarantineRow(tx, "share_outbox", r.id, r, parsed.error);
    }
  }
  return out;
}

export function setShareOutboxState(
  tx: StoreTx,
  id: string,
  state: ShareOutboxState,
  error: string | null = null,
): boolean {
  requireWrite(tx, "setShareOutboxState()");
  return (
    tx
      .update(shareOutbox)
      .set({ state, error, updatedAt: tx.now })
      .where(eq(shareOutbox.id, id))
      .run().changes === 1
  );
}

// ---- IQ handlers and idle timers ---------------------------------------------------------------

export interface PendingIqHandler {
  accountId: string;
  iqId: string;
  handler: HandlerDescriptor;
  streamKey: string | null;
  /** The IQ's `to` (null: our own server). */
  peer: string | null;
  remainingTicks: number;
  invalidatedAt: number | null;
  createdAt: number;
}

export function addIqHandler(
  tx: StoreTx,
  h: {
    accountId: string;
    iqId: string;
    handler: HandlerDescriptor;
    streamKey?: string | null;
    /** The IQ's `to` attribute (null or absent: our own server). */
    peer?: string | null;
    timeoutTicks: number;
  },
): void {
  requireWrite(tx, "addIqHandler()");
  validateHandlerDescriptor(h.handler);
  tx.insert(iqHandlers)
    .values({
      accountId: h.accountId,
      iqId: h.iqId,
      handler: JSON.stringify(h.handler),
      streamKey: h.streamKey ?? null,
      peer: h.peer ?? null,
      remainingTicks: h.timeoutTicks,
      createdAt: tx.now,
    })
    .run();
}

/** Remove and return the handler for an IQ response (undefined: none, or it was quarantined). */
export function takeIqHandler(
  tx: StoreTx,
  accountId: string,
  iqId: string,
): PendingIqHandler | undefined {
  requireWrite(tx, "takeIqHandler()");
  const where = and(eq(iqHandlers.accountId, accountId), eq(iqHandlers.iqId, iqId));
  const row = tx.select().from(iqHandlers).where(where).get();
  if (!row) return undefined;
  tx.delete(iqHandlers).where(where).run();
  const parsed = parseWith(row.handler, validateHandlerDescriptor);
  if (!parsed.ok) {
    quarantineRow(tx, "iq_handlers", `${accountId}/${iqId}`, row, parsed.error);
    return undefined;
  }
  return { ...row, handler: parsed.value };
}

export function listIqHandlers(tx: StoreTx, accountId: string): PendingIqHandler[] {
  const rows = tx
    .select()
    .from(iqHandlers)
    .where(eq(iqHandlers.accountId, accountId))
    .orderBy(asc(iqHandlers.createdAt))
    .all();
  const out: PendingIqHandler[] = [];
  for (const row of rows) {
    const parsed = parseWith(row.handler, validateHandlerDescriptor);
    if (parsed.ok) out.push({ ...row, handler: parsed.value });
    else {
      quarantineRow(tx, "iq_handlers", `${row.accountId}/${row.iqId}`, row, parsed.error);
      if (tx.mode === "write") {
        tx.delete(iqHandlers)
          .where(and(eq(iqHandlers.accountId, row.accountId), eq(iqHandlers.iqId, row.iqId)))
          .run();
      }
    }
  }
  return out;
}

/**
 * One tick of connected time for an account: decrement every IQ handler and idle timer and return
 * (and remove) the ones that reached zero. Only a connected session calls this, so freezing or
 * killing the process never fires a timeout early.
 */
export function tickConnectedTime(
  tx: StoreTx,
  accountId: string,
  ticks = 1,
): { expiredIq: PendingIqHandler[]; firedTimers: { id: string; handler: HandlerDescriptor }[] } {
  requireWrite(tx, "tickConnectedTime()");
  tx.update(iqHandlers)
    .set({ remainingTicks: sql`max(${iqHandlers.remainingTicks} - ${ticks}, 0)` })
    .where(eq(iqHandlers.accountId, accountId))
    .run();
  tx.update(idleTimers)
    .set({ remainingTicks: sql`max(${idleTimers.remainingTicks} - ${ticks}, 0)` })
    .where(eq(idleTimers.accountId, accountId))
    .run();
  const expiredIq = listIqHandlers(tx, accountId).filter((h) => h.remainingTicks === 0);
  for (const h of expiredIq) {
    tx.delete(iqHandlers)
      .where(and(eq(iqHandlers.accountId, accountId), eq(iqHandlers.iqId, h.iqId)))
      .run();
  }
  const due = tx
    .select()
    .from(idleTimers)
    .where(and(eq(idleTimers.accountId, accountId), eq(idleTimers.remainingTicks, 0)))
    .all();
  const firedTimers: { id: string; handler: HandlerDescriptor }[] = [];
  for (const t of due) {
    tx.delete(idleTimers).where(eq(idleTimers.id, t.id)).run();
    const parsed = parseWith(t.handler, validateHandlerDescriptor);
    if (parsed.ok) firedTimers.push({ id: t.id, handler: parsed.value });
    else quarantineRow(tx, "idle_timers", t.id, t, parsed.error);
  }
  return { expiredIq, firedTimers };
}

export function addIdleTimer(
  tx: StoreTx,
  t: { id: string; accountId: string; handler: HandlerDescriptor; ticks: number },
): void {
  requireWrite(tx, "addIdleTimer()");
  validateHandlerDescriptor(t.handler);
  tx.insert(idleTimers)
    .values({
      id: t.id,
      accountId: t.accountId,
      handler: JSON.stringify(t.handler),
      remainingTicks: t.ticks,
      createdAt: tx.now,
    })
    .run();
}

// ---- pending notifications ---------------------------------------------------------------------

export function addPendingNotification(
  tx: StoreTx,
  n: {
    id: string;
    accountId?: string | null;
    content: NotificationContent;
    deliverAt?: number | null;
  },
): void {
  requireWrite(tx, "addPendingNotification()");
  validateNotificationContent(n.content);
  tx.insert(pendingNotifications)
    .values({
      id: n.id,
      accountId: n.accountId ?? null,
      content: JSON.stringify(n.content),
      deliverAt: n.deliverAt ?? null,
      createdAt: tx.now,
    })
    .run();
}

/** Notifications not yet delivered whose time has come (deliverAt null or <= now). */
export function duePendingNotifications(
  tx: StoreTx,
): { id: string; accountId: string | null; content: NotificationContent }[] {
  const rows = tx
    .select()
    .from(pendingNotifications)
    .where(
      sql`${pendingNotifications.deliveredAt} IS NULL AND (${pendingNotifications.deliverAt} IS NULL OR ${pendingNotifications.deliverAt} <= ${tx.now || tx.store.clock()})`,
    )
    .orderBy(asc(pendingNotifications.createdAt))
    .all();
  const out: { id: string; accountId: string | null; content: NotificationContent }[] = [];
  for (const r of rows) {
    const parsed = parseWith(r.content, validateNotificationContent);
    if (parsed.ok) out.push({ id: r.id, accountId: r.accountId, content: parsed.value });
    else {
      quarantineRow(tx, "pending_notifications", r.id, r, parsed.error);
      if (tx.mode === "write")
        tx.delete(pendingNotifications).where(eq(pendingNotifications.id, r.id)).run();
    }
  }
  return out;
}

export function markNotificationDelivered(tx: StoreTx, id: string): void {
  requireWrite(tx, "markNotificationDelivered()");
  tx.update(pendingNotifications)
    .set({ deliveredAt: tx.now })
    .where(eq(pendingNotifications.id, id))
    .run();
}
