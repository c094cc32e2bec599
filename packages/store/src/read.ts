/**
 * The read API an app's UI needs: chats with unread counts and last activity, a chat's messages
 * in time order paged by position or by time, one message by its ids, and the unread marker.
 * Plain typed queries over the store's tables, so apps (and the CLIs) do not hand-write SQL.
 */
import { and, asc, desc, eq, lt, sql, type SQL } from "drizzle-orm";
import { chats, messages, roomInvitations, roomOccupants } from "./schema.js";
import type { Store, StoreTx } from "./store.js";

export interface StoredMessage {
  /** Row id: the stable position of this message in the store. */
  id: number;
  chatJid: string;
  direction: "in" | "out";
  fromJid: string;
  toJid: string | null;
  type: string;
  body: string | null;
  encrypted: boolean;
  /** Outgoing: pending, sent, received, displayed, error. Incoming: received. */
  deliveryState: string;
  /** When it was sent (the XEP-0203 delay stamp when there was one): the time order. */
  sentAt: number;
  storedAt: number;
  messageId: string | null;
  originId: string | null;
  stanzaId: string | null;
  /** The id our own archive gave it (XEP-0313), when it came from or was confirmed by MAM. */
  archiveId: string | null;
}

/** A message with the account it belongs to (listRecentMessages spans accounts). */
export interface AccountMessage extends StoredMessage {
  accountId: string;
}

export interface RecentMessagesOptions {
  /** Only this account (default: every account). */
  accountId?: string;
  /** Only this chat (default: every chat). */
  chatJid?: string;
  /** The newest this many (default 50, at most 500). */
  limit?: number;
}

export interface ChatSummary {
  jid: string;
  kind: "chat" | "groupchat";
  name: string | null;
  unreadCount: number;
  muted: boolean;
  /** Messages to it are end-to-end encrypted (OMEMO on: plain sends are refused). */
  omemo: boolean;
  lastActivityAt: number | null;
  /** The latest message in time order, if any. */
  lastMessage: StoredMessage | null;
}

/** A position in a chat's time order (any message's sentAt and id). */
export interface MessageCursor {
  sentAt: number;
  id: number;
}

export interface MessagePageOptions {
  /** At most this many (default 50, at most 500). */
  limit?: number;
  /** Messages before this position (the page ends at it). */
  before?: MessageCursor;
  /** Messages after this position. */
  after?: MessageCursor;
  /** Sent at or after this time (epoch ms). */
  since?: number;
  /** Sent before this time (epoch ms). */
  until?: number;
}

export interface MessagePage {
  /** Oldest first. */
  messages: StoredMessage[];
  /** Whether older (`before`-side) or newer messages exist beyond this page. */
  hasOlder: boolean;
  hasNewer: boolean;
}

const columns = {
  id: messages.id,
  chatJid: messages.chatJid,
  direction: messages.direction,
  fromJid: messages.fromJid,
  toJid: messages.toJid,
  type: messages.type,
  body: messages.body,
  encrypted: messages.encrypted,
  deliveryState: messages.deliveryState,
  sentAt: messages.sentAt,
  storedAt: messages.storedAt,
  messageId: messages.messageId,
  originId: messages.originId,
  stanzaId: messages.stanzaId,
  archiveId: messages.archiveId,
};

function reading<T>(store: Store | StoreTx, fn: (tx: StoreTx) => T): T {
  return "read" in store && typeof store.read === "function"
    ? store.read(fn)
    : fn(store as StoreTx);
}

/**
 * The time order: the second a message was sent, then arrival (row id). To the second because
 * servers stamp delayed messages in whole seconds (Prosody) while our own sends carry
 * milliseconds: a reply stamped 12:00:07 must not sort before our 12:00:07.5 it answers. Uses
 * the messages_chat_time index (account, chat, sent_at / 1000, id).
 */
