// XEP-0402 bookmarks (PEP node urn:xmpp:bookmarks:1) so joined rooms survive restarts and other
// devices' joins appear: fetched on every new stream, followed live through +notify, and
// published when the user joins or leaves. Where the server does not bridge XEP-0048 private
// storage (no #compat on the account) that storage is read and written as well, for older clients
// and servers whose PEP keeps nothing. Autojoin bookmarks are joined like rooms we remember; a
// room that let us go (kicked, banned, destroyed) is not joined again by its bookmark. Another
// device's notification that turns autojoin off, or retracts the bookmark, makes us leave the room
// (XEP-0402 1.2 §4: the client SHOULD leave immediately).
import xml, { type Element } from "@xmpp/xml";
import parseXml from "@xmpp/xml/lib/parse.js";
import { listIqHandlers, tables } from "@lichen/store";
import { and, eq } from "drizzle-orm";
import type { HandlerFn, HandlerRegistry } from "./handlers.js";
import { bare } from "./jid.js";
import type { ProtocolContext } from "./context.js";
import type { Bookmark } from "./events.js";

export type { Bookmark };

export const NS_BOOKMARKS = "urn:xmpp:bookmarks:1";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event";
const NS_LEGACY_PRIVATE = "jabber:iq:private";
const NS_LEGACY_BOOKMARKS = "storage:bookmarks";
/**
 * XEP-0402 §5.3/§6: the server keeps XEP-0048 private storage in step with the PEP bookmarks
 * (Prosody's mod_bookmarks). Without it (Prosody without mod_bookmarks, ejabberd 23.01, which
 * converts only between private storage and XEP-0048's PEP node) we write private storage too.
 */
export const NS_BOOKMARKS_COMPAT = `${NS_BOOKMARKS}#compat`;

/**
 * What a bookmark makes us do in a room (muc.ts; passed in, so this module does not import it):
 * join, or leave (`detail` says why) — neither publishes the bookmark again.
 */
export interface BookmarkActions {
  join(ctx: ProtocolContext, room: string, nick: string): void;
  leave(ctx: ProtocolContext, room: string, detail: string): void;
}

/** One field of a submitted data form (XEP-0004), as publish-options and node configuration use. */
function formField(name: string, value: string): Element {
  return xml("field", { var: name }, xml("value", {}, value));
}

function parseConference(room: string, conf: Element | undefined): Bookmark | null {
  if (!conf || !room.includes("@")) return null;
  return {
    room: bare(room),
    name: conf.attrs.name ?? null,
    nick: conf.getChildText("nick") || null,
    autojoin: conf.attrs.autojoin === "true" || conf.attrs.autojoin === "1",
  };
}

/** The bookmarks in the `<items/>` of the bookmarks node (a fetch's answer or a notification). */
function bookmarksIn(items: Element | undefined): Bookmark[] {
  return (items?.getChildren("item") ?? [])
    .map((i) => parseConference(i.attrs.id ?? "", i.getChild("conference", NS_BOOKMARKS)))
    .filter((b): b is Bookmark => b !== null);
}

/**
 * An IQ to our own account (PEP, private storage) carrying `payload`; its answer goes to the
 * handler `handler` with `bound` (stored, so any process can take it).
 */
function sendOwnIq(
  ctx: ProtocolContext,
  type: "get" | "set",
  payload: Element,
  handler: string,
  bound: Record<string, unknown>,
): void {
  ctx.sendIq(xml("iq", { type }, payload), ctx.session.registry.descriptor(handler, bound), {
    timeoutTicks: 60,
  });
}

/** New stream: ask for the PEP bookmarks (the answer applies them, see applyBookmarks). */
export function fetchBookmarks(ctx: ProtocolContext): void {
  const items = xml("pubsub", { xmlns: NS_PUBSUB }, xml("items", { node: NS_BOOKMARKS }));
  sendOwnIq(ctx, "get", items, "lichen.bookmarks.items", {});
}

/** Publish (or update) the bookmark of a room: private to us, kept by the server (XEP-0402 §3). */
export function publishBookmark(
  ctx: ProtocolContext,
  b: Bookmark,
  opts: { maxItems?: boolean } = {},
): void {
  const maxItems = opts.maxItems !== false;
  const conference = xml(
    "conference",
    {
      xmlns: NS_BOOKMARKS,
      autojoin: b.autojoin ? "true" : "false",
      ...(b.name ? { name: b.name } : {}),
    },
    ...(b.nick ? [xml("nick", {}, b.nick)] : []),
  );
  const options = xml(
    "x",
    { xmlns: "jabber:x:data", type: "submit" },
    formField("FORM_TYPE", "http://jabber.org/protocol/pubsub#publish-options"),
    formField("pubsub#persist_items", "true"),
    // XEP-0402 §3. ejabberd 23.01 refuses these two fields (resource-constraint,
    // "Unknown field"): it gets the publish again without them (its PEP node keeps
    // many items and sends the last on presence; the bookmarks stay private).
    ...(maxItems
      ? [
          formField("pubsub#max_items", "max"),
          formField("pubsub#send_last_published_item", "never"),
        ]
      : []),
    formField("pubsub#access_model", "whitelist"),
  );
  const publish = xml(
    "pubsub",
    { xmlns: NS_PUBSUB },
    xml("publish", { node: NS_BOOKMARKS }, xml("item", { id: b.room }, conference)),
    xml("publish-options", {}, options),
  );
  sendOwnIq(ctx, "set", publish, "lichen.bookmarks.published", { ...b, maxItems });
  markBookmarked(ctx, b);
}

