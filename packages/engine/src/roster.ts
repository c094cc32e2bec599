/**
 * The roster (RFC 6121 §2) and presence subscriptions (§3), stored: a client that asks with an
 * XEP-0237 version must have the roster that version names, or an "unchanged" answer leaves it
 * with none. The full result of a roster get replaces the stored roster; a roster push changes one
 * item; inbound subscription requests wait in `subscription_requests` for the user's answer.
 */
import { tables, type Store, type StoreTx } from "@lichen/store";
import xml, { type Element } from "@xmpp/xml";
import { and, asc, eq } from "drizzle-orm";
import type { RosterItem, Subscription, SubscriptionRequest } from "./events.js";
import { bare } from "./jid.js";
import type { ProtocolContext } from "./context.js";

export const NS_ROSTER = "jabber:iq:roster";

// Defined with the events that report them; re-exported where roster code is read.
export type { RosterItem, Subscription, SubscriptionRequest } from "./events.js";

const SUBSCRIPTIONS = new Set(["none", "to", "from", "both"]);

/** An <item/> of a roster result or push; null for one without a usable bare JID. */
export function parseRosterItem(item: Element): RosterItem | "remove" | null {
  const jid = item.attrs.jid;
  if (!jid || jid.length > 3071 || jid.includes("/")) return null; // RFC 6121: bare JIDs
  if (item.attrs.subscription === "remove") return "remove";
  const sub = item.attrs.subscription ?? "none";
  const groups = [...new Set(item.getChildren("group").map((g) => g.getText()))].filter(
    (g) => g !== "",
  );
  return {
    jid,
    name: item.attrs.name ?? null,
    subscription: (SUBSCRIPTIONS.has(sub) ? sub : "none") as Subscription,
    ask: item.attrs.ask === "subscribe" ? "subscribe" : null,
    groups,
    approved: item.attrs.approved === "true" || item.attrs.approved === "1",
  };
}

/**
 * The version to ask with (XEP-0237): the stored roster's, or "" (no stored roster, or it came
 * without a version: ask for everything and a version).
 */
export function rosterRequestVersion(tx: StoreTx, accountId: string): string {
  const row = tx
    .select({ version: tables.rosters.version })
    .from(tables.rosters)
    .where(eq(tables.rosters.accountId, accountId))
    .get();
  return row?.version ?? "";
}

function itemRow(accountId: string, item: RosterItem, now: number) {
  return {
    accountId,
    jid: item.jid,
    name: item.name,
    subscription: item.subscription,
    ask: item.ask,
    groups: JSON.stringify(item.groups),
    approved: item.approved,
    updatedAt: now,
  };
}

/** The full roster of a get result: replaces what was stored, with its version. */
export function replaceRoster(
  tx: StoreTx,
  accountId: string,
  items: RosterItem[],
  version: string | null,
): void {
  tx.delete(tables.rosterItems).where(eq(tables.rosterItems.accountId, accountId)).run();
  for (const item of items)
    tx.insert(tables.rosterItems)
      .values(itemRow(accountId, item, tx.now))
      .onConflictDoNothing() // a server listing a JID twice: the first wins
      .run();
  tx.insert(tables.rosters)
    .values({ accountId, version, updatedAt: tx.now })
    .onConflictDoUpdate({
      target: tables.rosters.accountId,
      set: { version, updatedAt: tx.now },
    })
    .run();
}

/**
 * One pushed item. The version advances only for a stored roster: a push alone does not make
 * the items we never received ours.
 */
export function applyRosterPush(
  tx: StoreTx,
  accountId: string,
  jid: string,
  item: RosterItem | "remove",
  version: string | undefined,
): void {
  const key = and(eq(tables.rosterItems.accountId, accountId), eq(tables.rosterItems.jid, jid));
  if (item === "remove") tx.delete(tables.rosterItems).where(key).run();
  else {
    const row = itemRow(accountId, item, tx.now);
    tx.insert(tables.rosterItems)
      .values(row)
      .onConflictDoUpdate({
        target: [tables.rosterItems.accountId, tables.rosterItems.jid],
        set: row,
      })
      .run();
  }
  if (version !== undefined)
    tx.update(tables.rosters)
      .set({ version, updatedAt: tx.now })
      .where(eq(tables.rosters.accountId, accountId))
      .run();
}

