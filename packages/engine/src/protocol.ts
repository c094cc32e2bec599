// Built-in stanza handling, run inside the stanza's transaction: IQ answers to stored handlers,
// messages (carbons, MAM results, receipts, XEP-0359 dedupe), and the MAM catch-up handlers.
import { randomUUID } from "node:crypto";
import { insertMessageRow, listIqHandlers, tables, takeIqHandler, touchChat } from "@lichen/store";
import xml, { type Element } from "@xmpp/xml";
import parseXml from "@xmpp/xml/lib/parse.js";
import { and, eq, type SQL } from "drizzle-orm";
import {
  capsVerification,
  discoInfoQuery,
  handlePresenceCaps,
  LICHEN_CAPS_NODE,
  ownCapsElement,
  ownDiscoInfo,
  type DiscoInfo,
} from "./caps.js";
import type { HandlerRegistry } from "./handlers.js";
import { bare, isExpectedIqSender } from "./jid.js";
import { handleMamPage, mamQuery, NS_MAM, type MamFrom } from "./mam.js";
import { recordReceivedFile } from "./media/receive.js";
import {
  advanceRoomMark,
  handleRoomPresence,
  handleRoomSubject,
  isExpectedRoomResult,
  isKnownRoom,
  joinedRoom,
  bookmarkRoomActions,
} from "./muc.js";
import { handleBookmarksEvent, NS_BOOKMARKS } from "./bookmarks.js";
import { handleInvitation } from "./room-invitations.js";
import { wasDecrypted } from "./plugins.js";
import { markReceivedByRecipient } from "./messages.js";
import {
  applyRosterPush,
  handleSubscriptionPresence,
  NS_ROSTER,
  parseRosterItem,
} from "./roster.js";
import type { ProtocolContext } from "./context.js";

const NS_FORWARD = "urn:xmpp:forward:0";
const NS_DELAY = "urn:xmpp:delay";
const NS_CARBONS = "urn:xmpp:carbons:2";
const NS_SID = "urn:xmpp:sid:0";
const NS_RECEIPTS = "urn:xmpp:receipts";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";

export const FEATURES = [
  "http://jabber.org/protocol/disco#info",
  "urn:xmpp:ping",
  NS_RECEIPTS,
  NS_CARBONS,
  NS_SID,
  // XEP-0402 §4: PEP pushes us our bookmarks, so other devices' joins appear at once.
  `${NS_BOOKMARKS}+notify`,
];

/** Our disco#info (and so our caps ver) without plugins; a session adds its plugins' features. */
export const OWN_INFO = ownDiscoInfo(FEATURES);

function ownBareJid(ctx: ProtocolContext): string {
  return bare(ctx.state.sm.boundJid ?? "");
}

/** Entry point: one inbound stanza, inside its transaction. */
export function dispatchStanza(ctx: ProtocolContext, stanza: Element): void {
  // A stream delivers in order (RFC 6120 §10.1): whatever the server archived before it sent this
  // stanza came before it. With no gap open, the account is in sync up to now.
  if (!ctx.state.mam.gapOpen) ctx.state.mam.syncedAt = ctx.tx.now;
  switch (stanza.name) {
    case "iq":
      return handleIq(ctx, stanza);
    case "message":
      return handleMessage(ctx, stanza);
    case "presence":
      // Subscriptions, caps and room occupancy; the rest of presence is the app's (onStanza).
      if (handleSubscriptionPresence(ctx, stanza)) return;
      handlePresenceCaps(ctx, stanza, ctx.session.ownInfo);
      return handleRoomPresence(ctx, stanza);
    default:
      return;
  }
}

