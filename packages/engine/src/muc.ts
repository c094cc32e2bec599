// XEP-0045 group chats, only what durability needs: join without MUC history (XEP-0313 fills
// it), rejoin on every new stream, and a MAM catch-up mark per room (table mam_marks), so each
// join fetches exactly what was missed — at 32 kbit/s nothing is fetched twice.
import { randomUUID } from "node:crypto";
import { listIqHandlers, tables, type StoreTx } from "@lichen/store";
import xml, { type Element } from "@xmpp/xml";
import { and, eq, isNotNull } from "drizzle-orm";
import { publishBookmark, syncLegacyBookmarks, type BookmarkActions } from "./bookmarks.js";
import type { HandlerRegistry } from "./handlers.js";
import { bare } from "./jid.js";
import { handleMamPage, mamQuery, type MamFrom } from "./mam.js";
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

/** Why we are no longer in a room (self-presence status codes, XEP-0045 §7.2.x, §10.9). */
export type RoomLeftReason =
  "left" | "kicked" | "banned" | "destroyed" | "removed" | "shutdown" | "error";

/** A catch-up by time starts this much before the last one completed (clocks differ; dupes dedupe). */
const ROOM_CLOCK_SKEW_MS = 5 * 60_000;

/** Nick conflicts retry with `nick_2` … `nick_<MAX>`; then the join gives up (no endless loop). */
const MAX_NICK_ATTEMPTS = 5;

interface RoomRow {
  nick: string | null;
  wantedNick: string | null;
  roomStatus: string | null;
}

function roomRow(ctx: ProtocolContext, room: string): RoomRow | null {
  const row = ctx.tx
    .select({
      nick: tables.chats.nick,
      wantedNick: tables.chats.wantedNick,
      roomStatus: tables.chats.roomStatus,
      kind: tables.chats.kind,
    })
    .from(tables.chats)
    .where(and(eq(tables.chats.accountId, ctx.accountId), eq(tables.chats.jid, room)))
    .get();
  return row && row.kind === "groupchat" ? row : null;
}

function updateRoom(
  ctx: ProtocolContext,
  room: string,
  set: Partial<typeof tables.chats.$inferInsert>,
): void {
  ctx.tx
    .update(tables.chats)
    .set(set)
    .where(and(eq(tables.chats.accountId, ctx.accountId), eq(tables.chats.jid, room)))
    .run();
}

function clearOccupants(ctx: ProtocolContext, room: string): void {
  ctx.tx
    .delete(tables.roomOccupants)
    .where(
      and(
        eq(tables.roomOccupants.accountId, ctx.accountId),
        eq(tables.roomOccupants.roomJid, room),
      ),
    )
    .run();
}

/** Joined group chat of this account by bare JID, if any. */
export function joinedRoom(ctx: ProtocolContext, jid: string): { nick: string } | null {
  const row = roomRow(ctx, bare(jid));
  return row?.nick ? { nick: row.nick } : null;
}

/** A room we joined at some point (a group chat row): only those may send us groupchat messages. */
export function isKnownRoom(ctx: ProtocolContext, jid: string): boolean {
  return roomRow(ctx, bare(jid)) !== null;
}

function joinPresence(room: string, nick: string, password?: string | null): Element {
  // No MUC history: the room's archive (MAM, after our mark) is the only source of the past.
  return xml(
    "presence",
    { to: `${room}/${nick}` },
    xml(
      "x",
      { xmlns: NS_MUC },
      xml("history", { maxstanzas: "0" }),
      ...(password ? [xml("password", {}, password)] : []),
    ),
  );
}

