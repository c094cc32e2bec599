// XEP-0402 bookmarks (PEP node urn:xmpp:bookmarks:1) so joined rooms survive restarts and other
// devices' joins appear: fetched on every new stream (XEP-0048 private storage when the PEP node
// is empty, for accounts whose other clients only write that), followed live through +notify,
// and published when the user joins or leaves. Autojoin bookmarks are joined like rooms we
// remember; a room that let us go (kicked, banned, destroyed) is not joined again by its bookmark.
import xml, { type Element } from "@xmpp/xml";
import parseXml from "@xmpp/xml/lib/parse.js";
import { tables } from "@lichen/store";
import { and, eq } from "drizzle-orm";
import type { HandlerRegistry } from "./handlers.js";
import { bare } from "./jid.js";
import type { ProtocolContext } from "./context.js";
import type { Bookmark } from "./events.js";

export type { Bookmark };

export const NS_BOOKMARKS = "urn:xmpp:bookmarks:1";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";
const NS_PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event";
const NS_LEGACY_PRIVATE = "jabber:iq:private";
const NS_LEGACY_BOOKMARKS = "storage:bookmarks";

/** Joins a room for a bookmark (muc.ts: joinRoom without publishing the bookmark again). */
export type BookmarkJoin = (ctx: ProtocolContext, room: string, nick: string) => void;

function parseConference(room: string, conf: Element | undefined): Bookmark | null {
  if (!conf || !room.includes("@")) return null;
  return {
    room: bare(room),
    name: conf.attrs.name ?? null,
    nick: conf.getChildText("nick") || null,
    autojoin: conf.attrs.autojoin === "true" || conf.attrs.autojoin === "1",
  };
}

/** New stream: ask for the PEP bookmarks (the answer applies them, see applyBookmarks). */
export function fetchBookmarks(ctx: ProtocolContext): void {
  ctx.sendIq(
    xml(
      "iq",
      { type: "get" },
      xml("pubsub", { xmlns: NS_PUBSUB }, xml("items", { node: NS_BOOKMARKS })),
    ),
    ctx.session.registry.descriptor("lichen.bookmarks.items", {}),
    { timeoutTicks: 60 },
  );
}