function handleIq(ctx: ProtocolContext, iq: Element): void {
  const type = iq.attrs.type;
  const id = iq.attrs.id;
  if (type === "result" || type === "error") {
    if (!id) return;
    const row = ctx.tx
      .select({ handler: tables.iqHandlers.handler, peer: tables.iqHandlers.peer })
      .from(tables.iqHandlers)
      .where(and(eq(tables.iqHandlers.accountId, ctx.accountId), eq(tables.iqHandlers.iqId, id)))
      .get();
    if (!row) return; // nobody waits (late answer after a timeout, or not ours)
    if (!isExpectedIqSender(iq.attrs.from, row.peer, ownBareJid(ctx))) {
      // Someone else guessed the id: ignore it; the real answer (or the timeout) still comes.
      ctx.afterCommit(() =>
        ctx.session.emit("iq-answer-ignored", { iqId: id, from: iq.attrs.from ?? null }),
      );
      return;
    }
    let name: string | undefined;
    try {
      name = (JSON.parse(row.handler) as { name?: string }).name;
    } catch {
      name = undefined;
    }
    if (name && !ctx.session.registry.has(name)) {
      // Keep the row: a process that knows the handler (newer build) may still run it.
      ctx.session.callSafely(ctx, { v: 1, name, bound: {} }, {});
      return;
    }
    const pending = takeIqHandler(ctx.tx, ctx.accountId, id);
    if (!pending) return; // quarantined as corrupt by the store
    const error = iq.getChild("error");
    ctx.session.callSafely(ctx, pending.handler, {
      type,
      iqId: id,
      from: iq.attrs.from ?? null,
      stanza: iq.toString(),
      ...(error ? { condition: errorCondition(error) } : {}),
    });
    return;
  }
  if (type !== "get" && type !== "set") return; // malformed: no reply to avoid loops
  const child = iq.children.find((c): c is Element => typeof c !== "string");
  const reply = (children?: Element) =>
    ctx.send(
      xml(
        "iq",
        { type: "result", id: id ?? "", ...(iq.attrs.from ? { to: iq.attrs.from } : {}) },
        children,
      ),
    );
  if (type === "get" && child?.is("ping", "urn:xmpp:ping")) return reply();
  if (type === "get" && child?.is("query", "http://jabber.org/protocol/disco#info")) {
    // Plain disco#info, or the XEP-0115 node#ver we announce in presence.
    const info = ctx.session.ownInfo;
    const node = child.attrs.node;
    if (!node || node === `${LICHEN_CAPS_NODE}#${capsVerification(info)}`)
      return reply(discoInfoQuery(info, node));
  }
  if (type === "set" && child?.is("query", NS_ROSTER)) {
    // Roster push: only the server may send it (RFC 6121 §2.1.6: from our account or no
    // from); anyone else's is not applied and gets service-unavailable below.
    const from = iq.attrs.from;
    if (!from || from === ownBareJid(ctx)) {
      // RFC 6121 §2.1.6: exactly one item; otherwise the push is ignored (answered, not applied).
      const items = child.getChildren("item");
      const parsed = items.length === 1 ? parseRosterItem(items[0]!) : null;
      if (parsed) {
        const jid = items[0]!.attrs.jid!;
        const ver = child.attrs.ver;
        applyRosterPush(ctx.tx, ctx.accountId, jid, parsed, ver);
        if (ver) ctx.state.rosterVersion = ver;
        ctx.afterCommit(() =>
          ctx.session.emit("roster", {
            unchanged: false,
            push: true,
            version: ver ?? null,
            items: parsed === "remove" ? [] : [parsed],
            removed: parsed === "remove" ? [jid] : [],
          }),
        );
      }
      return reply();
    }
  }
  ctx.send(serviceUnavailable(iq));
}

/** The error answer to an IQ get/set nobody here handles (RFC 6120 §8.4). */
export function serviceUnavailable(iq: Element): Element {
  return xml(
    "iq",
    { type: "error", id: iq.attrs.id ?? "", ...(iq.attrs.from ? { to: iq.attrs.from } : {}) },
    xml("error", { type: "cancel" }, xml("service-unavailable", { xmlns: NS_STANZAS })),
  );
}

function errorCondition(error: Element): string {
  const cond = error.children.find(
    (c): c is Element => typeof c !== "string" && c.attrs.xmlns === NS_STANZAS,
  );
  return cond?.name ?? "undefined-condition";
}

