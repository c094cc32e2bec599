/**
 * The Lichen database schema (Drizzle, SQLite). Every process (main app, NSE, share extension, and
 * a native Swift NSE applying `migrations/*.sql`) uses exactly these tables.
 *
 * Conventions: snake_case SQL names, times are epoch milliseconds (INTEGER), JSON columns are TEXT
 * validated with @lichen/schema at every read/write boundary, booleans are INTEGER 0/1.
 *
 * This file must not import relative modules: drizzle-kit loads it directly.
 */
import {
  blob,
  index,
  integer,
  primaryKey,
  sqliteTable,
  text,
  uniqueIndex,
} from "drizzle-orm/sqlite-core";
import { sql } from "drizzle-orm";

/** Configured XMPP accounts. */
export const accounts = sqliteTable("accounts", {
  id: text("id").primaryKey(),
  /** Bare JID of the account. */
  jid: text("jid").notNull().unique(),
  /** Resource to bind (null: let the server pick). */
  resource: text("resource"),
  enabled: integer("enabled", { mode: "boolean" }).notNull().default(true),
  createdAt: integer("created_at").notNull(),
});

/**
 * Persisted session state of an account: the fields a stanza changes (XEP-0198 counters, MAM
 * marks) in their own columns, written with one UPDATE per stanza; everything else as one JSON
 * blob (AccountState without those fields), written only when it changes. The columns win over
 * any copy of those fields in the blob (an older or foreign writer's).
 */
export const accountState = sqliteTable("account_state", {
  accountId: text("account_id")
    .primaryKey()
    .references(() => accounts.id, { onDelete: "cascade" }),
  /**
   * AccountState as JSON without the column fields below, validated against @lichen/schema (with
   * the columns merged in) before every write.
   */
  state: text("state").notNull(),
  /** AccountState.sm.inboundH: stanzas handled and committed on the stream (XEP-0198 h). */
  smInboundH: integer("sm_inbound_h").notNull().default(0),
  /** AccountState.sm.outboundSent: stanzas numbered on the stream. */
  smOutboundSent: integer("sm_outbound_sent").notNull().default(0),
  /** AccountState.sm.outboundAcked: last h the server acknowledged. */
  smOutboundAcked: integer("sm_outbound_acked").notNull().default(0),
  /** AccountState.mam.syncedAt (null: never, or a state written before it existed). */
  mamSyncedAt: integer("mam_synced_at"),
  /** AccountState.mam.lastStanzaId. */
  mamLastStanzaId: text("mam_last_stanza_id"),
  /** AccountState.mam.lastTimestamp. */
  mamLastTimestamp: integer("mam_last_timestamp"),
  /** AccountState.stateVersion, duplicated so SQL (and Swift) can see it without parsing. */
  version: integer("version").notNull(),
  /** When the state was last invalidated (version bump or corrupt blob); null: never. */
  invalidatedAt: integer("invalidated_at"),
  updatedAt: integer("updated_at").notNull(),
});

/**
 * TLS session tickets (the serialized session Node's tls gives), so the next process — the NSE —
 * resumes the TLS session instead of a full handshake (no certificate on the wire). A secret for
 * that TLS session: kept like the SM state, never logged. One per account and server endpoint
 * (`address:port|servername`, what the socket connected to and the name verified): a ticket is
 * only ever offered to the endpoint that issued it; dropped when a handshake with it fails.
 */
export const tlsSessions = sqliteTable(
  "tls_sessions",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    endpoint: text("endpoint").notNull(),
    session: blob("session", { mode: "buffer" }).notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.endpoint] })],
);

/**
 * XEP-0198 unacked outbound queue: a stanza is appended inside the transaction that produces it and
 * reaches the socket only after commit; `<a h>` deletes acked rows; resume resends the rest.
 */
export const outboundQueue = sqliteTable(
  "outbound_queue",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    /** Which stream this stanza was counted on (AccountState.sm.unackedQueue). */
    streamKey: text("stream_key").notNull(),
    /** Outbound SM sequence number (unique per account). */
    seq: integer("seq").notNull(),
    /** Serialized stanza XML. */
    stanza: text("stanza").notNull(),
    /** A message with a body: a sync error is raised when it stays unacked. */
    important: integer("important", { mode: "boolean" }).notNull().default(false),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.accountId, t.seq] }),
    index("outbound_queue_stream").on(t.accountId, t.streamKey),
  ],
);

