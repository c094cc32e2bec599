// XEP-0045 group chats, only what durability needs: join without MUC history (XEP-0313 fills
// it), rejoin on every new stream, and a MAM catch-up mark per room (table mam_marks), so each
// join fetches exactly what was missed — at 32 kbit/s nothing is fetched twice.
import { randomUUID } from "node:crypto";
import { listIqHandlers, tables } from "@lichen/store";
import xml, { type Element } from "@xmpp/xml";
import { and, eq, isNotNull } from "drizzle-orm";
import type { HandlerRegistry } from "./handlers.js";
import { bare } from "./jid.js";
import { handleMamPage, mamQuery } from "./mam.js";
import type { ProtocolContext } from "./context.js";

const NS_MUC = "http://jabber.org/protocol/muc";
const NS_MUC_USER = "http://jabber.org/protocol/muc#user";

/** The per-room catch-up mark (created on first join). */
function roomMark(ctx: ProtocolContext, room: string) {
  return ctx.tx
    .select()
    .from(tables.mamMarks)
    .where(and(eq(tables.mamMarks.accountId, ctx.accountId), eq(tables.mamMarks.archiveJid, room)))
    .get();
}

function setRoomMark(
  ctx: ProtocolContext,
  room: string,
  v: { lastArchiveId?: string; gapOpen?: boolean; completedAt?: number },
): void {
  ctx.tx
    .insert(tables.mamMarks)
    .values({ accountId: ctx.accountId, archiveJid: room, updatedAt: ctx.tx.now, ...v })
    .onConflictDoUpdate({
      target: [tables.mamMarks.accountId, tables.mamMarks.archiveJid],
      set: { ...v, updatedAt: ctx.tx.now },
    })
    .run();
}

/** Joined group chat of this account by bare JID, if any. */
export function joinedRoom(ctx: ProtocolContext, jid: string): { nick: string } | null {
  const row = ctx.tx
    .select({ nick: tables.chats.nick, kind: tables.chats.kind })
    .from(tables.chats)
    .where(and(eq(tables.chats.accountId, ctx.accountId), eq(tables.chats.jid, bare(jid))))
    .get();
  return row && row.kind === "groupchat" && row.nick ? { nick: row.nick } : null;
}

function joinPresence(room: string, nick: string): Element {
  // No MUC history: the room's archive (MAM, after our mark) is the only source of the past.
  return xml(
    "presence",
    { to: `${room}/${nick}` },
    xml("x", { xmlns: NS_MUC }, xml("history", { maxstanzas: "0" })),
  );
}

/** Join (or re-join) a room; the chat is remembered and re-joined on every new stream. */
export function joinRoom(ctx: ProtocolContext, room: string, nick: string): void {
  room = bare(room);
  ctx.tx
    .insert(tables.chats)
    .values({ accountId: ctx.accountId, jid: room, kind: "groupchat", nick, createdAt: ctx.tx.now })
    .onConflictDoUpdate({
      target: [tables.chats.accountId, tables.chats.jid],
      set: { kind: "groupchat", nick },
    })
    .run();
  ctx.send(joinPresence(room, nick));
}

/** Leave a room: we stop re-joining it; its messages and mark are kept. */
export function leaveRoom(ctx: ProtocolContext, room: string): void {
  const joined = joinedRoom(ctx, room);
  if (!joined) return;
  ctx.tx
    .update(tables.chats)
    .set({ nick: null })
    .where(and(eq(tables.chats.accountId, ctx.accountId), eq(tables.chats.jid, bare(room))))
    .run();
  ctx.send(xml("presence", { to: `${bare(room)}/${joined.nick}`, type: "unavailable" }));
}

/** New stream: the server forgot our occupancy; join every remembered room again. */
export function rejoinRooms(ctx: ProtocolContext): void {
  const rooms = ctx.tx
    .select({ jid: tables.chats.jid, nick: tables.chats.nick })
    .from(tables.chats)
    .where(
      and(
        eq(tables.chats.accountId, ctx.accountId),
        eq(tables.chats.kind, "groupchat"),
        isNotNull(tables.chats.nick),
      ),
    )
    .all();
  for (const r of rooms) ctx.send(joinPresence(r.jid, r.nick!));
}

/** Presence from a room: our own occupant presence (status 110) means joined → catch up. */
export function handleRoomPresence(ctx: ProtocolContext, presence: Element): void {
  const from = presence.attrs.from;
  if (!from || !joinedRoom(ctx, from)) return;
  const room = bare(from);
  if (presence.attrs.type === "error") {
    const cond = presence
      .getChild("error")
      ?.children.find((c): c is Element => typeof c !== "string");
    ctx.afterCommit(() =>
      ctx.session.emit("room-error", { room, condition: cond?.name ?? "error" }),
    );
    return;
  }
  const x = presence.getChild("x", NS_MUC_USER);
  const self = x?.getChildren("status").some((s) => s.attrs.code === "110");
  if (!self || presence.attrs.type === "unavailable") return;
  ctx.afterCommit(() => ctx.session.emit("room-joined", room));
  startRoomMamCatchup(ctx, room);
}

/** XEP-0313 query of the room's archive after its mark (or its newest page on first join). */
export function startRoomMamCatchup(ctx: ProtocolContext, room: string, after?: string): void {
  // One catch-up per room at a time (a join presence can be reflected twice).
  const running = listIqHandlers(ctx.tx, ctx.accountId).some(
    (h) => h.handler.name === "lichen.mam.room-page" && h.handler.bound.room === room,
  );
  if (running && !after) return;
  const since = after ?? roomMark(ctx, room)?.lastArchiveId ?? null;
  const queryId = randomUUID();
  setRoomMark(ctx, room, { gapOpen: true });
  ctx.sendIq(
    mamQuery(queryId, since, room),
    ctx.session.registry.descriptor("lichen.mam.room-page", { room, queryId, forward: !!since }),
    { timeoutTicks: 60 },
  );
}

/**
 * May this MAM result (from a room) be trusted? Only while we query that room with this queryid:
 * anything else is a forgery by an occupant or a stranger.
 */
export function isExpectedRoomResult(
  ctx: ProtocolContext,
  from: string,
  queryId: string | undefined,
): boolean {
  if (!queryId) return false;
  const room = bare(from);
  return listIqHandlers(ctx.tx, ctx.accountId).some(
    (h) =>
      h.handler.name === "lichen.mam.room-page" &&
      h.handler.bound.room === room &&
      h.handler.bound.queryId === queryId,
  );
}

/** A live groupchat message with the room's stanza-id advances the room's mark (unless catching up). */
export function advanceRoomMark(ctx: ProtocolContext, room: string, stanzaId: string): void {
  const mark = roomMark(ctx, room);
  if (mark && !mark.gapOpen) setRoomMark(ctx, room, { lastArchiveId: stanzaId });
}

export function registerMucHandlers(registry: HandlerRegistry): void {
  if (registry.has("lichen.mam.room-page")) return;
  registry.define("lichen.mam.room-page", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    const room = String(args.room);
    handleMamPage(args, {
      // The room has no archive or refused: the gap stays open, the next join retries.
      failed: (condition) => ctx.afterCommit(() => ctx.session.emit("mam-error", condition, room)),
      advance: (last) => setRoomMark(ctx, room, { lastArchiveId: last }),
      complete: () => {
        setRoomMark(ctx, room, { gapOpen: false, completedAt: ctx.tx.now });
        ctx.afterCommit(() => ctx.session.emit("room-mam-complete", room));
      },
      next: (last) => startRoomMamCatchup(ctx, room, last),
    });
  });
}
