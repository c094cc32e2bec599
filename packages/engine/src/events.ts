/**
 * What a DurableSession and an AppController emit, with their payloads: `session.on(name, fn)`
 * is typed by these maps. Events that report stored data fire only after their transaction
 * committed (the session's after-commit queue), never from inside it.
 */
import type { PushRegistration } from "@lichen/schema";
import type { Element } from "@xmpp/xml";
import type { MediaError } from "./media/errors.js";

export type Subscription = "none" | "to" | "from" | "both";

/** A stored roster item (RFC 6121 §2.1), as `roster` events and listRoster() report it. */
export interface RosterItem {
  jid: string;
  name: string | null;
  subscription: Subscription;
  /** "subscribe": our request to the contact is pending. */
  ask: "subscribe" | null;
  groups: string[];
  /** Subscription pre-approved by us (RFC 6121 §3.4). */
  approved: boolean;
}

export interface SubscriptionRequest {
  jid: string;
  status: string | null;
  receivedAt: number;
}

/** A message stored by a stanza transaction (incoming, carbon, or our own from the archive). */
export interface MessageStoredEvent {
  chatJid: string;
  body: string;
  stanzaId: string | null;
  originId: string | null;
  direction: "in" | "out";
  messageId: string | null;
  /** When it was sent: its delay stamp (a MAM result's, an offline one), else when stored; ms. */
  sentAt: number;
  /** A room message: the sender's nick in the room (chatJid is the room). */
  roomNick?: string;
  /** A room message that mentions our nick in the room. */
  mentioned?: boolean;
}

/**
 * The roster changed or was confirmed: `unchanged` (XEP-0237: the stored roster is current), the
 * full roster of a get, or a `push` of one item (`items`) or one removal (`removed`).
 */
export type RosterEvent =
  | { unchanged: true; version: string | null }
  | { unchanged: false; push?: false; version: string | null; items: RosterItem[] }
  | {
      unchanged: false;
      push: true;
      version: string | null;
      items: RosterItem[];
      removed: string[];
    };

/** One conference bookmark (XEP-0402 or XEP-0048), whichever storage it came from. */
export interface Bookmark {
  room: string;
  name: string | null;
  nick: string | null;
  autojoin: boolean;
}

/** A stored room invitation (XEP-0249 direct or XEP-0045 mediated). */
export interface RoomInvitation {
  room: string;
  /** Who invites: a bare JID, or (semi-anonymous room) the inviter's occupant JID room/nick. */
  from: string;
  kind: "direct" | "mediated";
  reason: string | null;
  password: string | null;
}

/** Our occupancy of a room ended; `detail` is the kick/ban/destroy reason or error condition. */
export interface RoomLeftEvent {
  room: string;
  reason: "left" | "kicked" | "banned" | "destroyed" | "removed" | "shutdown" | "error";
  detail: string | null;
  /** A destroyed room may name its successor (XEP-0045 §10.9). */
  alternate?: string;
}