/**
 * Pending IQ handlers. The timeout counts ticks of *connected* time, so a process that is frozen or
 * killed never fires them early: only a connected session decrements `remaining_ticks`.
 */
export const iqHandlers = sqliteTable(
  "iq_handlers",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    iqId: text("iq_id").notNull(),
    /** HandlerDescriptor JSON (name, optional invalidation handler, bound values). */
    handler: text("handler").notNull(),
    /** Stream the IQ was sent on; a stream that is not resumed invalidates the handler. */
    streamKey: text("stream_key"),
    /**
     * The IQ's `to` (null: our own server). Only an answer from there completes the handler, so a
     * peer that guesses the id cannot forge it (RFC 6120 §8.1.2.1).
     */
    peer: text("peer"),
    /** Set when the handler can never complete; its invalidation handler is still to run. */
    invalidatedAt: integer("invalidated_at"),
    remainingTicks: integer("remaining_ticks").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.iqId] })],
);

/** Idle timers, also counted in ticks of connected time. */
export const idleTimers = sqliteTable(
  "idle_timers",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    /** HandlerDescriptor JSON called when the timer fires. */
    handler: text("handler").notNull(),
    remainingTicks: integer("remaining_ticks").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [index("idle_timers_account").on(t.accountId)],
);

/** Conversations (one-to-one or group chat) of an account. */
export const chats = sqliteTable(
  "chats",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    /** Bare JID of the contact or room. */
    jid: text("jid").notNull(),
    kind: text("kind", { enum: ["chat", "groupchat"] })
      .notNull()
      .default("chat"),
    name: text("name"),
    /** Group chats: our nickname while joined (null: not joined, e.g. left the room). */
    nick: text("nick"),
    /** Group chats: the room's subject (XEP-0045 §8.1), as last seen. */
    subject: text("subject"),
    /**
     * Group chats: where our occupancy stands — joining, joined, left, or why the room let us go
     * (kicked, banned, destroyed, removed, shutdown, error); only joining/joined rooms are re-joined.
     */
    roomStatus: text("room_status"),
    /** Group chats: the reason/condition that came with roomStatus (kick reason, error condition). */
    roomStatusDetail: text("room_status_detail"),
    /** Group chats: the nick we asked for (a conflict retries with a suffix, nick is what we got). */
    wantedNick: text("wanted_nick"),
    /** Group chats: in our XEP-0402 bookmarks, and whether they say autojoin. */
    bookmarked: integer("bookmarked", { mode: "boolean" }).notNull().default(false),
    autojoin: integer("autojoin", { mode: "boolean" }).notNull().default(false),
    unreadCount: integer("unread_count").notNull().default(0),
    muted: integer("muted", { mode: "boolean" }).notNull().default(false),
    /**
     * Messages to this chat are OMEMO-encrypted (XEP-0384): a plain send to it is refused rather
     * than silently sent in the clear. Set by the app through the OMEMO plugin.
     */
    omemo: integer("omemo", { mode: "boolean" }).notNull().default(false),
    /**
     * Group chats: when `room_members` last held the room's whole member/admin/owner lists
     * (muc#admin). Null: unknown or invalidated (an affiliation change, a new join): read again.
     */
    membersReadAt: integer("members_read_at"),
    lastActivityAt: integer("last_activity_at"),
    createdAt: integer("created_at").notNull(),
    /**
     * The chat's counters are kept up to date at read time from here on: `unread_count` and
     * `last_activity_at` hold everything up to the message with this row id, and the messages of
     * the chat stored after it (ids only grow: AUTOINCREMENT) add theirs when listChats reads them
     * (incoming ones count as unread; the latest one's stored_at is the last activity). So a
     * message into an existing chat writes no chat row. Null: the row's counters are complete
     * (a chat no message was counted into since migration 0013; the next stored message sets it).
     */
    countedFromId: integer("counted_from_id"),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.jid] })],
);