function handleMessage(ctx: ProtocolContext, message: Element): void {
  const own = ownBareJid(ctx);
  // XEP-0313 result (only from our own archive or a room we query).
  const result = message.getChild("result", NS_MAM);
  if (result) {
    const from = message.attrs.from;
    // Our own archive, or a room archive we are querying with this queryid; else a forgery.
    // Archives send from a BARE JID: a full JID (our other resource, an occupant) is a forgery.
    if (
      from &&
      from !== own &&
      !(from === bare(from) && isExpectedRoomResult(ctx, from, result.attrs.queryid))
    )
      return;
    const forwarded = result.getChild("forwarded", NS_FORWARD);
    const inner = forwarded?.getChild("message");
    if (!forwarded || !inner || !result.attrs.id) return;
    // A room's archive holds the room's messages only (from room/nick): anything else is forged.
    if (from && from !== own && bare(inner.attrs.from ?? "") !== from) return;
    const stamp = Date.parse(forwarded.getChild("delay", NS_DELAY)?.attrs.stamp ?? "");
    const stored = storeMessage(ctx, inner, {
      archiveId: result.attrs.id,
      archiveBy: from ? bare(from) : own,
      sentAt: Number.isFinite(stamp) ? stamp : ctx.tx.now,
    });
    // A message first seen in our own archive (the catch-up fetches what arrived while we were
    // away, before our initial presence) is received now: its receipt request is answered as a
    // live one would be. Only for a new row (never twice) and never for our own messages.
    if (stored && (!from || from === own) && inner.attrs.from && bare(inner.attrs.from) !== own)
      acknowledgeReceiptRequest(ctx, inner);
    return;
  }
  // XEP-0280 carbons: only from our own bare JID.
  const carbon = message.getChild("received", NS_CARBONS) ?? message.getChild("sent", NS_CARBONS);
  if (carbon) {
    // XEP-0280 §11: copies come from our bare JID; our other resources may not forge them.
    if (message.attrs.from && message.attrs.from !== own) return; // forged carbon
    const inner = carbon.getChild("forwarded", NS_FORWARD)?.getChild("message");
    if (inner) storeMessage(ctx, inner, { sentAt: ctx.tx.now });
    return;
  }
  if (message.attrs.type === "error") return;
  if (handleBookmarksEvent(ctx, message, own, bookmarkRoomActions)) return;
  if (handleInvitation(ctx, message)) return;
  handleRoomSubject(ctx, message);
  storeMessage(ctx, message, { sentAt: ctx.tx.now });
  acknowledgeReceiptRequest(ctx, message);
  const receipt = message.getChild("received", NS_RECEIPTS);
  if (receipt?.attrs.id)
    markReceivedByRecipient(
      ctx.tx,
      ctx.accountId,
      receipt.attrs.id,
      bare(message.attrs.from),
    ).run();
}

/** XEP-0184: acknowledge the receipt request of a message with a body (not in groupchat). */
function acknowledgeReceiptRequest(ctx: ProtocolContext, message: Element): void {
  if (
    message.getChild("request", NS_RECEIPTS) &&
    message.getChild("body") &&
    message.attrs.id &&
    message.attrs.from &&
    message.attrs.type !== "groupchat"
  ) {
    if (ctx.session.receipts === "defer") {
      // The NSE on a slow link: the receipt (and the ack traffic it causes) waits for the main
      // app, which sends it when online (sendDeferredReceipts). Stored in this transaction, so
      // it is neither lost nor sent twice whichever process runs next.
      ctx.tx
        .insert(tables.deferredReceipts)
        .values({
          accountId: ctx.accountId,
          toJid: message.attrs.from,
          messageId: message.attrs.id,
          createdAt: ctx.tx.now,
        })
        .onConflictDoNothing()
        .run();
    } else ctx.send(receiptFor(message.attrs.from, message.attrs.id));
  }
}

function receiptFor(to: string, id: string): Element {
  return xml("message", { to, id: randomUUID() }, xml("received", { xmlns: NS_RECEIPTS, id }));
}

/**
 * Sends the receipts an NSE deferred (receipts: "defer"), each once: queued in the transaction
 * that deletes its row. Returns how many. The main app calls it whenever it is online.
 */