/** Publish (or update) the bookmark of a room: private to us, kept by the server (XEP-0402 §3). */
export function publishBookmark(
  ctx: ProtocolContext,
  b: Bookmark,
  opts: { maxItems?: boolean } = {},
): void {
  const maxItems = opts.maxItems !== false;
  const field = (v: string, value: string) => xml("field", { var: v }, xml("value", {}, value));
  ctx.sendIq(
    xml(
      "iq",
      { type: "set" },
      xml(
        "pubsub",
        { xmlns: NS_PUBSUB },
        xml(
          "publish",
          { node: NS_BOOKMARKS },
          xml(
            "item",
            { id: b.room },
            xml(
              "conference",
              {
                xmlns: NS_BOOKMARKS,
                autojoin: b.autojoin ? "true" : "false",
                ...(b.name ? { name: b.name } : {}),
              },
              ...(b.nick ? [xml("nick", {}, b.nick)] : []),
            ),
          ),
        ),
        xml(
          "publish-options",
          {},
          xml(
            "x",
            { xmlns: "jabber:x:data", type: "submit" },
            field("FORM_TYPE", "http://jabber.org/protocol/pubsub#publish-options"),
            field("pubsub#persist_items", "true"),
            // XEP-0402 §3. ejabberd 23.01 refuses these two fields (resource-constraint,
            // "Unknown field"): it gets the publish again without them (its PEP node keeps
            // many items and sends the last on presence; the bookmarks stay private).
            ...(maxItems
              ? [
                  field("pubsub#max_items", "max"),
                  field("pubsub#send_last_published_item", "never"),
                ]
              : []),
            field("pubsub#access_model", "whitelist"),
          ),
        ),
      ),
    ),
    ctx.session.registry.descriptor("lichen.bookmarks.published", { ...b, maxItems }),
    { timeoutTicks: 60 },
  );
  markBookmarked(ctx, b);
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

/** Bookmarks seen (fetched or pushed): stored, and autojoin rooms we are not in are joined. */
function applyBookmarks(ctx: ProtocolContext, bookmarks: Bookmark[], join: BookmarkJoin): void {
  const ownLocal = (ctx.state.sm.boundJid ?? ctx.accountId).split("@")[0] ?? ctx.accountId;
  for (const b of bookmarks) {
    const before = ctx.tx
      .select({ nick: tables.chats.nick, status: tables.chats.roomStatus, kind: tables.chats.kind })
      .from(tables.chats)
      .where(and(eq(tables.chats.accountId, ctx.accountId), eq(tables.chats.jid, b.room)))
      .get();
    markBookmarked(ctx, b);
    const inside = before?.kind === "groupchat" && before.nick !== null;
    // Removed by the room (kicked, banned, destroyed, refused): the user decides, not the bookmark.
    const sentAway =
      before?.status != null && !["joining", "joined", "left"].includes(before.status);
    if (b.autojoin && !inside && !sentAway) join(ctx, b.room, b.nick ?? ownLocal);
  }
  if (bookmarks.length > 0) ctx.afterCommit(() => ctx.session.emit("bookmarks", bookmarks));
}

/** A bookmark retracted (another device deleted it): still a chat, no longer bookmarked. */
function retractBookmark(ctx: ProtocolContext, room: string): void {
  ctx.tx
    .update(tables.chats)
    .set({ bookmarked: false, autojoin: false })
    .where(and(eq(tables.chats.accountId, ctx.accountId), eq(tables.chats.jid, bare(room))))
    .run();
}

/**
 * A PEP notification of our bookmarks node (+notify), only from our own bare JID: anyone else's
 * "bookmarks" are a forgery. Returns true when the message was one.
 */
export function handleBookmarksEvent(
  ctx: ProtocolContext,
  message: Element,
  own: string,
  join: BookmarkJoin,
): boolean {
  const items = message.getChild("event", NS_PUBSUB_EVENT)?.getChild("items");
  if (!items || items.attrs.node !== NS_BOOKMARKS) return false;
  if (message.attrs.from && message.attrs.from !== own) return true;
  const bookmarks = items
    .getChildren("item")
    .map((i) => parseConference(i.attrs.id ?? "", i.getChild("conference", NS_BOOKMARKS)))
    .filter((b): b is Bookmark => b !== null);
  applyBookmarks(ctx, bookmarks, join);
  for (const r of items.getChildren("retract")) if (r.attrs.id) retractBookmark(ctx, r.attrs.id);
  return true;
}

function parseAnswer(stanza: unknown): Element | null {
  return typeof stanza === "string" ? parseXml(stanza) : null;
}

export function registerBookmarkHandlers(registry: HandlerRegistry, join: BookmarkJoin): void {
  if (registry.has("lichen.bookmarks.items")) return;
  registry.define("lichen.bookmarks.items", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    const items =
      args.type === "result"
        ? parseAnswer(args.stanza)?.getChild("pubsub", NS_PUBSUB)?.getChild("items")
        : undefined;
    const bookmarks = (items?.getChildren("item") ?? [])
      .map((i) => parseConference(i.attrs.id ?? "", i.getChild("conference", NS_BOOKMARKS)))
      .filter((b): b is Bookmark => b !== null);
    if (bookmarks.length > 0) return applyBookmarks(ctx, bookmarks, join);
    // No PEP bookmarks (node missing or empty): the XEP-0048 private storage of older clients.
    ctx.sendIq(
      xml(
        "iq",
        { type: "get" },
        xml("query", { xmlns: NS_LEGACY_PRIVATE }, xml("storage", { xmlns: NS_LEGACY_BOOKMARKS })),
      ),
      ctx.session.registry.descriptor("lichen.bookmarks.legacy", {}),
      { timeoutTicks: 60 },
    );
  });
  registry.define("lichen.bookmarks.legacy", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    if (args.type !== "result") return;
    const storage = parseAnswer(args.stanza)
      ?.getChild("query", NS_LEGACY_PRIVATE)
      ?.getChild("storage", NS_LEGACY_BOOKMARKS);
    const bookmarks = (storage?.getChildren("conference") ?? [])
      .map((c) => parseConference(c.attrs.jid ?? "", c))
      .filter((b): b is Bookmark => b !== null);
    applyBookmarks(ctx, bookmarks, join);
  });
  registry.define("lichen.bookmarks.published", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    if (args.type === "result") return;
    const room = String(args.room);
    if (args.maxItems === true && !args.synthetic) {
      const b: Bookmark = {
        room,
        name: typeof args.name === "string" ? args.name : null,
        nick: typeof args.nick === "string" ? args.nick : null,
        autojoin: args.autojoin === true,
      };
      return publishBookmark(ctx, b, { maxItems: false });
    }
    const condition = typeof args.condition === "string" ? args.condition : "error";
    ctx.afterCommit(() => ctx.session.emit("bookmark-error", { room, condition }));
  });
}