/**
 * Stored messages. The unique indexes make replays (resume, MAM catch-up, carbons) deduplicate:
 * insert with ON CONFLICT DO NOTHING. SQLite treats NULLs as distinct, so absent ids never clash.
 */
export const messages = sqliteTable(
  "messages",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    /** Bare JID of the chat this message belongs to. */
    chatJid: text("chat_jid").notNull(),
    direction: text("direction", { enum: ["in", "out"] }).notNull(),
    fromJid: text("from_jid").notNull(),
    toJid: text("to_jid"),
    /** Message type attribute (chat, groupchat, normal, headline). */
    type: text("type").notNull().default("chat"),
    /** The stanza's id attribute. */
    messageId: text("message_id"),
    /** XEP-0359 origin-id (set by the sender). */
    originId: text("origin_id"),
    /** XEP-0359 stanza-id assigned by `stanza_id_by` (own server or room). */
    stanzaId: text("stanza_id"),
    stanzaIdBy: text("stanza_id_by"),
    /** XEP-0313 archive result id, when the message came from MAM. */
    archiveId: text("archive_id"),
    body: text("body"),
    encrypted: integer("encrypted", { mode: "boolean" }).notNull().default(false),
    /** Outgoing: pending, sent, acked, received, displayed, error. Incoming: received. */
    deliveryState: text("delivery_state").notNull().default("received"),
    /** When it was sent (XEP-0203 delay stamp when present). */
    sentAt: integer("sent_at").notNull(),
    /** When this row was stored. */
    storedAt: integer("stored_at").notNull(),
  },
  (t) => [
    uniqueIndex("messages_stanza_id").on(t.accountId, t.stanzaIdBy, t.stanzaId),
    uniqueIndex("messages_origin_id").on(t.accountId, t.originId, t.fromJid),
    uniqueIndex("messages_archive_id").on(t.accountId, t.archiveId),
    // direction last: listChats counts a chat's incoming messages after its counted_from_id
    // from the index alone (no row read per message). Migration 0014.
    index("messages_chat").on(t.accountId, t.chatJid, t.id, t.direction),
    // A chat in time order: listMessages orders by the second of sent_at, then id (servers stamp
    // whole seconds, our own sends milliseconds: see read.ts).
    index("messages_chat_time").on(t.accountId, t.chatJid, sql`${t.sentAt} / 1000`, t.id),
  ],
);

/** XEP-0313 catch-up marks: one row per account archive (archive_jid = own bare JID) and per room. */
export const mamMarks = sqliteTable(
  "mam_marks",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    archiveJid: text("archive_jid").notNull(),
    lastArchiveId: text("last_archive_id"),
    lastTimestamp: integer("last_timestamp"),
    /** A gap exists (stream not resumed) and catch-up has not completed. */
    gapOpen: integer("gap_open", { mode: "boolean" }).notNull().default(false),
    completedAt: integer("completed_at"),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.archiveJid] })],
);

/**
 * IPC messages between processes. Direct messages are deleted when consumed; a broadcast
 * (destination "*") stays until it expires and records which roles consumed it in `delivered_to`
 * (",main,nse,"), so each role gets it exactly once.
 */
export const ipcMessages = sqliteTable(
  "ipc_messages",
  {
    seq: integer("seq").primaryKey({ autoIncrement: true }),
    id: text("id").notNull().unique(),
    /** The message `type` (disconnect-all, ping, ...). */
    name: text("name").notNull(),
    source: text("source").notNull(),
    /** A process role or "*". */
    destination: text("destination").notNull(),
    /** The message's `data` as JSON. */
    data: text("data").notNull(),
    responseTo: text("response_to"),
    createdAt: integer("created_at").notNull(),
    expiresAt: integer("expires_at").notNull(),
    deliveredTo: text("delivered_to").notNull().default(","),
  },
  (t) => [
    index("ipc_messages_destination").on(t.destination, t.seq),
    index("ipc_messages_expires").on(t.expiresAt),
  ],
);

/** Lease locks (matrix-rust-sdk style): generation increases whenever a different holder takes it. */
export const processLocks = sqliteTable("process_locks", {
  key: text("key").primaryKey(),
  holder: text("holder").notNull(),
  leaseExpiresAt: integer("lease_expires_at").notNull(),
  generation: integer("generation").notNull().default(1),
  acquiredAt: integer("acquired_at").notNull(),
});