export function sendDeferredReceipts(session: {
  write<T>(fn: (ctx: ProtocolContext) => T): T;
}): number {
  return session.write((ctx) => {
    const rows = ctx.tx
      .select()
      .from(tables.deferredReceipts)
      .where(eq(tables.deferredReceipts.accountId, ctx.accountId))
      .orderBy(tables.deferredReceipts.createdAt)
      .all();
    for (const r of rows) ctx.send(receiptFor(r.toJid, r.messageId));
    ctx.tx
      .delete(tables.deferredReceipts)
      .where(eq(tables.deferredReceipts.accountId, ctx.accountId))
      .run();
    return rows.length;
  });
}

/** Stores a message with a body; the unique indexes make replays and MAM overlaps no-ops. */
function storeMessage(
  ctx: ProtocolContext,
  m: Element,
  meta: { archiveId?: string; archiveBy?: string; sentAt: number },
): boolean {
  const body = m.getChildText("body");
  if (body === null) return false;
  const own = ownBareJid(ctx);
  const from = m.attrs.from ?? own;
  const groupchat = m.attrs.type === "groupchat";
  // A groupchat message comes from a room we joined (room/nick or the room itself); one from
  // anyone else (a contact, a stranger, our own JID) is a forgery, not a room message.
  if (groupchat && (bare(from) === own || !isKnownRoom(ctx, from))) return false;
  // Our own room message reflected by the room (or in its archive): from room/<our nick>.
  const ownRoomNick = groupchat ? joinedRoom(ctx, from)?.nick : undefined;
  const reflected = ownRoomNick !== undefined && from === `${bare(from)}/${ownRoomNick}`;
  const outgoing = bare(from) === own;
  const chatJid = bare(outgoing ? m.attrs.to : from);
  if (!chatJid) return false;
  // XEP-0359: trust only the stanza-id of the archive that holds the message — ours, or the
  // room's for a group chat message.
  const idOwner = m.attrs.type === "groupchat" ? bare(from) : own;
  // `by` must be exactly the bare JID: servers strip a sender's stanza-id claiming by=<our bare
  // JID>, but not one with a resource (by='us@host/x'), so a looser match would accept forgeries.
  // The archive appends its own last.
  const stanzaIdEl = m
    .getChildren("stanza-id", NS_SID)
    .filter((s) => s.attrs.by === idOwner)
    .pop();
  const stanzaId = meta.archiveId ?? stanzaIdEl?.attrs.id ?? null;
  const stanzaIdBy = meta.archiveId ? (meta.archiveBy ?? own) : stanzaIdEl ? idOwner : null;
  const originId = m.getChild("origin-id", NS_SID)?.attrs.id ?? null;
  const stamp = Date.parse(m.getChild("delay", NS_DELAY)?.attrs.stamp ?? "");
  const sentAt = Number.isFinite(stamp) ? stamp : meta.sentAt;
  // Our own message coming back (MAM, a carbon of what another resource sent, or this one's
  // copy): one row per origin-id, whatever resource sent it; the copy only adds the archive ids.
  // A room message of ours (reflected, or from our other device under our nick) is ours.
  const mine = outgoing || reflected;
  if (mine && originId && attachToOwnMessage(ctx, originId, stanzaId, stanzaIdBy, meta)) {
    advanceMarks(ctx, meta, stanzaId, stanzaIdBy, idOwner);
    return false;
  }
  // Prepared once per connection (store): this runs for every message received.
  const rowId = insertMessageRow(ctx.tx, {
    accountId: ctx.accountId,
    chatJid,
    direction: mine ? "out" : "in",
    fromJid: outgoing ? own : from,
    toJid: m.attrs.to ?? null,
    type: m.attrs.type ?? "normal",
    messageId: m.attrs.id ?? null,
    originId,
    stanzaId,
    stanzaIdBy,
    archiveId: meta.archiveId ?? null,
    body,
    encrypted: wasDecrypted(m),
    deliveryState: mine ? "sent" : "received",
    sentAt,
    storedAt: ctx.tx.now,
  });
  if (rowId !== null) {
    if (!outgoing) recordReceivedFile(ctx, m, body, rowId);
    // An existing chat is only read: its unread count and last activity follow from its messages.
    touchChat(ctx.tx, {
      accountId: ctx.accountId,
      jid: chatJid,
      kind: m.attrs.type === "groupchat" ? "groupchat" : "chat",
      unread: !mine,
      at: ctx.tx.now,
      messageId: rowId,
    });
    ctx.afterCommit(() =>
      ctx.session.emit("message-stored", {
        chatJid,
        body,
        stanzaId,
        originId,
        direction: mine ? "out" : "in",
        messageId: m.attrs.id ?? null,
        sentAt,
        ...(groupchat ? roomMessageMeta(ctx, from, body) : {}),
      }),
    );
  }
  advanceMarks(ctx, meta, stanzaId, stanzaIdBy, idOwner);
  return rowId !== null;
}