/** The bookmark of a room as we keep it (name from the chat row). */
function updateBookmark(
  ctx: ProtocolContext,
  room: string,
  nick: string | null,
  autojoin: boolean,
): void {
  const row = ctx.tx
    .select({
      name: tables.chats.name,
      bookmarked: tables.chats.bookmarked,
      wanted: tables.chats.wantedNick,
    })
    .from(tables.chats)
    .where(and(eq(tables.chats.accountId, ctx.accountId), eq(tables.chats.jid, room)))
    .get();
  if (!autojoin && !row?.bookmarked) return; // nothing to turn off
  publishBookmark(ctx, {
    room,
    name: row?.name ?? null,
    nick: nick ?? row?.wanted ?? null,
    autojoin,
  });
  syncLegacyBookmarks(ctx, room);
}

/**
 * Join (or re-join) a room; the chat is remembered and re-joined on every new stream, and its
 * XEP-0402 bookmark says autojoin (so the user's other devices join too).
 */
export function joinRoom(
  ctx: ProtocolContext,
  room: string,
  nick: string,
  opts: { bookmark?: boolean; password?: string | null } = {},
): void {
  room = bare(room);
  if (opts.bookmark !== false) updateBookmark(ctx, room, nick, true);
  const joining = {
    kind: "groupchat" as const,
    nick,
    wantedNick: nick,
    roomStatus: "joining",
    roomStatusDetail: null,
  };
  ctx.tx
    .insert(tables.chats)
    .values({ accountId: ctx.accountId, jid: room, createdAt: ctx.tx.now, ...joining })
    .onConflictDoUpdate({ target: [tables.chats.accountId, tables.chats.jid], set: joining })
    .run();
  clearOccupants(ctx, room); // the room sends everyone's presence again
  ctx.send(joinPresence(room, nick, opts.password));
}

/** Leave a room: we stop re-joining it; its messages and mark are kept. */
export function leaveRoom(
  ctx: ProtocolContext,
  room: string,
  opts: { bookmark?: boolean; detail?: string } = {},
): void {
  room = bare(room);
  const joined = joinedRoom(ctx, room);
  if (!joined) return;
  if (opts.bookmark !== false) updateBookmark(ctx, room, joined.nick, false);
  const detail = opts.detail ?? null;
  updateRoom(ctx, room, { nick: null, roomStatus: "left", roomStatusDetail: detail });
  clearOccupants(ctx, room);
  ctx.send(xml("presence", { to: `${room}/${joined.nick}`, type: "unavailable" }));
  ctx.afterCommit(() => ctx.session.emit("room-left", { room, reason: "left", detail }));
}

/**
 * What our bookmarks (another device's change, or the list fetched on a new stream) make us do:
 * join an autojoin room, leave one whose bookmark went or stopped saying autojoin — without
 * publishing the bookmark back.
 */
export const bookmarkRoomActions: BookmarkActions = {
  join: (ctx, room, nick) => joinRoom(ctx, room, nick, { bookmark: false }),
  leave: (ctx, room, detail) => leaveRoom(ctx, room, { bookmark: false, detail }),
};

/** New stream: the server forgot our occupancy; join every remembered room again. */
export function rejoinRooms(ctx: ProtocolContext): void {
  const rooms = ctx.tx
    .select({ jid: tables.chats.jid, nick: tables.chats.nick, status: tables.chats.roomStatus })
    .from(tables.chats)
    .where(
      and(
        eq(tables.chats.accountId, ctx.accountId),
        eq(tables.chats.kind, "groupchat"),
        isNotNull(tables.chats.nick),
      ),
    )
    .all();
  for (const r of rooms) {
    // Kicked, banned, destroyed …: nick is null then; this guards rows of older builds too.
    if (r.status !== null && r.status !== "joining" && r.status !== "joined") continue;
    updateRoom(ctx, r.jid, { roomStatus: "joining" });
    clearOccupants(ctx, r.jid);
    ctx.send(joinPresence(r.jid, r.nick!));
  }
}

/** Self-presence status codes that end our occupancy, strongest first. */
function leftReason(codes: Set<string>, destroyed: boolean): RoomLeftReason {
  if (destroyed) return "destroyed";
  if (codes.has("301")) return "banned";
  if (codes.has("307")) return "kicked";
  if (codes.has("332")) return "shutdown";
  if (codes.has("321") || codes.has("322")) return "removed";
  return "removed"; // unavailable for us without a reason we asked for: we are out all the same
}

