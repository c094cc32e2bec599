// Room invitations: XEP-0249 direct (from the inviter, <x xmlns='jabber:x:conference'/>) and
// XEP-0045 §7.8.2 mediated (from the room, <invite/> in muc#user). Stored as a request the app
// accepts (join) or declines, so an invitation received by the NSE waits for the main app.
import { tables } from "@lichen/store";
import xml, { type Element } from "@xmpp/xml";
import { and, eq } from "drizzle-orm";
import { bare } from "./jid.js";
import { joinedRoom, joinRoom } from "./muc.js";
import type { ProtocolContext } from "./context.js";
import type { RoomInvitation } from "./events.js";

export type { RoomInvitation };

const NS_CONFERENCE = "jabber:x:conference";
const NS_MUC_USER = "http://jabber.org/protocol/muc#user";

/** An invitation in this message? Stored (one per room, the newest wins) and reported. */
export function handleInvitation(ctx: ProtocolContext, message: Element): boolean {
  const from = message.attrs.from;
  if (!from) return false;
  const direct = message.getChild("x", NS_CONFERENCE);
  const invite = message.getChild("x", NS_MUC_USER)?.getChild("invite");
  let inv: RoomInvitation | null = null;
  // Rooms add a jabber:x:conference element to mediated invitations too: muc#user first.
  if (invite) {
    // Mediated invitations come from the room itself (its bare JID), naming the inviter.
    if (from !== bare(from) || !from.includes("@")) return true;
    inv = {
      room: from,
      // A semi-anonymous room names the inviter by occupant JID (room/nick): kept whole, it is
      // where a decline must go (the room routes it to that occupant); a real JID is kept bare.
      from: !invite.attrs.from
        ? from
        : bare(invite.attrs.from) === from
          ? invite.attrs.from
          : bare(invite.attrs.from),
      kind: "mediated",
      reason: invite.getChildText("reason"),
      password: message.getChild("x", NS_MUC_USER)?.getChildText("password") ?? null,
    };
  } else if (direct?.attrs.jid) {
    inv = {
      room: bare(direct.attrs.jid),
      from: bare(from),
      kind: "direct",
      reason: direct.attrs.reason ?? null,
      password: direct.attrs.password ?? null,
    };
  }
  if (!inv) return false;
  if (!inv.room.includes("@") || joinedRoom(ctx, inv.room)) return true; // nothing to ask
  const row = {
    fromJid: inv.from,
    kind: inv.kind,
    reason: inv.reason,
    password: inv.password,
    receivedAt: ctx.tx.now,
  };
  ctx.tx
    .insert(tables.roomInvitations)
    .values({ accountId: ctx.accountId, roomJid: inv.room, ...row })
    .onConflictDoUpdate({
      target: [tables.roomInvitations.accountId, tables.roomInvitations.roomJid],
      set: row,
    })
    .run();
  const event = inv;
  ctx.afterCommit(() => ctx.session.emit("room-invitation", event));
  return true;
}

function takeInvitation(ctx: ProtocolContext, room: string) {
  const where = and(
    eq(tables.roomInvitations.accountId, ctx.accountId),
    eq(tables.roomInvitations.roomJid, bare(room)),
  );
  const row = ctx.tx.select().from(tables.roomInvitations).where(where).get();
  if (row) ctx.tx.delete(tables.roomInvitations).where(where).run();
  return row;
}

/** Accept: join the room (bookmarked) under `nick`; the invitation is gone. False: none stored. */
export function acceptInvitation(ctx: ProtocolContext, room: string, nick: string): boolean {
  const row = takeInvitation(ctx, room);
  if (!row) return false;
  joinRoom(ctx, row.roomJid, nick, { password: row.password });
  return true;
}

/** Decline: forget it; a mediated one is declined through the room (XEP-0045 §7.8.2). */
export function declineInvitation(ctx: ProtocolContext, room: string, reason?: string): boolean {
  const row = takeInvitation(ctx, room);
  if (!row) return false;
  if (row.kind === "mediated")
    ctx.send(
      xml(
        "message",
        { to: row.roomJid },
        xml(
          "x",
          { xmlns: NS_MUC_USER },
          xml("decline", { to: row.fromJid }, ...(reason ? [xml("reason", {}, reason)] : [])),
        ),
      ),
    );
  return true;
}