/** The stored roster, by JID. */
export function listRoster(store: Store | StoreTx, accountId: string): RosterItem[] {
  const read = (tx: StoreTx) =>
    tx
      .select()
      .from(tables.rosterItems)
      .where(eq(tables.rosterItems.accountId, accountId))
      .orderBy(asc(tables.rosterItems.jid))
      .all()
      .map((r) => ({
        jid: r.jid,
        name: r.name,
        subscription: r.subscription,
        ask: r.ask === "subscribe" ? ("subscribe" as const) : null,
        groups: parseGroups(r.groups),
        approved: r.approved,
      }));
  return "read" in store ? store.read(read) : read(store);
}

function parseGroups(json: string): string[] {
  try {
    const v: unknown = JSON.parse(json);
    return Array.isArray(v) ? v.filter((g): g is string => typeof g === "string") : [];
  } catch {
    return []; // a damaged row loses its groups, not the contact
  }
}

/** Subscription requests waiting for an answer, oldest first. */
export function listSubscriptionRequests(
  store: Store | StoreTx,
  accountId: string,
): SubscriptionRequest[] {
  const read = (tx: StoreTx) =>
    tx
      .select({
        jid: tables.subscriptionRequests.jid,
        status: tables.subscriptionRequests.status,
        receivedAt: tables.subscriptionRequests.receivedAt,
      })
      .from(tables.subscriptionRequests)
      .where(eq(tables.subscriptionRequests.accountId, accountId))
      .orderBy(asc(tables.subscriptionRequests.receivedAt))
      .all();
  return "read" in store ? store.read(read) : read(store);
}

/**
 * Inbound presence of a subscription type (RFC 6121 §3): a `subscribe` is stored until the user
 * answers; an `unsubscribe` withdraws it. (`subscribed`/`unsubscribed` change the roster, which the
 * server pushes.) Returns true when the presence was one of those.
 */
export function handleSubscriptionPresence(ctx: ProtocolContext, presence: Element): boolean {
  const type = presence.attrs.type;
  if (type !== "subscribe" && type !== "unsubscribe") return false;
  const from = presence.attrs.from;
  if (!from) return true;
  const jid = bare(from);
  const key = and(
    eq(tables.subscriptionRequests.accountId, ctx.accountId),
    eq(tables.subscriptionRequests.jid, jid),
  );
  if (type === "unsubscribe") {
    ctx.tx.delete(tables.subscriptionRequests).where(key).run();
    return true;
  }
  const status = presence.getChildText("status")?.slice(0, 1024) ?? null;
  ctx.tx
    .insert(tables.subscriptionRequests)
    .values({ accountId: ctx.accountId, jid, status, receivedAt: ctx.tx.now })
    .onConflictDoUpdate({
      target: [tables.subscriptionRequests.accountId, tables.subscriptionRequests.jid],
      set: { status },
    })
    .run();
  ctx.afterCommit(() => ctx.session.emit("subscription-request", { jid, status }));
  return true;
}

/**
 * Answer or change a presence subscription (RFC 6121 §3): the presence goes out in the same
 * transaction that forgets the answered request.
 * - approve: they may see our presence (`subscribed`); with `subscribeBack`, we ask to see theirs.
 * - deny / cancel: they may not (or no longer) see it (`unsubscribed`).
 * - subscribe / unsubscribe: ask to see theirs, or stop.
 */
export function answerSubscription(
  ctx: ProtocolContext,
  jid: string,
  action: "approve" | "deny" | "cancel" | "subscribe" | "unsubscribe",
  opts: { subscribeBack?: boolean } = {},
): void {
  const to = bare(jid);
  const send = (type: string) => ctx.send(xml("presence", { to, type }));
  if (action === "approve" || action === "deny" || action === "cancel") {
    ctx.tx
      .delete(tables.subscriptionRequests)
      .where(
        and(
          eq(tables.subscriptionRequests.accountId, ctx.accountId),
          eq(tables.subscriptionRequests.jid, to),
        ),
      )
      .run();
  }
  if (action === "approve") {
    send("subscribed");
    if (opts.subscribeBack) send("subscribe");
  } else if (action === "deny" || action === "cancel") send("unsubscribed");
  else send(action);
}