/** Who wrote in the room, and whether the body mentions our nick there (a whole-word match). */
function roomMessageMeta(
  ctx: ProtocolContext,
  from: string,
  body: string,
): { roomNick: string; mentioned: boolean } {
  const slash = from.indexOf("/");
  const roomNick = slash >= 0 ? from.slice(slash + 1) : "";
  const ownNick = joinedRoom(ctx, from)?.nick;
  const escaped = ownNick?.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const mentioned =
    !!escaped && new RegExp(`(^|[^\\p{L}\\p{N}_])${escaped}($|[^\\p{L}\\p{N}_])`, "iu").test(body);
  return { roomNick, mentioned };
}

/** Live messages advance the catch-up mark only while no gap is open (else MAM would skip it). */
function advanceMarks(
  ctx: ProtocolContext,
  meta: { archiveId?: string },
  stanzaId: string | null,
  stanzaIdBy: string | null,
  idOwner: string,
): void {
  const own = ownBareJid(ctx);
  if (meta.archiveId || !stanzaId) return;
  if (idOwner !== own) advanceRoomMark(ctx, idOwner, stanzaId);
  else if (stanzaIdBy === own && !ctx.state.mam.gapOpen) {
    ctx.state.mam.lastStanzaId = stanzaId;
    ctx.state.mam.lastTimestamp = ctx.tx.now;
  }
}

/**
 * If we already store our own message with this origin-id, give it the archive's ids (when it has
 * none yet and no other row holds them) and report true: the copy must not become a second row.
 */
function attachToOwnMessage(
  ctx: ProtocolContext,
  originId: string,
  stanzaId: string | null,
  stanzaIdBy: string | null,
  meta: { archiveId?: string },
): boolean {
  const m = tables.messages;
  const own = ownBareJid(ctx);
  const row = ctx.tx
    .select({ id: m.id, stanzaId: m.stanzaId, deliveryState: m.deliveryState })
    .from(m)
    .where(and(eq(m.accountId, ctx.accountId), eq(m.originId, originId), eq(m.fromJid, own)))
    .get();
  if (!row) return false;
  const exists = (where: SQL | undefined) =>
    ctx.tx.select({ id: m.id }).from(m).where(where).get() !== undefined;
  const taken =
    stanzaId !== null &&
    exists(
      and(
        eq(m.accountId, ctx.accountId),
        eq(m.stanzaIdBy, stanzaIdBy ?? ""),
        eq(m.stanzaId, stanzaId),
      ),
    );
  const archiveTaken =
    !!meta.archiveId &&
    exists(and(eq(m.accountId, ctx.accountId), eq(m.archiveId, meta.archiveId)));
  const changes = {
    ...(row.stanzaId === null && stanzaId !== null && !taken ? { stanzaId, stanzaIdBy } : {}),
    ...(meta.archiveId && !archiveTaken ? { archiveId: meta.archiveId } : {}),
    // The server has it (archived or carbon-copied): at least "sent".
    ...(row.deliveryState === "pending" ? { deliveryState: "sent" as const } : {}),
  };
  if (Object.keys(changes).length > 0) ctx.tx.update(m).set(changes).where(eq(m.id, row.id)).run();
  return true;
}

/**
 * Clocks differ: the catch-up by time starts this much before the local "in sync" time, so a
 * server clock behind ours by up to this much loses nothing (the overlap is stored once: the
 * archive ids are unique).
 */
export const MAM_CLOCK_MARGIN_MS = 5 * 60_000;