/**
 * XEP-0402 §8 (security considerations): where publish-options cannot carry the node's settings,
 * configure the node. Measured on ejabberd 23.01: a PEP node created by a publish without
 * `pubsub#max_items` has max_items 1 — each new bookmark evicts the previous one —,
 * send_last_published_item on_sub_and_presence and notify_retract 0; it accepts this form.
 */
function configureBookmarksNode(ctx: ProtocolContext, room: string): void {
  const form = xml(
    "x",
    { xmlns: "jabber:x:data", type: "submit" },
    formField("FORM_TYPE", `${NS_PUBSUB}#node_config`),
    formField("pubsub#max_items", "max"),
    formField("pubsub#send_last_published_item", "never"),
    formField("pubsub#notify_retract", "1"),
  );
  const configure = xml(
    "pubsub",
    { xmlns: `${NS_PUBSUB}#owner` },
    xml("configure", { node: NS_BOOKMARKS }, form),
  );
  sendOwnIq(ctx, "set", configure, "lichen.bookmarks.configured", { room });
}

function markBookmarked(ctx: ProtocolContext, b: Bookmark): void {
  const set = {
    kind: "groupchat" as const,
    bookmarked: true,
    autojoin: b.autojoin,
    ...(b.name ? { name: b.name } : {}),
  };
  ctx.tx
    .insert(tables.chats)
    .values({ accountId: ctx.accountId, jid: b.room, createdAt: ctx.tx.now, ...set })
    .onConflictDoUpdate({ target: [tables.chats.accountId, tables.chats.jid], set })
    .run();
}

/**
 * Bookmarks seen (fetched or pushed): stored, and autojoin rooms we are not in are joined. A live
 * notification (`live`) with autojoin off makes us leave a room we are in; a fetched list does not
 * (it may be older than a join of ours queued before the fetch was answered).
 */
function applyBookmarks(
  ctx: ProtocolContext,
  bookmarks: Bookmark[],
  actions: BookmarkActions,
  opts: { live?: boolean } = {},
): void {
  const ownLocal = (ctx.state.sm.boundJid ?? ctx.accountId).split("@")[0] ?? ctx.accountId;
  for (const b of bookmarks) {
    // Our own echo is reported (the event: the server has it) but changes nothing here.
    if (opts.live && ownPublishPending(ctx, b.room)) continue;
    const before = ctx.tx
      .select({
        nick: tables.chats.nick,
        status: tables.chats.roomStatus,
        kind: tables.chats.kind,
        bookmarked: tables.chats.bookmarked,
        autojoin: tables.chats.autojoin,
      })
      .from(tables.chats)
      .where(and(eq(tables.chats.accountId, ctx.accountId), eq(tables.chats.jid, b.room)))
      .get();
    markBookmarked(ctx, b);
    // A notification that says what we already have is an echo (ejabberd delivers our own a
    // second time, after the publish's answer): only a change of autojoin joins or leaves.
    if (opts.live && before?.bookmarked && before.autojoin === b.autojoin) continue;
    const inside = before?.kind === "groupchat" && before.nick !== null;
    // Removed by the room (kicked, banned, destroyed, refused): the user decides, not the bookmark.
    const sentAway =
      before?.status != null && !["joining", "joined", "left"].includes(before.status);
    if (b.autojoin && !inside && !sentAway) actions.join(ctx, b.room, b.nick ?? ownLocal);
    if (opts.live && !b.autojoin && inside)
      actions.leave(ctx, b.room, "autojoin turned off on another device");
  }
  if (bookmarks.length > 0) ctx.afterCommit(() => ctx.session.emit("bookmarks", bookmarks));
}

/**
 * A bookmark retracted (another device deleted it): still a chat (its messages stay), no longer
 * bookmarked, not auto-joined; and we leave the room — after unmarking it, so that leaving does not
 * publish the bookmark the other device deleted.
 */