const second = sql`${messages.sentAt} / 1000`;
const secondOf = (c: MessageCursor) => Math.floor(c.sentAt / 1000);
const beforePos = (c: MessageCursor): SQL =>
  sql`(${second} < ${secondOf(c)} OR (${second} = ${secondOf(c)} AND ${messages.id} < ${c.id}))`;
const afterPos = (c: MessageCursor): SQL =>
  sql`(${second} > ${secondOf(c)} OR (${second} = ${secondOf(c)} AND ${messages.id} > ${c.id}))`;

/**
 * A page of a chat's messages in time order (the second of sentAt, then row id), oldest first. Without
 * `after`, the page is the newest that matches (what a chat view opens on); with `after`, the
 * oldest after it (scrolling down, or "what arrived since").
 */
export function listMessages(
  store: Store | StoreTx,
  accountId: string,
  chatJid: string,
  opts: MessagePageOptions = {},
): MessagePage {
  const limit = Math.min(Math.max(1, Math.floor(opts.limit ?? 50)), 500);
  if (opts.before && opts.after)
    throw new RangeError("listMessages: give before or after, not both");
  const where: SQL[] = [eq(messages.accountId, accountId), eq(messages.chatJid, chatJid)];
  if (opts.since !== undefined) where.push(sql`${messages.sentAt} >= ${opts.since}`);
  if (opts.until !== undefined) where.push(lt(messages.sentAt, opts.until));
  return reading(store, (tx) => {
    const base = (extra: SQL[]) => and(...where, ...extra);
    if (opts.after) {
      const rows = tx
        .select(columns)
        .from(messages)
        .where(base([afterPos(opts.after)]))
        .orderBy(asc(second), asc(messages.id))
        .limit(limit + 1)
        .all() as StoredMessage[];
      const page = rows.slice(0, limit);
      const first = page[0];
      return {
        messages: page,
        hasNewer: rows.length > limit,
        hasOlder: first ? exists(tx, base([beforePos(first)])) : true,
      };
    }
    const rows = tx
      .select(columns)
      .from(messages)
      .where(base(opts.before ? [beforePos(opts.before)] : []))
      .orderBy(desc(second), desc(messages.id))
      .limit(limit + 1)
      .all() as StoredMessage[];
    const page = rows.slice(0, limit).reverse();
    const last = page[page.length - 1];
    return {
      messages: page,
      hasOlder: rows.length > limit,
      hasNewer: last ? exists(tx, base([afterPos(last)])) : !!opts.before,
    };
  });
}

function exists(tx: StoreTx, where: SQL | undefined): boolean {
  return tx.select({ id: messages.id }).from(messages).where(where).limit(1).get() !== undefined;
}

/**
 * Messages of any chat stored after row `afterId`, in arrival order (at most `limit`, default
 * 500): what a live view prints as it arrives. Pass the last id seen to continue.
 */
export function messagesStoredAfter(
  store: Store | StoreTx,
  accountId: string,
  afterId: number,
  limit = 500,
): StoredMessage[] {
  return reading(
    store,
    (tx) =>
      tx
        .select(columns)
        .from(messages)
        .where(and(eq(messages.accountId, accountId), sql`${messages.id} > ${afterId}`))
        .orderBy(asc(messages.id))
        .limit(limit)
        .all() as StoredMessage[],
  );
}

/**
 * The newest messages of the whole database, of one account, or of one chat, in time order (as
 * listMessages), oldest first: what an inspection tool shows. A whole-database view scans and
 * sorts; a chat's uses the messages_chat_time index.
 */
export function listRecentMessages(
  store: Store | StoreTx,
  opts: RecentMessagesOptions = {},
): AccountMessage[] {
  const limit = Math.min(Math.max(1, Math.floor(opts.limit ?? 50)), 500);
  const where: SQL[] = [];
  if (opts.accountId !== undefined) where.push(eq(messages.accountId, opts.accountId));
  if (opts.chatJid !== undefined) where.push(eq(messages.chatJid, opts.chatJid));
  return reading(store, (tx) =>
    (
      tx
        .select({ ...columns, accountId: messages.accountId })
        .from(messages)
        .where(where.length ? and(...where) : undefined)
        .orderBy(desc(second), desc(messages.id))
        .limit(limit)
        .all() as AccountMessage[]
    ).reverse(),
  );
}