/**
 * Starts (or continues) the XEP-0313 catch-up of the account archive: after the last stored
 * archive id; with none, from the time the account was last known to be in sync (minus
 * MAM_CLOCK_MARGIN_MS) — both page forward (oldest first) until the server says the last page is
 * `complete`. Only an account never in sync (no id, no time: a first login, a state reset) gets
 * the newest page alone.
 */
export function startMamCatchup(
  ctx: ProtocolContext,
  after?: string | null,
  opts: { beforePresence?: boolean } = {},
): void {
  const mam = ctx.state.mam;
  const since = after ?? mam.lastStanzaId;
  const syncedAt = mam.syncedAt ?? mam.completedAt ?? mam.lastTimestamp;
  const from: MamFrom = since
    ? { after: since }
    : syncedAt !== null && syncedAt !== undefined
      ? { start: Math.max(0, syncedAt - MAM_CLOCK_MARGIN_MS) }
      : null;
  const queryId = randomUUID();
  mam.gapOpen = true;
  ctx.sendIq(
    mamQuery(queryId, from),
    ctx.session.registry.descriptor(
      "lichen.mam.page",
      {
        queryId,
        forward: from !== null,
        ...(opts.beforePresence ? { beforePresence: true } : {}),
      },
      "lichen.mam.invalidated",
    ),
    { timeoutTicks: 60 },
  );
}

export const NS_OFFLINE = "http://jabber.org/protocol/offline";

/** Our initial presence (with our XEP-0115 caps). */
export function initialPresence(info: DiscoInfo = OWN_INFO): Element {
  return xml("presence", {}, ownCapsElement(info));
}

/**
 * A new stream that must catch up (the old one could not be resumed, or a gap is open): bring the
 * account online without receiving every missed message twice — once as the server's offline
 * delivery (XEP-0160: on initial presence) and once in the MAM catch-up (XEP-0313).
 *
 * What the servers do (read in their code): Prosody 0.12 broadcasts its offline store on initial
 * presence with priority >= 0 (mod_presence) unless the session has already queried the archive
 * (mod_mam: `mam_requested` stops the broadcast; the offline copies stay in its store). ejabberd
 * 23.01 (mod_offline) implements XEP-0013: a disco#info query to the node
 * 'http://jabber.org/protocol/offline' sets `resend_offline = false` on the session, so initial
 * presence no longer floods; `<offline><purge/></offline>` empties the store. It advertises
 * the node's namespace in disco#info (server and account); Prosody does not.
 *
 * So, in stream order:
 * 1. XEP-0013 advertised (cached disco#info of a previous stream): the disco#info query to the
 *    offline node first; initial presence only when its answer is handled (ejabberd sets the flag
 *    by a message to the session process: a presence in the same TCP read could overtake it).
 * 2. The first MAM page BEFORE initial presence (harmless anywhere; Prosody then skips the
 *    broadcast).
 * 3. Initial presence (priority 0: live delivery starts; never a negative priority, which would
 *    leave bare-JID messages undelivered for the whole stream).
 * No window where a live message is neither delivered nor fetched: until initial presence, the
 * server stores messages to our bare JID offline and archives them; the page that closes the gap
 * must therefore be requested AFTER initial presence — a page sent before it that says
 * `complete` is followed by one more page (after its last id). Everything from that page on is
 * delivered live. What the offline store still holds was all archived before presence, so the
 * purge (XEP-0013, only when the store is not empty) can go right after presence — and only when
 * the MAM preferences say every message is archived (default 'always', nobody under 'never'), so
 * no message with a body is lost; bodyless receipts and markers, which the archive does not keep,
 * are the remaining cost (we would not see them either way once the flood is suppressed). Where XEP-0013 is not
 * advertised and the server floods anyway, both copies arrive and the unique archive / origin ids
 * store each message once (today's behaviour, at twice the bytes).
 */