function retractBookmark(ctx: ProtocolContext, room: string, actions: BookmarkActions): void {
  room = bare(room);
  const where = and(eq(tables.chats.accountId, ctx.accountId), eq(tables.chats.jid, room));
  const row = ctx.tx
    .select({ kind: tables.chats.kind, nick: tables.chats.nick })
    .from(tables.chats)
    .where(where)
    .get();
  if (!row) return;
  ctx.tx.update(tables.chats).set({ bookmarked: false, autojoin: false }).where(where).run();
  if (row.kind === "groupchat" && row.nick !== null)
    actions.leave(ctx, room, "bookmark removed on another device");
  syncLegacyBookmarks(ctx, room);
}

/**
 * Is our own publish of this room's bookmark still unanswered? Then a notification for the room
 * is the echo of it (or of an earlier one of ours) and says nothing new: applying a stale echo
 * would undo a join or leave made since.
 */
function ownPublishPending(ctx: ProtocolContext, room: string): boolean {
  return listIqHandlers(ctx.tx, ctx.accountId).some(
    (h) => h.handler.name === "lichen.bookmarks.published" && h.handler.bound.room === room,
  );
}

/**
 * A PEP notification of our bookmarks node (+notify), only from our own bare JID: anyone else's
 * "bookmarks" are a forgery. Returns true when the message was one.
 */
export function handleBookmarksEvent(
  ctx: ProtocolContext,
  message: Element,
  own: string,
  actions: BookmarkActions,
): boolean {
  const items = message.getChild("event", NS_PUBSUB_EVENT)?.getChild("items");
  if (!items || items.attrs.node !== NS_BOOKMARKS) return false;
  if (message.attrs.from && message.attrs.from !== own) return true;
  applyBookmarks(ctx, bookmarksIn(items), actions, { live: true });
  for (const r of items.getChildren("retract"))
    if (r.attrs.id) retractBookmark(ctx, r.attrs.id, actions);
  return true;
}

function serverHasCompat(ctx: ProtocolContext): boolean {
  return ctx.state.features.account.includes(NS_BOOKMARKS_COMPAT);
}

/**
 * Without #compat: write our bookmarks to XEP-0048 private storage as well (XEP-0049 holds one
 * element for all of them, so read, merge, write), so older clients and servers whose PEP does not
 * keep them still have them after a restart. Called after a join, leave or retraction changed the
 * chat rows. One read-write at a time: a pending one writes what the rows say when its read is
 * answered, which includes this change.
 */
export function syncLegacyBookmarks(ctx: ProtocolContext, room: string): void {
  if (serverHasCompat(ctx)) return;
  const pending = listIqHandlers(ctx.tx, ctx.accountId).some(
    (h) => h.handler.name === "lichen.bookmarks.legacy-read",
  );
  if (pending) return;
  readLegacyStorage(ctx, "lichen.bookmarks.legacy-read", { room });
}

/** Ask for the XEP-0048 storage in XEP-0049 private storage; `handler` gets the answer. */
function readLegacyStorage(
  ctx: ProtocolContext,
  handler: string,
  bound: Record<string, unknown>,
): void {
  const query = xml(
    "query",
    { xmlns: NS_LEGACY_PRIVATE },
    xml("storage", { xmlns: NS_LEGACY_BOOKMARKS }),
  );
  sendOwnIq(ctx, "get", query, handler, bound);
}

/**
 * The XEP-0048 storage to write: our rooms as the chat rows say (bookmarked ones, with autojoin,
 * name and nick; unbookmarked ones removed), and every entry of rooms we do not know (another
 * client's) and every other element (`<url/>`) as stored. A conference we keep keeps its unknown
 * children (`<password/>`).
 */
function legacyStorage(ctx: ProtocolContext, stored: Element | undefined): Element {
  const rows = ctx.tx
    .select({
      jid: tables.chats.jid,
      name: tables.chats.name,
      nick: tables.chats.nick,
      wantedNick: tables.chats.wantedNick,
      bookmarked: tables.chats.bookmarked,
      autojoin: tables.chats.autojoin,
    })
    .from(tables.chats)
    .where(and(eq(tables.chats.accountId, ctx.accountId), eq(tables.chats.kind, "groupchat")))
    .all();
  const ours = new Map(rows.map((r) => [r.jid, r]));
  const conference = (r: (typeof rows)[number], before?: Element): Element => {
    // A new element (parsed ones have no clone()) with the stored one's other attributes and children.
    const kept = (before?.children ?? []).filter((c) => typeof c !== "string" && c.name !== "nick");
    const nick = r.wantedNick ?? r.nick;
    return xml(
      "conference",
      {
        ...before?.attrs,
        jid: r.jid,
        autojoin: r.autojoin ? "true" : "false",
        ...(r.name ? { name: r.name } : {}),
      },
      ...kept,
      ...(nick ? [xml("nick", {}, nick)] : []),
    );
  };
  const storage = xml("storage", { xmlns: NS_LEGACY_BOOKMARKS });
  const written = new Set<string>();
  for (const child of stored?.children ?? []) {
    if (typeof child === "string") continue;
    const jid = child.name === "conference" ? bare(child.attrs.jid ?? "") : null;
    const row = jid ? ours.get(jid) : undefined;
    if (!jid || !row) {
      storage.append(child); // not ours to change
      continue;
    }
    if (!row.bookmarked || written.has(jid)) continue;
    storage.append(conference(row, child));
    written.add(jid);
  }
  for (const r of rows) if (r.bookmarked && !written.has(r.jid)) storage.append(conference(r));
  return storage;
}