/** One message by its row id, origin-id (ours or the sender's) or stanza-id. */
export function getMessage(
  store: Store | StoreTx,
  accountId: string,
  by: { id: number } | { originId: string } | { stanzaId: string },
): StoredMessage | null {
  const key =
    "id" in by
      ? eq(messages.id, by.id)
      : "originId" in by
        ? eq(messages.originId, by.originId)
        : eq(messages.stanzaId, by.stanzaId);
  return reading(
    store,
    (tx) =>
      (tx
        .select(columns)
        .from(messages)
        .where(and(eq(messages.accountId, accountId), key))
        .orderBy(asc(messages.id))
        .limit(1)
        .get() as StoredMessage | undefined) ?? null,
  );
}

/*
 * A chat's counters: the row's (everything up to its counted_from_id) plus the messages stored
 * after that id (none when it is null: the row is complete). Storing a message into an existing
 * chat writes no chat row (touchChat), so these are counted here, on the messages_chat index
 * (account, chat, id): incoming ones are unread, the latest one's stored_at is the last activity.
 */
const laterMessages = sql`${messages.accountId} = ${chats.accountId} AND ${messages.chatJid} = ${chats.jid} AND ${messages.id} > ${chats.countedFromId}`;
const unreadAfter = sql<number>`(SELECT count(*) FROM ${messages} WHERE ${laterMessages} AND ${messages.direction} = 'in')`;
const storedAtAfter = sql<
  number | null
>`(SELECT ${messages.storedAt} FROM ${messages} WHERE ${laterMessages} ORDER BY ${messages.id} DESC LIMIT 1)`;
const counters = {
  unreadCount: sql<number>`${chats.unreadCount} + ${unreadAfter}`,
  lastActivityAt: sql<
    number | null
  >`coalesce(max(${chats.lastActivityAt}, ${storedAtAfter}), ${chats.lastActivityAt}, ${storedAtAfter})`,
};

/**
 * Chats by last activity (newest first), with their unread counts and latest message. A chat
 * that has messages but no `chats` row (only outgoing messages so far) is listed too.
 */
export function listChats(store: Store | StoreTx, accountId: string): ChatSummary[] {
  return reading(store, (tx) => {
    const rows = tx
      .select({
        jid: chats.jid,
        kind: chats.kind,
        name: chats.name,
        muted: chats.muted,
        omemo: chats.omemo,
        ...counters,
      })
      .from(chats)
      .where(eq(chats.accountId, accountId))
      .all();
    const out = new Map<string, ChatSummary>();
    for (const r of rows)
      out.set(r.jid, {
        jid: r.jid,
        kind: r.kind,
        name: r.name,
        unreadCount: r.unreadCount,
        muted: r.muted,
        omemo: r.omemo,
        lastActivityAt: r.lastActivityAt,
        lastMessage: null,
      });
    const chatJids = tx
      .selectDistinct({ jid: messages.chatJid })
      .from(messages)
      .where(eq(messages.accountId, accountId))
      .all();
    for (const { jid } of chatJids) {
      const last = listMessages(tx, accountId, jid, { limit: 1 }).messages[0] ?? null;
      const summary = out.get(jid);
      if (summary) summary.lastMessage = last;
      else
        out.set(jid, {
          jid,
          kind: last?.type === "groupchat" ? "groupchat" : "chat",
          name: null,
          unreadCount: 0,
          muted: false,
          omemo: false,
          lastActivityAt: last?.storedAt ?? null,
          lastMessage: last,
        });
    }
    return [...out.values()].sort(
      (a, b) => (b.lastActivityAt ?? 0) - (a.lastActivityAt ?? 0) || a.jid.localeCompare(b.jid),
    );
  });
}

