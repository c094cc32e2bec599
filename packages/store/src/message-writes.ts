/**
 * The writes every received message makes (its row, its chat's unread count and last activity),
 * as statements prepared once per connection. This is the per-stanza hot path: building the same
 * drizzle query for every message cost more CPU than the SQLite work it produced (and most of the
 * garbage). The SQL is still drizzle's, rendered once from the schema with named placeholders;
 * per message only the values are bound (drizzle's own prepared queries re-check every parameter's
 * class on each run).
 */
import { sql } from "drizzle-orm";
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

/** The chat a stored message belongs to: created when new, else its activity (and unread) bumped. */
export interface ChatActivity {
  accountId: string;
  jid: string;
  kind: "chat" | "groupchat";
  /** Count the message as unread (an incoming one). */
  unread: boolean;
  at: number;
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
  const touchChat = db
    .insert(chats)
    .values({
      accountId: p("accountId"),
      jid: p("jid"),
      kind: p("kind"),
      unreadCount: p("unread"),
      lastActivityAt: p("at"),
      createdAt: p("at"),
    })
    .onConflictDoUpdate({
      target: [chats.accountId, chats.jid],
      set: {
        lastActivityAt: sql`excluded.last_activity_at`,
        unreadCount: sql`${chats.unreadCount} + excluded.unread_count`,
      },
    });
  return { insertMessage: render(insertMessage), touchChat: render(touchChat) };
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
const cache = new WeakMap<SqliteDriver, { insertMessage: Prepared; touchChat: Prepared }>();
function statements(tx: StoreTx) {
  let s = cache.get(tx.sqlite);
  if (!s) {
    rendered ??= renderStatements();
    const prep = (r: { text: string; slots: Slot[] }) => ({
      stmt: tx.sqlite.prepare(r.text),
      slots: r.slots,
    });
    s = { insertMessage: prep(rendered.insertMessage), touchChat: prep(rendered.touchChat) };
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

/**
 * Insert a message row unless one with the same stanza-id, origin-id or archive id is stored
 * already. Returns whether a row was inserted.
 */
export function insertMessageRow(tx: StoreTx, row: NewMessageRow): boolean {
  if (tx.mode !== "write")
    throw new TransactionUsageError("insertMessageRow() needs a write transaction");
  const { insertMessage } = statements(tx);
  if (!messageParamsChecked) {
    checkParams(insertMessage, MESSAGE_PARAMS, "message insert", "MESSAGE_PARAMS");
    messageParamsChecked = true;
  }
  return (
    insertMessage.stmt.run(
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
    ).changes > 0
  );
}

/** Create the chat of a stored message, or bump its last activity (and unread count). */
export function touchChat(tx: StoreTx, chat: ChatActivity): void {
  if (tx.mode !== "write") throw new TransactionUsageError("touchChat() needs a write transaction");
  run(statements(tx).touchChat, {
    accountId: chat.accountId,
    jid: chat.jid,
    kind: chat.kind,
    unread: chat.unread ? 1 : 0,
    at: chat.at,
  });
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