function errorCondition(stanza: Element): string {
  const cond = stanza
    .getChild("error")
    ?.children.find((c): c is Element => typeof c !== "string" && c.name !== "text");
  return cond?.name ?? "undefined-condition";
}

/** Join refusals that hold for every client of the account: a password, members only, banned. */
const ACCOUNT_REFUSALS = new Set(["forbidden", "registration-required", "not-authorized"]);

/** The room refused our join: a nick conflict retries with a suffix, anything else gives up. */
function handleJoinError(ctx: ProtocolContext, room: string, row: RoomRow, stanza: Element): void {
  const condition = errorCondition(stanza);
  const wanted = row.wantedNick ?? row.nick!;
  if (condition === "conflict") {
    const attempt = row.nick === wanted ? 1 : Number(row.nick!.slice(wanted.length + 1)) || 1;
    if (attempt < MAX_NICK_ATTEMPTS) {
      const next = `${wanted}_${attempt + 1}`;
      updateRoom(ctx, room, { nick: next });
      ctx.send(joinPresence(room, next));
      ctx.afterCommit(() =>
        ctx.session.emit("room-nick-conflict", { room, tried: row.nick!, next }),
      );
      return;
    }
  }
  // Not re-joined on the next stream either: the user decides (join again with another nick …).
  // The shared bookmark's autojoin goes off only for a refusal of the account itself — our other
  // devices would be refused the same way, and they leave the room when autojoin goes off. A
  // refusal of this device's attempt (item-not-found from a room another of our devices is still
  // creating, its nicks taken) stays here.
  if (ACCOUNT_REFUSALS.has(condition)) updateBookmark(ctx, room, null, false);
  updateRoom(ctx, room, { nick: null, roomStatus: "error", roomStatusDetail: condition });
  clearOccupants(ctx, room);
  ctx.afterCommit(() => {
    ctx.session.emit("room-error", { room, condition });
    ctx.session.emit("room-left", { room, reason: "error", detail: condition });
  });
}

/**
 * Presence from a room: occupants come and go (the list is kept in room_occupants), our own
 * occupant presence (status 110) means joined → catch up; our own unavailable presence with a
 * status code (kicked, banned, destroyed, removed, shutdown) ends the occupancy for good.
 */