/**
 * The user has read the chat: its unread count goes to zero. Returns the count it had. The
 * messages counted at read time so far are folded into the row (it counts from the latest).
 */
export function markChatRead(store: Store, accountId: string, chatJid: string): number {
  return store.write((tx) => {
    const thisChat = and(eq(chats.accountId, accountId), eq(chats.jid, chatJid));
    const row = tx
      .select({
        ...counters,
        countedFromId: chats.countedFromId,
        latestId: sql<
          number | null
        >`(SELECT max(${messages.id}) FROM ${messages} WHERE ${messages.accountId} = ${chats.accountId} AND ${messages.chatJid} = ${chats.jid})`,
      })
      .from(chats)
      .where(thisChat)
      .get();
    if (!row || row.unreadCount === 0) return 0;
    tx.update(chats)
      .set({
        unreadCount: 0,
        lastActivityAt: row.lastActivityAt,
        // Still null when nothing was counted at read time (the row was complete).
        countedFromId:
          row.countedFromId === null ? null : Math.max(row.countedFromId, row.latestId ?? 0),
      })
      .where(thisChat)
      .run();
    return row.unreadCount;
  });
}

/** A group chat as the app lists it: where our occupancy stands, subject, bookmark flags. */
export interface RoomSummary {
  jid: string;
  /** Our nick while joined or joining (null: not in the room). */
  nick: string | null;
  /** joining, joined, left, kicked, banned, destroyed, removed, shutdown or error (null: unknown). */
  status: string | null;
  /** The kick/ban/destroy reason or the error condition that came with `status`. */
  statusDetail: string | null;
  subject: string | null;
  bookmarked: boolean;
  autojoin: boolean;
  occupants: RoomOccupant[];
}

export interface RoomOccupant {
  nick: string;
  /** Only when the room shows real JIDs to us. */
  realJid: string | null;
  affiliation: string;
  role: string;
}

/** The account's group chats with their current occupants, by JID. */
export function listRooms(store: Store | StoreTx, accountId: string): RoomSummary[] {
  return reading(store, (tx) => {
    const rows = tx
      .select()
      .from(chats)
      .where(and(eq(chats.accountId, accountId), eq(chats.kind, "groupchat")))
      .orderBy(chats.jid)
      .all();
    const occupants = tx
      .select()
      .from(roomOccupants)
      .where(eq(roomOccupants.accountId, accountId))
      .orderBy(roomOccupants.nick)
      .all();
    return rows.map((r) => ({
      jid: r.jid,
      nick: r.nick,
      status: r.roomStatus,
      statusDetail: r.roomStatusDetail,
      subject: r.subject,
      bookmarked: r.bookmarked,
      autojoin: r.autojoin,
      occupants: occupants
        .filter((o) => o.roomJid === r.jid)
        .map((o) => ({
          nick: o.nick,
          realJid: o.realJid,
          affiliation: o.affiliation,
          role: o.role,
        })),
    }));
  });
}

/** A room invitation waiting for the user (XEP-0249 direct or XEP-0045 mediated). */
export interface RoomInvitationSummary {
  room: string;
  /** Who invites (as the room names them, for a mediated one). */
  from: string;
  kind: "direct" | "mediated";
  reason: string | null;
  /** Whether it carries the room's password (used by the join; never shown). */
  hasPassword: boolean;
  receivedAt: number;
}

/** The account's pending room invitations, newest first. */
export function listRoomInvitations(
  store: Store | StoreTx,
  accountId: string,
): RoomInvitationSummary[] {
  return reading(store, (tx) =>
    tx
      .select()
      .from(roomInvitations)
      .where(eq(roomInvitations.accountId, accountId))
      .orderBy(desc(roomInvitations.receivedAt), roomInvitations.roomJid)
      .all()
      .map((r) => ({
        room: r.roomJid,
        from: r.fromJid,
        kind: r.kind,
        reason: r.reason,
        hasPassword: r.password !== null,
        receivedAt: r.receivedAt,
      })),
  );
}
