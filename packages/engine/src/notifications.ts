// One notification per push, as iOS shows it. An NSE may only modify the ONE notification of the
// push it was woken for (UNNotificationContent); it cannot add one alert per message. So the
// messages a push brought are folded into that one content: the newest message (its sender as
// title, its body), a per-chat summary line ("+N more" in its chat, "M in K other chats") as the
// subtitle, threadId = the chat JID (iOS groups by threadIdentifier) and count = how many messages
// it stands for (iOS summaryArgumentCount). Memory and output stay bounded whatever the flood: one
// entry per chat, at most MAX_SUMMARY_CHATS of them in the result.
import type { AlertNotification, NotificationContent } from "@lichen/schema";

/** At most this many chats are listed in a push's summary (the newest first). */
export const MAX_SUMMARY_CHATS = 8;
/** A notification body longer than this is cut (with "…"): a flood of long messages stays small. */
export const MAX_NOTIFICATION_BODY = 1000;
/** A summary line's last body is cut to this length. */
const MAX_SUMMARY_BODY = 200;

/** The messages of one chat a push brought. */
export interface ChatSummary {
  accountId: string;
  /** The chat (the contact's bare JID): the notification's threadId. */
  chatJid: string;
  /** How many new incoming messages this push brought in this chat. */
  count: number;
  /** The newest of them (cut to 200 characters). */
  lastBody: string;
  /** Its stanza-id or origin-id, when it has one. */
  lastMessageId?: string;
}

/** What a push brought, bounded: the NseResult's `summary`. */
export interface PushSummary {
  /** New incoming messages stored for this push, over all accounts and chats. */
  messages: number;
  /** Chats with new messages, the one with the newest message first, at most MAX_SUMMARY_CHATS. */
  chats: ChatSummary[];
  /** Chats with new messages left out of `chats` by the cap. */
  moreChats: number;
}

/** A stored incoming message, as the NSE sees it (DurableSession "message-stored"). */
export interface StoredIncoming {
  accountId: string;
  chatJid: string;
  body: string;
  messageId?: string;
  /** A room message: the sender's nick (the chat is the room). */
  roomNick?: string;
  /** A room message mentioning our nick. */
  mentioned?: boolean;
  /**
   * When it was sent (its delay stamp, else when stored), ms. Several archives (rooms, the
   * account) catch up concurrently, so arrival order is not age order: the newest by this is
   * shown. Without it, arrival order.
   */
  sentAt?: number;
}

function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** One chat's part of a push, with what its newest message shows. */
interface ChatEntry extends ChatSummary {
  newestAt: number;
  /** Arrival number of its newest message: breaks ties of newestAt (whole-second stamps). */
  newestSeq: number;
  newestBody: string;
  newestMentions: boolean;
}

/**
 * Collects the messages stored for one push: O(1) per message, O(chats) memory. The newest
 * message is the one sent last (StoredIncoming.sentAt), ties and undated ones in arrival order.
 */
export class PushNotificationBuilder {
  private readonly chats = new Map<string, ChatEntry>();
  private total = 0;
  private seq = 0;
  /** Key of the chat whose newest message is the newest of all (kept per add: O(1)). */
  private topKey: string | null = null;

  add(m: StoredIncoming): void {
    const key = `${m.accountId}\u0000${m.chatJid}`;
    const prev = this.chats.get(key);
    const seq = ++this.seq;
    // Undated: as new as anything seen so far (arrival order).
    const at = m.sentAt ?? this.newest?.newestAt ?? 0;
    const body = m.roomNick !== undefined ? `${m.roomNick}: ${m.body}` : m.body;
    const newer = !prev || at >= prev.newestAt;
    const entry: ChatEntry = newer
      ? {
          accountId: m.accountId,
          chatJid: m.chatJid,
          count: (prev?.count ?? 0) + 1,
          lastBody: cut(body, MAX_SUMMARY_BODY),
          ...(m.messageId !== undefined ? { lastMessageId: m.messageId } : {}),
          newestAt: at,
          newestSeq: seq,
          newestBody: cut(body, MAX_NOTIFICATION_BODY),
          newestMentions: m.mentioned === true,
        }
      : { ...prev, count: prev.count + 1 };
    const top = this.newest;
    this.chats.set(key, entry);
    this.total++;
    if (!top || (this.topKey !== key && byNewest(entry, top) < 0)) this.topKey = key;
  }

  private get newest(): ChatEntry | undefined {
    return this.topKey === null ? undefined : this.chats.get(this.topKey);
  }

  get messages(): number {
    return this.total;
  }

  summary(): PushSummary {
    const all = [...this.chats.values()].sort(byNewest);
    return {
      messages: this.total,
      chats: all.slice(0, MAX_SUMMARY_CHATS).map(toSummary),
      moreChats: Math.max(0, all.length - MAX_SUMMARY_CHATS),
    };
  }

  /** The push's one content: the newest message with a summary line, or null when none came. */
  alert(): AlertNotification | null {
    const all = [...this.chats.values()];
    const newest = this.newest;
    if (!newest) return null;
    const inChat = newest.count - 1;
    const otherChats = all.length - 1;
    const otherMessages = this.total - newest.count;
    const parts: string[] = [];
    if (inChat > 0) parts.push(`+${inChat} more`);
    if (otherChats > 0)
      parts.push(`${otherMessages} in ${otherChats} other chat${otherChats === 1 ? "" : "s"}`);
    return {
      kind: "alert",
      title: cut(newest.chatJid, 1000),
      body: newest.newestBody,
      threadId: newest.chatJid,
      accountId: newest.accountId,
      ...(newest.lastMessageId !== undefined ? { messageId: newest.lastMessageId } : {}),
      ...(parts.length > 0 ? { subtitle: parts.join(" · ") } : {}),
      count: this.total,
      ...(newest.newestMentions ? { mention: true } : {}),
    };
  }

  /** The alert, or a silent content saying why there is nothing to show. */
  content(silentReason: string): NotificationContent {
    return this.alert() ?? { kind: "silent", reason: silentReason };
  }
}

/** Newest first: sent later, or (same time) arrived later. */
function byNewest(a: ChatEntry, b: ChatEntry): number {
  return b.newestAt - a.newestAt || b.newestSeq - a.newestSeq;
}

function toSummary(c: ChatEntry): ChatSummary {
  return {
    accountId: c.accountId,
    chatJid: c.chatJid,
    count: c.count,
    lastBody: c.lastBody,
    ...(c.lastMessageId !== undefined ? { lastMessageId: c.lastMessageId } : {}),
  };
}
