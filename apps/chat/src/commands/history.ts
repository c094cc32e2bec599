// Read-only views of the database: no lock, no network.
import { tables, type Store } from "@lichen/store";
import { and, asc, desc, eq, gt, sql } from "drizzle-orm";
import { type CliContext, openAccount } from "../context.js";
import { formatMessage, isoTime, table, type MessageLine } from "../format.js";
import { parseBareJid } from "../settings.js";

export interface ChatRow {
  jid: string;
  kind: string;
  unread: number;
  lastActivityAt: number | null;
}

/**
 * Chats by last activity. Chats with only outgoing messages have no `chats` row yet (the engine
 * creates one on the first stored incoming message), so chat JIDs of stored messages are merged in.
 */
export function listChats(store: Store, accountId: string): ChatRow[] {
  return store.read((tx) => {
    const rows: ChatRow[] = tx
      .select({
        jid: tables.chats.jid,
        kind: tables.chats.kind,
        unread: tables.chats.unreadCount,
        lastActivityAt: tables.chats.lastActivityAt,
      })
      .from(tables.chats)
      .where(eq(tables.chats.accountId, accountId))
      .all();
    const known = new Set(rows.map((r) => r.jid));
    const fromMessages = tx
      .select({
        jid: tables.messages.chatJid,
        type: sql<string>`max(${tables.messages.type})`,
        lastActivityAt: sql<number>`max(${tables.messages.storedAt})`,
      })
      .from(tables.messages)
      .where(eq(tables.messages.accountId, accountId))
      .groupBy(tables.messages.chatJid)
      .all();
    for (const m of fromMessages) {
      if (known.has(m.jid)) continue;
      rows.push({
        jid: m.jid,
        kind: m.type === "groupchat" ? "groupchat" : "chat",
        unread: 0,
        lastActivityAt: m.lastActivityAt,
      });
    }
    return rows.sort(
      (a, b) => (b.lastActivityAt ?? 0) - (a.lastActivityAt ?? 0) || a.jid.localeCompare(b.jid),
    );
  });
}

const messageColumns = {
  id: tables.messages.id,
  direction: tables.messages.direction,
  chatJid: tables.messages.chatJid,
  fromJid: tables.messages.fromJid,
  body: tables.messages.body,
  deliveryState: tables.messages.deliveryState,
  sentAt: tables.messages.sentAt,
  originId: tables.messages.originId,
  stanzaId: tables.messages.stanzaId,
};

/**
 * The last `n` messages of a chat in time order, oldest first: by the message's own time (XEP-0203
 * delay stamps included, so a message fetched late from the archive sorts where it was sent) to
 * the second, then by arrival. To the second because servers stamp whole seconds (Prosody) while
 * our own sends carry milliseconds: a reply stamped 12:00:07 must not sort before our 12:00:07.5.
 */
export function lastMessages(
  store: Store,
  accountId: string,
  chatJid: string,
  n: number,
): MessageLine[] {
  return store
    .read((tx) =>
      tx
        .select(messageColumns)
        .from(tables.messages)
        .where(and(eq(tables.messages.accountId, accountId), eq(tables.messages.chatJid, chatJid)))
        .orderBy(desc(sql`${tables.messages.sentAt} / 1000`), desc(tables.messages.id))
        .limit(n)
        .all(),
    )
    .reverse();
}

/** Messages of any chat stored after row id `afterId`, oldest first. */
export function messagesAfter(store: Store, accountId: string, afterId: number): MessageLine[] {
  return store.read((tx) =>
    tx
      .select(messageColumns)
      .from(tables.messages)
      .where(and(eq(tables.messages.accountId, accountId), gt(tables.messages.id, afterId)))
      .orderBy(asc(tables.messages.id))
      .all(),
  );
}

export function chats(ctx: CliContext, opts: { json?: boolean }): void {
  const { settings, store } = openAccount(ctx, "main");
  try {
    const rows = listChats(store, settings.accountId);
    if (opts.json) return ctx.out(JSON.stringify(rows));
    if (rows.length === 0) return ctx.out("no chats yet");
    ctx.out(
      table([
        ["chat", "unread", "last activity"],
        ...rows.map((r) => [
          r.kind === "groupchat" ? `${r.jid} (group)` : r.jid,
          String(r.unread),
          isoTime(r.lastActivityAt),
        ]),
      ]),
    );
  } finally {
    store.close();
  }
}

export function tail(ctx: CliContext, jid: string, opts: { lines: number; json?: boolean }): void {
  const { local, domain } = parseBareJid(jid);
  const { settings, store } = openAccount(ctx, "main");
  try {
    const rows = lastMessages(store, settings.accountId, `${local}@${domain}`, opts.lines);
    if (opts.json) return ctx.out(JSON.stringify(rows));
    if (rows.length === 0) return ctx.out(`no messages with ${local}@${domain}`);
    for (const m of rows) ctx.out(formatMessage(m));
  } finally {
    store.close();
  }
}
