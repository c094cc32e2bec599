// Read-only views of the database: no lock, no network.
import {
  listChats as storeChats,
  listMessages,
  messagesStoredAfter,
  type Store,
  type StoredMessage,
  tables,
} from "@lichen/store";
import { inArray, or } from "drizzle-orm";
import { type CliContext, openAccount } from "../context.js";
import { formatMessage, isoTime, table, type MessageLine } from "../format.js";
import { parseBareJid } from "../settings.js";

export interface ChatRow {
  jid: string;
  kind: string;
  unread: number;
  lastActivityAt: number | null;
}

/** Chats by last activity (the store's read API; chats with only outgoing messages included). */
export function listChats(store: Store, accountId: string): ChatRow[] {
  return storeChats(store, accountId).map((c) => ({
    jid: c.jid,
    kind: c.kind,
    unread: c.unreadCount,
    lastActivityAt: c.lastActivityAt,
  }));
}

/** The last `n` messages of a chat in time order (see the store's listMessages), oldest first. */
export function lastMessages(
  store: Store,
  accountId: string,
  chatJid: string,
  n: number,
): MessageLine[] {
  // Pages of at most 500 (the store's cap), newest first, until n.
  const out: MessageLine[] = [];
  let page = listMessages(store, accountId, chatJid, { limit: Math.min(n, 500) });
  for (;;) {
    out.unshift(...page.messages.map(line));
    if (out.length >= n || !page.hasOlder || page.messages.length === 0) break;
    page = listMessages(store, accountId, chatJid, {
      limit: Math.min(n - out.length, 500),
      before: page.messages[0]!,
    });
  }
  return out.slice(-n);
}

/** The fields the CLI prints (its JSON output stays the same shape). */
function line(m: StoredMessage): MessageLine {
  return {
    id: m.id,
    direction: m.direction,
    chatJid: m.chatJid,
    fromJid: m.fromJid,
    body: m.body,
    deliveryState: m.deliveryState,
    sentAt: m.sentAt,
    originId: m.originId,
    stanzaId: m.stanzaId,
    type: m.type,
  };
}

/** Messages of any chat stored after row id `afterId`, in arrival order. */
export function messagesAfter(store: Store, accountId: string, afterId: number): MessageLine[] {
  const out: MessageLine[] = [];
  for (let page = messagesStoredAfter(store, accountId, afterId); page.length > 0;) {
    out.push(...page.map(line));
    page = messagesStoredAfter(store, accountId, page[page.length - 1]!.id);
  }
  return out;
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
    const rows = withFiles(
      store,
      lastMessages(store, settings.accountId, `${local}@${domain}`, opts.lines),
    );
    if (opts.json) return ctx.out(JSON.stringify(rows));
    if (rows.length === 0) return ctx.out(`no messages with ${local}@${domain}`);
    for (const m of rows) ctx.out(formatMessage(m));
  } finally {
    store.close();
  }
}

/**
 * The attachment of each message, if any: a received file by its message row, a sent one by
 * its id (= the message's origin-id).
 */
export function withFiles(store: Store, rows: MessageLine[]): MessageLine[] {
  if (rows.length === 0) return rows;
  const files = store.read((tx) =>
    tx
      .select()
      .from(tables.attachments)
      .where(
        or(
          inArray(
            tables.attachments.messageRowId,
            rows.map((r) => r.id),
          ),
          inArray(
            tables.attachments.id,
            rows.flatMap((r) => (r.originId ? [r.originId] : [])),
          ),
        ),
      )
      .all(),
  );
  if (files.length === 0) return rows;
  return rows.map((r) => {
    const f = files.find((a) =>
      r.direction === "in" ? a.messageRowId === r.id : a.direction === "out" && a.id === r.originId,
    );
    return f
      ? {
          ...r,
          file: {
            state: f.state,
            size: f.size,
            mimeType: f.mimeType,
            localPath: f.localPath,
            error: f.error,
          },
        }
      : r;
  });
}