/** Share extension outbox: written by the share process, sent by the main app. */
export const shareOutbox = sqliteTable(
  "share_outbox",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    /** ShareOutboxItem JSON. */
    item: text("item").notNull(),
    state: text("state", { enum: ["pending", "sending", "sent", "failed"] })
      .notNull()
      .default("pending"),
    error: text("error"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [index("share_outbox_state").on(t.state, t.createdAt)],
);

/**
 * Files attached to messages, both ways (XEP-0363 upload, XEP-0066 OOB download). Outgoing: the
 * share/`send --file` copy and its upload state machine (pending → requesting → slot → uploading →
 * sent, or failed with `error`); each transition is one transaction, so any process can continue
 * it. Incoming: the URL and what is known of the file (remote → downloading → downloaded | failed).
 */
export const attachments = sqliteTable(
  "attachments",
  {
    /** Outgoing: the share outbox item id, which is also the message's origin-id. */
    id: text("id").primaryKey(),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    direction: text("direction", { enum: ["out", "in"] })
      .notNull()
      .default("out"),
    messageRowId: integer("message_row_id").references(() => messages.id, { onDelete: "set null" }),
    /** Path relative to the shared container's attachment directory (incoming: once downloaded). */
    localPath: text("local_path"),
    fileName: text("file_name"),
    /** Null for an incoming file until its download tells it. */
    mimeType: text("mime_type"),
    size: integer("size"),
    /** The transfer state (the column name predates downloads): see the table comment. */
    state: text("upload_state", {
      enum: [
        "pending",
        "requesting",
        "slot",
        "uploading",
        "sent",
        "failed",
        "remote",
        "downloading",
        "downloaded",
      ],
    })
      .notNull()
      .default("pending"),
    /** The GET URL (`aesgcm://…#keyiv` when encrypted, XEP-0454). */
    url: text("url"),
    /** XEP-0363 slot: PUT URL, its allowed headers (JSON object) and until when we reuse it. */
    putUrl: text("put_url"),
    putHeaders: text("put_headers"),
    slotExpiresAt: integer("slot_expires_at"),
    /** XEP-0454 key (32 bytes) and IV (12 bytes) as hex, when the file is sent encrypted. */
    aesgcmKey: text("aesgcm_key"),
    /** Bytes transferred so far (a download resumes from here with Range). */
    transferred: integer("transferred").notNull().default(0),
    error: text("error"),
    createdAt: integer("created_at").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [index("attachments_upload").on(t.state), index("attachments_message").on(t.messageRowId)],
);

/** XEP-0363 upload service of an account's server, as discovered (disco#items + #info). */
export const uploadServices = sqliteTable("upload_services", {
  accountId: text("account_id")
    .primaryKey()
    .references(() => accounts.id, { onDelete: "cascade" }),
  /** The service JID; null: the server has none. */
  jid: text("jid"),
  /** Largest file it accepts (bytes), if it says. */
  maxSize: integer("max_size"),
  discoveredAt: integer("discovered_at").notNull(),
});

/** Local notifications to hand to the OS (NotificationContent JSON). */
export const pendingNotifications = sqliteTable("pending_notifications", {
  id: text("id").primaryKey(),
  accountId: text("account_id").references(() => accounts.id, { onDelete: "cascade" }),
  content: text("content").notNull(),
  deliverAt: integer("deliver_at"),
  deliveredAt: integer("delivered_at"),
  createdAt: integer("created_at").notNull(),
});

/**
 * XEP-0184 receipts the NSE deferred (session option receipts: "defer"): the main app sends them
 * once it is online, in the transaction that deletes the row, so each goes out exactly once
 * whichever process stored it.
 */
export const deferredReceipts = sqliteTable(
  "deferred_receipts",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    /** Who asked for the receipt (the message's from). */
    toJid: text("to_jid").notNull(),
    /** The id of the message being acknowledged. */
    messageId: text("message_id").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.toJid, t.messageId] })],
);