export function startNewStreamCatchup(ctx: ProtocolContext, ownBareJid: string): void {
  const flexible =
    ctx.state.features.account.includes(NS_OFFLINE) ||
    ctx.state.features.server.includes(NS_OFFLINE);
  if (flexible) {
    ctx.sendIq(
      xml(
        "iq",
        { type: "get", to: ownBareJid },
        xml("query", { xmlns: "http://jabber.org/protocol/disco#info", node: NS_OFFLINE }),
      ),
      ctx.session.registry.descriptor("lichen.offline.suppressed", {}),
      { timeoutTicks: 30 },
    );
  }
  startMamCatchup(ctx, undefined, { beforePresence: true });
  if (!flexible) ctx.send(initialPresence(ctx.session.ownInfo));
}

/** Whether our initial presence still waits for the XEP-0013 answer (see startNewStreamCatchup). */
function presencePending(ctx: ProtocolContext): boolean {
  return listIqHandlers(ctx.tx, ctx.accountId).some(
    (h) => h.handler.name === "lichen.offline.suppressed",
  );
}

/** Handlers every process registers (idempotent per registry). */
export function registerBuiltinHandlers(registry: HandlerRegistry): void {
  if (registry.has("lichen.mam.page")) return;
  registry.define("lichen.mam.page", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    const mam = ctx.state.mam;
    handleMamPage(args, {
      // The gap stays open; the next connect retries.
      failed: (condition) => ctx.afterCommit(() => ctx.session.emit("mam-error", condition)),
      advance: (last) => {
        mam.lastStanzaId = last;
      },
      complete: (last) => {
        if (args.beforePresence) {
          // Requested before our initial presence: messages that reached the archive after this
          // page and before presence were neither delivered nor fetched yet. One more page,
          // after presence.
          startMamCatchup(ctx, last, { beforePresence: presencePending(ctx) });
          return;
        }
        mam.gapOpen = false;
        mam.completedAt = ctx.tx.now;
        mam.syncedAt = ctx.tx.now;
        ctx.afterCommit(() => ctx.session.emit("mam-complete"));
      },
      next: (last) => startMamCatchup(ctx, last),
    });
  });
  registry.define("lichen.offline.suppressed", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    // Answered (or failed, or timed out): either way we go online now; after an error the server
    // may flood, and the unique ids store each message once.
    ctx.send(initialPresence(ctx.session.ownInfo));
    if (args.type !== "result") return;
    const iq = typeof args.stanza === "string" ? parseXml(args.stanza) : null;
    const count = iq
      ?.getChild("query", "http://jabber.org/protocol/disco#info")
      ?.getChildren("x", "jabber:x:data")
      .flatMap((x) => x.getChildren("field"))
      .find((f) => f.attrs.var === "number_of_messages")
      ?.getChildText("value");
    if (count !== undefined && count !== null && Number(count) === 0) return;
    // Purge only what the archive is known to hold: ask the MAM preferences first.
    ctx.sendIq(
      xml("iq", { type: "get" }, xml("prefs", { xmlns: "urn:xmpp:mam:2" })),
      ctx.session.registry.descriptor("lichen.offline.prefs", {}),
      { timeoutTicks: 30 },
    );
  });
  registry.define("lichen.offline.prefs", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    if (args.type !== "result") return;
    const prefs =
      typeof args.stanza === "string"
        ? parseXml(args.stanza)?.getChild("prefs", "urn:xmpp:mam:2")
        : null;
    // default='always' with nobody listed under <never/>: every message with a body that went to
    // the offline store was archived too, so purging loses none (XEP-0313 §6). Anything else
    // (roster-only archiving, excluded contacts): keep the offline store for other clients.
    const never = prefs?.getChild("never")?.getChildren("jid") ?? [];
    if (prefs?.attrs.default !== "always" || never.length > 0) {
      ctx.afterCommit(() => ctx.session.emit("offline-purged", false));
      return;
    }
    ctx.sendIq(
      xml("iq", { type: "set" }, xml("offline", { xmlns: NS_OFFLINE }, xml("purge", {}))),
      ctx.session.registry.descriptor("lichen.offline.purged", {}),
      { timeoutTicks: 30 },
    );
  });
  registry.define("lichen.offline.purged", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    ctx.afterCommit(() => ctx.session.emit("offline-purged", args.type === "result"));
  });
  registry.define("lichen.mam.invalidated", (hctx) => {
    (hctx as ProtocolContext).state.mam.gapOpen = true;
  });
}