export interface SessionEvents {
  /** Online on this connection: the stream was resumed, or a new one negotiated. */
  online: ["resumed" | "new"];
  offline: [];
  /** The network or the server dropped the connection (not suspend()/close()). */
  "connection-lost": [];
  "connect-failed": [Error];
  /** Another process took the session lock: this session stopped. */
  "session-lost": [{ reason: string; holder: string | null }];
  /** A silently dead link was dropped (see LinkLiveness). */
  "link-dead": [{ silentMs: number }];
  "resume-failed": [];
  "replay-reconnect-failed": [unknown];
  "store-unavailable": [unknown];
  /** The stored h was not the one this session committed: new stream and MAM catch-up. */
  "continuity-lost": [{ stored: number; expected: number }];
  /** An inbound stanza committed (after its transaction). */
  stanza: [Element];
  /** The stanza's transaction failed (rolled back): not counted, replayed after a reconnect. */
  "stanza-failed": [Element, Error];
  "stanza-quarantined": [Element];
  "prepare-retry": [Element, number];
  "message-stored": [MessageStoredEvent];
  /** A queued outgoing message reached the server (its row is now `sent`). */
  "message-sent": [{ originId: string }];
  /** The server acknowledged our stanzas up to h (XEP-0198). */
  acked: [number];
  /** Stanzas written to the socket. */
  flushed: [number];
  "mam-complete": [];
  /** A MAM query failed: the condition, and the room for a room archive. */
  "mam-error": [string, string?];
  "offline-purged": [boolean];
  "room-joined": [string];
  "room-error": [{ room: string; condition: string }];
  "room-mam-complete": [string];
  /** Our occupancy ended: we left, or the room let us go (kicked, banned, destroyed …). */
  "room-left": [RoomLeftEvent];
  /** The room refused our nick: we try the next one (`tried` → `next`). */
  "room-nick-conflict": [{ room: string; tried: string; next: string }];
  "room-subject": [{ room: string; subject: string | null }];
  /** XEP-0410 self-ping found the room no longer has us: joining again. */
  "room-rejoining": [string];
  /** An invitation (XEP-0249 direct or mediated), stored until accepted or declined. */
  "room-invitation": [RoomInvitation];
  /** Our XEP-0402 bookmarks (or XEP-0048 storage) seen: fetched on a new stream or pushed. */
  bookmarks: [Bookmark[]];
  /** Publishing a room's bookmark failed (the join or leave itself stands). */
  "bookmark-error": [{ room: string; condition: string }];
  caps: [{ jid: string; ver: string; features: string[] }];
  "caps-mismatch": [{ jid: string; ver: string; computed: string | null }];
  "disco-cached": [string | null];
  roster: [RosterEvent];
  /** Someone asks to see our presence (RFC 6121 §3.1.3); stored until answered. */
  "subscription-request": [{ jid: string; status: string | null }];
  carbons: [boolean];
  "push-enabled": [PushRegistration];
  /** The server acknowledged a push disable (XEP-0357): no more pushes to that token. */
  "push-disabled": [PushRegistration];
  /** An enable or disable IQ failed: the condition (the registration's `lastError` has more). */
  "push-error": [string];
  "iq-answer-ignored": [{ iqId: string; from: string | null }];
  "handler-error": [Error];
  /** An upload moved on (`slot`: ready to PUT) or failed for good (with the error). */
  "attachment-changed": [{ id: string; state: "slot" | "failed"; error?: MediaError }];
}

/** Every SessionEvents name, at run time (the README's list is checked against it). */
export const SESSION_EVENTS = [
  "online",
  "offline",
  "connection-lost",
  "connect-failed",
  "session-lost",
  "link-dead",
  "resume-failed",
  "replay-reconnect-failed",
  "store-unavailable",
  "continuity-lost",
  "stanza",
  "stanza-failed",
  "stanza-quarantined",
  "prepare-retry",
  "message-stored",
  "message-sent",
  "acked",
  "flushed",
  "mam-complete",
  "mam-error",
  "offline-purged",
  "room-joined",
  "room-error",
  "room-mam-complete",
  "room-left",
  "room-nick-conflict",
  "room-subject",
  "room-rejoining",
  "room-invitation",
  "bookmarks",
  "bookmark-error",
  "caps",
  "caps-mismatch",
  "disco-cached",
  "roster",
  "subscription-request",
  "carbons",
  "push-enabled",
  "push-disabled",
  "push-error",
  "iq-answer-ignored",
  "handler-error",
  "attachment-changed",
] as const satisfies readonly (keyof SessionEvents)[];

// Compile-time: the list above names every event of the map.
type Unlisted = Exclude<keyof SessionEvents, (typeof SESSION_EVENTS)[number]>;
const everyEventListed: [Unlisted] extends [never] ? true : Unlisted = true;
void everyEventListed;