/**
 * The account's roster (RFC 6121 §2), as the server last sent it: the full result of a roster get
 * replaces it, roster pushes change one item. Only with a stored roster may a client ask with an
 * XEP-0237 version (an "unchanged" answer sends no items): its version is `rosters.version`.
 */
export const rosterItems = sqliteTable(
  "roster_items",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    jid: text("jid").notNull(),
    name: text("name"),
    /** none | to | from | both (RFC 6121 §2.1.2.5). */
    subscription: text("subscription", { enum: ["none", "to", "from", "both"] }).notNull(),
    /** "subscribe" while our request to the contact is pending. */
    ask: text("ask"),
    /** JSON array of group names. */
    groups: text("groups").notNull().default("[]"),
    approved: integer("approved", { mode: "boolean" }).notNull().default(false),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.jid] })],
);

/** One row per account whose roster is stored: the XEP-0237 version it is at (null: none given). */
export const rosters = sqliteTable("rosters", {
  accountId: text("account_id")
    .primaryKey()
    .references(() => accounts.id, { onDelete: "cascade" }),
  version: text("version"),
  updatedAt: integer("updated_at").notNull(),
});

/** Inbound presence subscription requests (RFC 6121 §3.1.3) waiting for the user's answer. */
export const subscriptionRequests = sqliteTable(
  "subscription_requests",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    jid: text("jid").notNull(),
    /** The optional <status/> text that came with the request. */
    status: text("status"),
    receivedAt: integer("received_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.jid] })],
);

/** "Could not synchronize" conditions per account. */
export const syncErrors = sqliteTable(
  "sync_errors",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    code: text("code").notNull(),
    message: text("message").notNull(),
    createdAt: integer("created_at").notNull(),
    notifiedAt: integer("notified_at"),
    resolvedAt: integer("resolved_at"),
  },
  (t) => [index("sync_errors_account").on(t.accountId, t.resolvedAt)],
);

/**
 * XEP-0115 entity capabilities cache, shared by all accounts: a verification string (hash + ver)
 * maps to the disco#info it was verified against, so each distinct client version is queried once.
 */
export const capsCache = sqliteTable(
  "caps_cache",
  {
    /** Hash function name as in the <c/> element ("sha-1"). */
    hash: text("hash").notNull(),
    /** Base64 verification string. */
    ver: text("ver").notNull(),
    /** JSON: [{ category, type, lang?, name? }]. */
    identities: text("identities").notNull(),
    /** JSON: string[] (feature vars). */
    features: text("features").notNull(),
    /** JSON: XEP-0128 extended info forms, [{ formType, fields: { var: string[] } }]. */
    forms: text("forms").notNull().default("[]"),
    /** Which entity answered (full JID), for diagnostics. */
    source: text("source").notNull(),
    verifiedAt: integer("verified_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.hash, t.ver] })],
);

/** The caps an entity (full JID) last announced in presence, per account. */
export const entityCaps = sqliteTable(
  "entity_caps",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    jid: text("jid").notNull(),
    node: text("node").notNull(),
    hash: text("hash").notNull(),
    ver: text("ver").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.accountId, t.jid] }),
    index("entity_caps_ver").on(t.hash, t.ver),
  ],
);

/** Rows that failed validation, kept verbatim (never silently dropped) with the reason. */
export const quarantine = sqliteTable("quarantine", {
  id: integer("id").primaryKey({ autoIncrement: true }),
  tableName: text("table_name").notNull(),
  rowKey: text("row_key").notNull(),
  raw: text("raw").notNull(),
  error: text("error").notNull(),
  at: integer("at").notNull(),
});

/** Own OMEMO identity per account. Key material is base64. */
export const omemoIdentity = sqliteTable("omemo_identity", {
  accountId: text("account_id")
    .primaryKey()
    .references(() => accounts.id, { onDelete: "cascade" }),
  deviceId: integer("device_id").notNull(),
  registrationId: integer("registration_id").notNull(),
  identityPublicKey: text("identity_public_key").notNull(),
  identityPrivateKey: text("identity_private_key").notNull(),
  createdAt: integer("created_at").notNull(),
});