export function handleRoomPresence(ctx: ProtocolContext, presence: Element): void {
  const from = presence.attrs.from;
  if (!from) return;
  const room = bare(from);
  const row = roomRow(ctx, room);
  if (!row?.nick) return;
  const nick = from.includes("/") ? from.slice(from.indexOf("/") + 1) : null;
  if (presence.attrs.type === "error") {
    // Only an answer to our join attempt (from our nick or the room) changes anything.
    if (row.roomStatus === "joining" && (nick === null || nick === row.nick))
      handleJoinError(ctx, room, row, presence);
    return;
  }
  if (nick === null) return;
  const x = presence.getChild("x", NS_MUC_USER);
  const codes = new Set((x?.getChildren("status") ?? []).map((s) => s.attrs.code ?? ""));
  const item = x?.getChild("item");
  const self = codes.has("110") || nick === row.nick;
  const occupant = and(
    eq(tables.roomOccupants.accountId, ctx.accountId),
    eq(tables.roomOccupants.roomJid, room),
    eq(tables.roomOccupants.nick, nick),
  );
  if (presence.attrs.type === "unavailable") {
    const newNick = codes.has("303") ? item?.attrs.nick : undefined;
    if (newNick) {
      // A nick change: the same occupant under its new nick (its available presence follows).
      ctx.tx.delete(tables.roomOccupants).where(occupant).run();
      if (self) updateRoom(ctx, room, { nick: newNick });
      return;
    }
    ctx.tx.delete(tables.roomOccupants).where(occupant).run();
    if (!self) return;
    const destroy = x?.getChild("destroy");
    const reason = leftReason(codes, !!destroy);
    const detail =
      (destroy ? destroy.getChildText("reason") : item?.getChildText("reason")) ?? null;
    updateBookmark(ctx, room, row.nick, false);
    updateRoom(ctx, room, { nick: null, roomStatus: reason, roomStatusDetail: detail });
    clearOccupants(ctx, room);
    const alternate = destroy?.attrs.jid ?? null;
    ctx.afterCommit(() =>
      ctx.session.emit("room-left", { room, reason, detail, ...(alternate ? { alternate } : {}) }),
    );
    return;
  }
  ctx.tx
    .insert(tables.roomOccupants)
    .values({
      accountId: ctx.accountId,
      roomJid: room,
      nick,
      realJid: item?.attrs.jid ?? null,
      affiliation: item?.attrs.affiliation ?? "none",
      role: item?.attrs.role ?? "none",
      updatedAt: ctx.tx.now,
    })
    .onConflictDoUpdate({
      target: [
        tables.roomOccupants.accountId,
        tables.roomOccupants.roomJid,
        tables.roomOccupants.nick,
      ],
      set: {
        realJid: item?.attrs.jid ?? null,
        affiliation: item?.attrs.affiliation ?? "none",
        role: item?.attrs.role ?? "none",
        updatedAt: ctx.tx.now,
      },
    })
    .run();
  if (!codes.has("110")) return;
  // Our own presence; the room may have changed our nick (status 210).
  if (row.roomStatus === "joined" && nick === row.nick) return; // a role/affiliation update
  updateRoom(ctx, room, { nick, roomStatus: "joined", roomStatusDetail: null });
  ctx.afterCommit(() => ctx.session.emit("room-joined", room));
  startRoomMamCatchup(ctx, room);
}

/** A room's subject (a groupchat message with <subject/> and no body, XEP-0045 §8.1). */
export function handleRoomSubject(ctx: ProtocolContext, message: Element): void {
  const from = message.attrs.from;
  if (!from || message.attrs.type !== "groupchat" || message.getChild("body")) return;
  const subjectEl = message.getChild("subject");
  if (!subjectEl) return;
  const room = bare(from);
  if (!joinedRoom(ctx, room)) return;
  const subject = subjectEl.getText() || null;
  updateRoom(ctx, room, { subject });
  ctx.afterCommit(() => ctx.session.emit("room-subject", { room, subject }));
}