function parseAnswer(stanza: unknown): Element | null {
  return typeof stanza === "string" ? parseXml(stanza) : null;
}

/** The `<storage/>` of a private-storage answer, if it has one. */
function legacyStorageIn(stanza: unknown): Element | undefined {
  return parseAnswer(stanza)
    ?.getChild("query", NS_LEGACY_PRIVATE)
    ?.getChild("storage", NS_LEGACY_BOOKMARKS);
}

/** A failed bookmark IQ, told to the app (the bound room, the answer's error condition). */
function reportBookmarkError(ctx: ProtocolContext, room: string, args: Record<string, unknown>) {
  const condition = typeof args.condition === "string" ? args.condition : "error";
  ctx.afterCommit(() => ctx.session.emit("bookmark-error", { room, condition }));
}

/**
 * The answer to a write that needs nothing more when it succeeds (node configuration, private
 * storage written): an error is reported. Serves several handler names, since stored handler
 * rows refer to each of them.
 */
const reportIfFailed: HandlerFn = (hctx, args) => {
  if (args.type === "result") return;
  reportBookmarkError(hctx as ProtocolContext, String(args.room), args);
};

export function registerBookmarkHandlers(
  registry: HandlerRegistry,
  actions: BookmarkActions,
): void {
  if (registry.has("lichen.bookmarks.items")) return;
  registry.define("lichen.bookmarks.items", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    const items =
      args.type === "result"
        ? parseAnswer(args.stanza)?.getChild("pubsub", NS_PUBSUB)?.getChild("items")
        : undefined;
    const bookmarks = bookmarksIn(items);
    applyBookmarks(ctx, bookmarks, actions);
    // With #compat the server mirrors private storage into PEP: nothing more to read. Without it
    // (or with no PEP bookmarks at all) older clients' XEP-0048 private storage may hold rooms
    // PEP does not; a room in both is taken from PEP.
    if (bookmarks.length > 0 && serverHasCompat(ctx)) return;
    readLegacyStorage(ctx, "lichen.bookmarks.legacy", { skip: bookmarks.map((b) => b.room) });
  });
  registry.define("lichen.bookmarks.legacy", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    if (args.type !== "result") return;
    const storage = legacyStorageIn(args.stanza);
    const skip = new Set(Array.isArray(args.skip) ? args.skip.map(String) : []);
    const bookmarks = (storage?.getChildren("conference") ?? [])
      .map((c) => parseConference(c.attrs.jid ?? "", c))
      .filter((b): b is Bookmark => b !== null && !skip.has(b.room));
    applyBookmarks(ctx, bookmarks, actions);
  });
  registry.define("lichen.bookmarks.legacy-read", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    const room = String(args.room);
    if (serverHasCompat(ctx)) return; // learned meanwhile: the server mirrors PEP itself
    if (args.type !== "result") {
      // Unreadable: writing now could wipe other clients' entries. Reported; the next change retries.
      return reportBookmarkError(ctx, room, args);
    }
    const stored = legacyStorageIn(args.stanza);
    const query = xml("query", { xmlns: NS_LEGACY_PRIVATE }, legacyStorage(ctx, stored));
    sendOwnIq(ctx, "set", query, "lichen.bookmarks.legacy-written", { room });
  });
  registry.define("lichen.bookmarks.configured", reportIfFailed);
  registry.define("lichen.bookmarks.legacy-written", reportIfFailed);
  registry.define("lichen.bookmarks.published", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    const room = String(args.room);
    if (args.type === "result") {
      // Published without max_items (ejabberd 23.01): its node now keeps one item, sends the
      // last one on presence and does not tell other devices about retractions. Configure it.
      if (args.maxItems === false) configureBookmarksNode(ctx, room);
      return;
    }
    if (args.maxItems === true && !args.synthetic) {
      const b: Bookmark = {
        room,
        name: typeof args.name === "string" ? args.name : null,
        nick: typeof args.nick === "string" ? args.nick : null,
        autojoin: args.autojoin === true,
      };
      return publishBookmark(ctx, b, { maxItems: false });
    }
    reportBookmarkError(ctx, room, args);
  });
}
