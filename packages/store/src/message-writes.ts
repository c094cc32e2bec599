/**
 * The writes every received message makes (its row; its chat, when the chat is new), as
 * statements prepared once per connection. This is the per-stanza hot path: building the same
 * drizzle query for every message cost more CPU than the SQLite work it produced (and most of the
 * garbage). The SQL is still drizzle's, rendered once from the schema with named placeholders;
 * per message only the values are bound (drizzle's own prepared queries re-check every parameter's
 * class on each run).
 */
import { and, eq, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/better-sqlite3";
import { chats, messages } from "./schema.js";
import type { StoreTx } from "./store.js";
import type { SqlStatement, SqliteDriver } from "./driver.js";
import { TransactionUsageError } from "./errors.js";

/** A message row as stored (the row id is assigned by SQLite). */
export interface NewMessageRow {
  accountId: string;
  /** Bare JID of the contact or room the message belongs to. */
  chatJid: string;
  direction: "in" | "out";
  fromJid: string;
  toJid: string | null;
  type: string;
  messageId: string | null;
  originId: string | null;
  stanzaId: string | null;
  stanzaIdBy: string | null;
  archiveId: string | null;
  body: string | null;
  /** Decrypted from an end-to-end encrypted message (OMEMO plugin). Default false. */
  encrypted?: boolean;
  deliveryState: string;
  sentAt: number;
  storedAt: number;
}

/**
 * The chat a stored message belongs to. A new chat is created with the message counted in; an
 * existing one is not written at all once it counts from a message (chats.counted_from_id): the
 * messages stored after that one are counted when the chats are read (listChats).
 */
export interface ChatActivity {
  accountId: string;
  jid: string;
  kind: "chat" | "groupchat";
  /**
   * Count the message as unread. Must be `direction === "in"`: listChats counts the incoming
   * messages stored after the chat's counted_from_id as unread.
   */
  unread: boolean;
  /** The message's stored_at: the chat's last activity. */
  at: number;
  /** The row id insertMessageRow returned for the message. */
  messageId: number;
}

const p = (name: string) => sql.placeholder(name);

/** The two statements as SQL text and the placeholder name of each `?`, in order. */
function renderStatements() {
  const db = drizzle.mock();
  const insertMessage = db
    .insert(messages)
    .values({
      accountId: p("accountId"),
      chatJid: p("chatJid"),
      direction: p("direction"),
      fromJid: p("fromJid"),
      toJid: p("toJid"),
      type: p("type"),
      messageId: p("messageId"),
      originId: p("originId"),
      stanzaId: p("stanzaId"),
      stanzaIdBy: p("stanzaIdBy"),
      archiveId: p("archiveId"),
      body: p("body"),
      encrypted: p("encrypted"),
      deliveryState: p("deliveryState"),
      sentAt: p("sentAt"),
      storedAt: p("storedAt"),
    })
    // The unique indexes (stanza-id, origin-id, archive id) make a replayed copy a no-op.
    .onConflictDoNothing();
  const thisChat = and(eq(chats.accountId, p("accountId")), eq(chats.jid, p("jid")));
  // Per message: is the chat there, and does it count from a message already?
  const chatCountedFrom = db
    .select({ countedFromId: chats.countedFromId })
    .from(chats)
    .where(thisChat);
  // A new chat: the message counted in.
  const insertChat = db.insert(chats).values({
    accountId: p("accountId"),
    jid: p("jid"),
    kind: p("kind"),
    unreadCount: p("unread"),
    lastActivityAt: p("at"),
    createdAt: p("at"),
    countedFromId: p("messageId"),
  });
  // A chat whose counters are complete in its row (created by a send or a room join, or before
  // migration 0013): the message counted in, and from now on the messages after it at read time.
  const foldIntoChat = db
    .update(chats)
    .set({
      unreadCount: sql`${chats.unreadCount} + ${p("unread")}`,
      lastActivityAt: sql`max(coalesce(${chats.lastActivityAt}, ${p("at")}), ${p("at")})`,
      countedFromId: sql`${p("messageId")}`,
    })
    .where(thisChat);
  return {
    insertMessage: render(insertMessage),
    chatCountedFrom: render(chatCountedFrom),
    insertChat: render(insertChat),
    foldIntoChat: render(foldIntoChat),
  };
}

/** A bound value: the placeholder it takes its value from, or a constant (a column default). */
type Slot = { name: string } | { constant: unknown };

function render(query: { toSQL(): { sql: string; params: unknown[] } }) {
  const { sql: text, params } = query.toSQL();
  const slots = params.map((x): Slot => {
    // A placeholder arrives as is or (insert values) wrapped in a Param; toSQL() has already
    // turned a column default (messages.encrypted) into its driver value.
    const v = x as { name?: unknown; value?: { name?: unknown } } | null;
    const name = v?.name ?? v?.value?.name;
    return typeof name === "string" ? { name } : { constant: x };
  });
  return { text, slots };
}

let rendered: ReturnType<typeof renderStatements> | null = null;

interface Prepared {
  stmt: SqlStatement;
  slots: readonly Slot[];
}
interface Statements {
  insertMessage: Prepared;
  chatCountedFrom: Prepared;
  insertChat: Prepared;
  foldIntoChat: Prepared;
}
const cache = new WeakMap<SqliteDriver, Statements>();
function statements(tx: StoreTx): Statements {
  let s = cache.get(tx.sqlite);
  if (!s) {
    const r = (rendered ??= renderStatements());
    const prep = (x: { text: string; slots: Slot[] }) => ({
      stmt: tx.sqlite.prepare(x.text),
      slots: x.slots,
    });
    s = {
      insertMessage: prep(r.insertMessage),
      chatCountedFrom: prep(r.chatCountedFrom),
      insertChat: prep(r.insertChat),
      foldIntoChat: prep(r.foldIntoChat),
    };
    s.chatCountedFrom.stmt.pluck();
    checkParams(s.chatCountedFrom, CHAT_PARAMS, "chat select", "CHAT_PARAMS");
    cache.set(tx.sqlite, s);
  }
  return s;
}

// The message insert's placeholders in the rendered statement's order. insertMessageRow binds
// them positionally, straight off the row: the generic name lookup (a spread copy of the row and
// a keyed read per slot) cost a third of the statement's own CPU (3.4 of 8.8 µs), per message.
const MESSAGE_PARAMS = [
  "accountId",
  "chatJid",
  "direction",
  "fromJid",
  "toJid",
  "type",
  "messageId",
  "originId",
  "stanzaId",
  "stanzaIdBy",
  "archiveId",
  "body",
  "encrypted",
  "deliveryState",
  "sentAt",
  "storedAt",
] as const;
let messageParamsChecked = false;
const CHAT_PARAMS = ["accountId", "jid"] as const;

/**
 * Insert a message row unless one with the same stanza-id, origin-id or archive id is stored
 * already. Returns the new row's id, or null when a copy was stored already.
 */
export function insertMessageRow(tx: StoreTx, row: NewMessageRow): number | null {
  if (tx.mode !== "write")
    throw new TransactionUsageError("insertMessageRow() needs a write transaction");
  const { insertMessage } = statements(tx);
  if (!messageParamsChecked) {
    checkParams(insertMessage, MESSAGE_PARAMS, "message insert", "MESSAGE_PARAMS");
    messageParamsChecked = true;
  }
  const result = insertMessage.stmt.run(
    row.accountId,
    row.chatJid,
    row.direction,
    row.fromJid,
    row.toJid,
    row.type,
    row.messageId,
    row.originId,
    row.stanzaId,
    row.stanzaIdBy,
    row.archiveId,
    row.body,
    // SQLite has no boolean: the column stores 0/1 (drizzle's boolean mode reads it back).
    row.encrypted ? 1 : 0,
    row.deliveryState,
    row.sentAt,
    row.storedAt,
  );
  return result.changes > 0 ? Number(result.lastInsertRowid) : null;
}

/**
 * Count a just stored message into its chat (see ChatActivity): creates the chat when new, writes
 * it when its counters do not count from a message yet, and otherwise only reads (one indexed
 * SELECT): the chat's unread count and last activity then follow from its messages at read time.
 */
export function touchChat(tx: StoreTx, chat: ChatActivity): void {
  if (tx.mode !== "write") throw new TransactionUsageError("touchChat() needs a write transaction");
  const s = statements(tx);
  const countedFrom = s.chatCountedFrom.stmt.get(chat.accountId, chat.jid) as
    number | null | undefined;
  // Counted from a message: this one (stored after it) is counted at read time.
  if (typeof countedFrom === "number") return;
  const values = {
    accountId: chat.accountId,
    jid: chat.jid,
    kind: chat.kind,
    unread: chat.unread ? 1 : 0,
    at: chat.at,
    messageId: chat.messageId,
  };
  run(countedFrom === undefined ? s.insertChat : s.foldIntoChat, values);
}

/** Binds by placeholder name, constants (column defaults) in between. */
function run(prepared: Prepared, values: Readonly<Record<string, unknown>>) {
  const args = new Array<unknown>(prepared.slots.length);
  for (let i = 0; i < args.length; i++) {
    const slot = prepared.slots[i]!;
    args[i] = "name" in slot ? values[slot.name] : slot.constant;
  }
  return prepared.stmt.run(...args);
}

/** The placeholders of a rendered statement must be the ones bound positionally, in order. */
function checkParams(
  prepared: Prepared,
  expected: readonly string[],
  what: string,
  constant: string,
): void {
  const names = prepared.slots.map((s) => ("name" in s ? s.name : "(constant)"));
  if (names.join() !== expected.join())
    throw new Error(`${what} parameters are now ${names.join()}: update ${constant}`);
}
