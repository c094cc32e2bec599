// Our own chat messages in the store: stored as outgoing ("pending") in the transaction that
// queues them, "sent" once the server acknowledged them (XEP-0198). Inbound messages are stored
// by protocol.ts (storeMessage), where the stanza is interpreted.
import { tables, type StoreTx } from "@lichen/store";
import xml, { type Element } from "@xmpp/xml";
import { and, eq, inArray, sql } from "drizzle-orm";
import { bare } from "./jid.js";
import { EncryptionRequiredError } from "./outgoing.js";

export interface OutgoingChatMessage {
  to: string;
  body: string;
  originId: string;
  extra?: Element[];
  /** Body sent on the wire instead of `body` (an encrypted message's fallback text). */
  wireBody?: string;
  /** Stored as an end-to-end encrypted message. */
  encrypted?: boolean;
}

/**
 * XEP-0184: our outgoing message `originId` was received by `peer` (bare JID). Only the
 * recipient may confirm: a stranger's receipt for our id changes nothing. Returned unrun so a
 * test can read its query plan.
 */
export function markReceivedByRecipient(
  tx: StoreTx,
  accountId: string,
  originId: string,
  peer: string,
) {
  return tx
    .update(tables.messages)
    .set({ deliveryState: "received" })
    .where(
      and(
        eq(tables.messages.accountId, accountId),
        eq(tables.messages.originId, originId),
        eq(tables.messages.direction, "out"),
        // Unary + keeps SQLite from choosing messages_chat_time for this term: it did, and
        // scanned the whole chat per receipt (0.33 ms at 3,000 messages, growing); the
        // origin-id index finds the one row.
        sql`+${tables.messages.chatJid} = ${peer}`,
      ),
    );
}

/** Whether messages to this chat (bare JID) must be end-to-end encrypted (`chats.omemo`). */
export function isChatEncrypted(tx: StoreTx, accountId: string, jid: string): boolean {
  return (
    tx
      .select({ omemo: tables.chats.omemo })
      .from(tables.chats)
      .where(and(eq(tables.chats.accountId, accountId), eq(tables.chats.jid, bare(jid))))
      .get()?.omemo ?? false
  );
}

/**
 * Store a chat message as outgoing and return the stanza to queue, or null when a message with
 * this origin-id is already stored (the unique index: a resend after a crash stores and sends
 * nothing). The origin-id is the message id too, so the receiver recognises a resend. A plain
 * message to an encrypted chat throws EncryptionRequiredError (the transaction rolls back).
 */
export function storeOutgoingMessage(
  tx: StoreTx,
  accountId: string,
  ownBareJid: string,
  m: OutgoingChatMessage,
): Element | null {
  const chatJid = bare(m.to);
  // A joined room gets a groupchat message (no receipt request: XEP-0184 §5.3).
  const room = tx
    .select({ kind: tables.chats.kind, nick: tables.chats.nick, omemo: tables.chats.omemo })
    .from(tables.chats)
    .where(and(eq(tables.chats.accountId, accountId), eq(tables.chats.jid, chatJid)))
    .get();
  if (room?.omemo && !m.encrypted) throw new EncryptionRequiredError(chatJid);
  const type = room?.kind === "groupchat" && room.nick && m.to === chatJid ? "groupchat" : "chat";
  const inserted = tx
    .insert(tables.messages)
    .values({
      accountId,
      chatJid,
      direction: "out",
      fromJid: ownBareJid,
      toJid: m.to,
      type,
      messageId: m.originId,
      originId: m.originId,
      body: m.body,
      encrypted: m.encrypted ?? false,
      deliveryState: "pending",
      sentAt: tx.now,
      storedAt: tx.now,
    })
    .onConflictDoNothing()
    .run();
  if (inserted.changes === 0) return null;
  tx.insert(tables.chats)
    .values({
      accountId,
      jid: chatJid,
      lastActivityAt: tx.now,
      createdAt: tx.now,
    })
    .onConflictDoUpdate({
      target: [tables.chats.accountId, tables.chats.jid],
      set: { lastActivityAt: tx.now },
    })
    .run();
  return xml(
    "message",
    { to: m.to, type, id: m.originId },
    xml("body", {}, m.wireBody ?? m.body),
    ...(m.extra ?? []),
    xml("origin-id", { xmlns: "urn:xmpp:sid:0", id: m.originId }),
    ...(type === "chat" ? [xml("request", { xmlns: "urn:xmpp:receipts" })] : []),
    xml("store", { xmlns: "urn:xmpp:hints" }),
  );
}

/** Messages of ours the server acknowledged are "sent" (no longer "pending"): their origin-ids. */
export function markOutgoingSent(tx: StoreTx, accountId: string, originIds: string[]): string[] {
  if (originIds.length === 0) return [];
  return tx
    .update(tables.messages)
    .set({ deliveryState: "sent" })
    .where(
      and(
        eq(tables.messages.accountId, accountId),
        eq(tables.messages.direction, "out"),
        eq(tables.messages.deliveryState, "pending"),
        inArray(tables.messages.originId, originIds),
      ),
    )
    .returning({ originId: tables.messages.originId })
    .all()
    .map((r) => r.originId)
    .filter((id): id is string => id !== null);
}
