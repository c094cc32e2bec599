// The statements every encrypted message runs, prepared once per store: building the SQL and preparing
// the statement for each message cost more than the Signal decryption itself (drizzle prepares a
// new statement per execution otherwise).
import { preparedPerStore, tables, type StoreTx } from "@lichen/store";
import { and, eq, getTableName, sql } from "drizzle-orm";

const p = (name: string) => sql.placeholder(name);

/** A raw statement whose one column is the row (better-sqlite3's pluck()). */
interface TextRow<Params extends unknown[]> {
  get(...params: Params): string | undefined;
}

function prepare(tx: StoreTx) {
  const m = tables.messages;
  const s = tables.omemoSessions;
  const t = tables.omemoTrust;
  const d = tables.omemoDeviceLists;
  const c = tables.chats;
  const o = tables.roomOccupants;
  return {
    /** A chat's kind and our nick (a room's): asked for every message from a full JID. */
    chat: tx
      .select({ kind: c.kind, nick: c.nick })
      .from(c)
      .where(and(eq(c.accountId, p("account")), eq(c.jid, p("jid"))))
      .prepare(),
    /** A room occupant's real JID (as the room announced it), for a room or private message. */
    occupantRealJid: tx
      .select({ realJid: o.realJid })
      .from(o)
      .where(and(eq(o.accountId, p("account")), eq(o.roomJid, p("room")), eq(o.nick, p("nick"))))
      .prepare(),
    /** A message with this archive id (our archive's, or a room's within that room's chat). */
    byArchiveId: tx
      .select({ id: m.id })
      .from(m)
      .where(and(eq(m.accountId, p("account")), eq(m.archiveId, p("id"))))
      .prepare(),
    byArchiveIdInChat: tx
      .select({ id: m.id })
      .from(m)
      .where(and(eq(m.accountId, p("account")), eq(m.archiveId, p("id")), eq(m.chatJid, p("chat"))))
      .prepare(),
    /** A message with this stanza-id of that archive (messages_stanza_id). */
    byStanzaId: tx
      .select({ id: m.id })
      .from(m)
      .where(and(eq(m.accountId, p("account")), eq(m.stanzaIdBy, p("by")), eq(m.stanzaId, p("id"))))
      .prepare(),
    byStanzaIdInChat: tx
      .select({ id: m.id })
      .from(m)
      .where(
        and(
          eq(m.accountId, p("account")),
          eq(m.stanzaIdBy, p("by")),
          eq(m.stanzaId, p("id")),
          eq(m.chatJid, p("chat")),
        ),
      )
      .prepare(),
    byOriginId: tx
      .select({ id: m.id })
      .from(m)
      .where(and(eq(m.accountId, p("account")), eq(m.originId, p("id")), eq(m.fromJid, p("from"))))
      .prepare(),
    sessionRecord: tx
      .select({ record: s.record })
      .from(s)
      .where(and(eq(s.accountId, p("account")), eq(s.jid, p("jid")), eq(s.deviceId, p("device"))))
      .prepare(),
    /** A device's identity and trust as one JSON text (what SignalView compares, no JS round trip). */
    trustJson: tx.sqlite
      .prepare<[account: string, jid: string, device: number], string>(
        `SELECT json_object('jid', jid, 'deviceId', device_id, 'identityKey', identity_key, 'trust', trust)
         FROM ${getTableName(t)} WHERE account_id = ? AND jid = ? AND device_id = ?`,
      )
      .pluck() as TextRow<[account: string, jid: string, device: number]>,
    /** Writes a session record (the one write of every decrypted message). */
    upsertSession: tx
      .insert(s)
      .values({
        accountId: p("account"),
        jid: p("jid"),
        deviceId: p("device"),
        record: p("record"),
        updatedAt: p("now"),
      })
      .onConflictDoUpdate({
        target: [s.accountId, s.jid, s.deviceId],
        set: { record: sql`excluded.record`, updatedAt: sql`excluded.updated_at` },
      })
      .prepare(),
    deviceList: tx
      .select({ id: d.deviceId, active: d.active })
      .from(d)
      .where(and(eq(d.accountId, p("account")), eq(d.jid, p("jid"))))
      .prepare(),
  };
}

export type HotQueries = ReturnType<typeof prepare>;

/** The prepared statements of this transaction's store (made on first use). */
export const hotQueries: (tx: StoreTx) => HotQueries = preparedPerStore(prepare);