/** XEP-0313 query of the room's archive after its mark (or its newest page on first join). */
export function startRoomMamCatchup(ctx: ProtocolContext, room: string, after?: string): void {
  // One catch-up per room at a time (a join presence can be reflected twice).
  const running = listIqHandlers(ctx.tx, ctx.accountId).some(
    (h) => h.handler.name === "lichen.mam.room-page" && h.handler.bound.room === room,
  );
  if (running && !after) return;
  const mark = roomMark(ctx, room);
  // After the mark's archive id; or, when the archive was empty at the last catch-up (no id to
  // continue from), from that time — else a restart would fetch only the newest page: a gap.
  const from: MamFrom = after
    ? { after }
    : mark?.lastArchiveId
      ? { after: mark.lastArchiveId }
      : mark
        ? // completedAt, or (first catch-up interrupted) when it started: its mark's last write
          { start: (mark.completedAt ?? mark.updatedAt) - ROOM_CLOCK_SKEW_MS }
        : null;
  const queryId = randomUUID();
  setRoomMark(ctx, room, { gapOpen: true });
  ctx.sendIq(
    mamQuery(queryId, from, room),
    ctx.session.registry.descriptor("lichen.mam.room-page", {
      room,
      queryId,
      forward: from !== null,
    }),
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

/** Bare JIDs of the account's rooms we are in now (joined, not joining or left). */
export function joinedRoomJids(tx: StoreTx, accountId: string): string[] {
  return tx
    .select({ jid: tables.chats.jid })
    .from(tables.chats)
    .where(
      and(
        eq(tables.chats.accountId, accountId),
        eq(tables.chats.kind, "groupchat"),
        eq(tables.chats.roomStatus, "joined"),
      ),
    )
    .all()
    .map((r) => r.jid);
}

/**
 * XEP-0410 self-ping: on a resumed stream the server kept our occupancy — unless the room let us
 * go silently (restarted, ghost removal); while online, a room silent for long (RoomSelfPinger)
 * is asked the same. A ping to our own occupant JID tells; the answer's handler re-joins a room
 * that no longer knows us. `only`: these rooms (default every joined one). A room whose ping is
 * still unanswered is not pinged again. Returns how many were pinged.
 */
export function selfPingRooms(ctx: ProtocolContext, only?: readonly string[]): number {
  const rooms = ctx.tx
    .select({ jid: tables.chats.jid, nick: tables.chats.nick })
    .from(tables.chats)
    .where(
      and(
        eq(tables.chats.accountId, ctx.accountId),
        eq(tables.chats.kind, "groupchat"),
        eq(tables.chats.roomStatus, "joined"),
      ),
    )
    .all();
  const pending = new Set(
    listIqHandlers(ctx.tx, ctx.accountId)
      .filter((h) => h.handler.name === "lichen.muc.self-ping")
      .map((h) => String(h.handler.bound.room)),
  );
  let pinged = 0;
  for (const r of rooms) {
    if (!r.nick || pending.has(r.jid) || (only && !only.includes(r.jid))) continue;
    ctx.sendIq(
      xml("iq", { type: "get", to: `${r.jid}/${r.nick}` }, xml("ping", { xmlns: "urn:xmpp:ping" })),
      ctx.session.registry.descriptor("lichen.muc.self-ping", { room: r.jid, nick: r.nick }),
      { timeoutTicks: 60 },
    );
    pinged++;
  }
  return pinged;
}

export function registerMucHandlers(registry: HandlerRegistry): void {
  if (registry.has("lichen.mam.room-page")) return;
  registry.define("lichen.muc.self-ping", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    const room = String(args.room);
    const row = roomRow(ctx, room);
    // Still joined under the nick we pinged? (Otherwise a join or leave since decides.)
    if (
      args.type === "result" ||
      !row?.nick ||
      row.nick !== args.nick ||
      row.roomStatus !== "joined"
    )
      return;
    // XEP-0410 §3: these two mean the room no longer has us; anything else (service-unavailable,
    // feature-not-implemented: the occupant's client just doesn't answer pings) means joined.
    if (args.condition !== "not-acceptable" && args.condition !== "item-not-found") return;
    updateRoom(ctx, room, { roomStatus: "joining" });
    clearOccupants(ctx, room);
    ctx.send(joinPresence(room, row.nick!));
    ctx.afterCommit(() => ctx.session.emit("room-rejoining", room));
  });
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

/**
 * Is a room of the account still on its way to in-sync: joining (no answer yet) or catching up
 * its archive? The NSE's "synced" waits for this as for the account's own archive.
 */
export function roomsCatchingUp(tx: StoreTx, accountId: string): boolean {
  const c = tables.chats;
  const joining = tx
    .select({ jid: c.jid })
    .from(c)
    .where(and(eq(c.accountId, accountId), eq(c.kind, "groupchat"), eq(c.roomStatus, "joining")))
    .get();
  if (joining) return true;
  const open = tx
    .select({ jid: c.jid })
    .from(c)
    .innerJoin(
      tables.mamMarks,
      and(eq(tables.mamMarks.accountId, c.accountId), eq(tables.mamMarks.archiveJid, c.jid)),
    )
    .where(
      and(
        eq(c.accountId, accountId),
        eq(c.kind, "groupchat"),
        eq(c.roomStatus, "joined"),
        eq(tables.mamMarks.gapOpen, true),
      ),
    )
    .get();
  return open !== undefined;
}