export const omemoPrekeys = sqliteTable(
  "omemo_prekeys",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    keyId: integer("key_id").notNull(),
    publicKey: text("public_key").notNull(),
    privateKey: text("private_key").notNull(),
    /** Set when a peer used it; removed after the bundle is republished. */
    consumedAt: integer("consumed_at"),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.keyId] })],
);

export const omemoSignedPrekeys = sqliteTable(
  "omemo_signed_prekeys",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    keyId: integer("key_id").notNull(),
    publicKey: text("public_key").notNull(),
    privateKey: text("private_key").notNull(),
    signature: text("signature").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.keyId] })],
);

/** Signal sessions per peer device. */
export const omemoSessions = sqliteTable(
  "omemo_sessions",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    jid: text("jid").notNull(),
    deviceId: integer("device_id").notNull(),
    /** Serialized session record (base64 or JSON, as produced by the Signal library). */
    record: text("record").notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.jid, t.deviceId] })],
);

/** Device ids published by each contact (and by ourselves), one row per device. */
export const omemoDeviceLists = sqliteTable(
  "omemo_device_lists",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    jid: text("jid").notNull(),
    deviceId: integer("device_id").notNull(),
    /** Still present in the last device list seen. */
    active: integer("active", { mode: "boolean" }).notNull().default(true),
    label: text("label"),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.jid, t.deviceId] })],
);

/** Trust decisions per contact device identity key. */
export const omemoTrust = sqliteTable(
  "omemo_trust",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    jid: text("jid").notNull(),
    deviceId: integer("device_id").notNull(),
    identityKey: text("identity_key").notNull(),
    trust: text("trust", { enum: ["undecided", "trusted", "untrusted", "verified"] })
      .notNull()
      .default("undecided"),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.jid, t.deviceId] })],
);

/**
 * OMEMO work the NSE leaves to the main app (session repair needs a bundle fetch and a send): one
 * serialized HandlerDescriptor per row, deleted by the main app in the transaction that does it.
 */
export const omemoPendingWork = sqliteTable(
  "omemo_pending_work",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    /** What the work is about (e.g. "repair <jid> <deviceId>"): queued once. */
    key: text("key").notNull(),
    /** HandlerDescriptor JSON. */
    handler: text("handler").notNull(),
    createdAt: integer("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.key] })],
);

/**
 * Session repairs sent (a key transport element to a device whose messages we could not decrypt),
 * so repeated failures from one device do not send a repair each: at most one per interval.
 */
export const omemoRepairs = sqliteTable(
  "omemo_repairs",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    jid: text("jid").notNull(),
    deviceId: integer("device_id").notNull(),
    sentAt: integer("sent_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.jid, t.deviceId] })],
);

/**
 * A room's members, admins and owners (XEP-0045 §9.5 muc#admin lists), as last read in full and
 * kept current from the room's affiliation announcements; valid while `chats.members_read_at` is
 * set. OMEMO encrypts for them in members-only rooms.
 */
export const roomMembers = sqliteTable(
  "room_members",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    roomJid: text("room_jid").notNull(),
    /** Bare real JID. */
    jid: text("jid").notNull(),
    affiliation: text("affiliation", { enum: ["member", "admin", "owner"] }).notNull(),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.roomJid, t.jid] })],
);

/** Occupants of a joined room, kept current from its presence (XEP-0045 §7.2). */
export const roomOccupants = sqliteTable(
  "room_occupants",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    roomJid: text("room_jid").notNull(),
    nick: text("nick").notNull(),
    /** Real bare or full JID, only when the room shows it (non-anonymous room, or we moderate). */
    realJid: text("real_jid"),
    affiliation: text("affiliation").notNull().default("none"),
    role: text("role").notNull().default("none"),
    updatedAt: integer("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.roomJid, t.nick] })],
);

/** Room invitations (XEP-0249 direct, XEP-0045 §7.8.2 mediated) until the app accepts or declines. */
export const roomInvitations = sqliteTable(
  "room_invitations",
  {
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    roomJid: text("room_jid").notNull(),
    /** Who invites (a real JID). */
    fromJid: text("from_jid").notNull(),
    kind: text("kind", { enum: ["direct", "mediated"] }).notNull(),
    reason: text("reason"),
    password: text("password"),
    receivedAt: integer("received_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.accountId, t.roomJid] })],
);
