import type { Counter, EpochMs } from "./common.js";

/** A visible notification the NSE hands to the OS. */
export interface AlertNotification {
  kind: "alert";
  /** @maxLength 1000 */
  title: string;
  /** @maxLength 4000 */
  body: string;
  /** Groups notifications of one chat (iOS threadIdentifier). */
  threadId: string;
  /** Account the message belongs to. */
  accountId: string;
  /** Stanza/origin id of the message, to dedupe and to open the chat. */
  messageId?: string;
  /**
   * Summary line when the notification stands for more than one message, e.g. "+3 more · 12 in
   * 2 other chats" (iOS: subtitle). An NSE can only modify its push's one notification, so the
   * further messages of a push are summarized here, not shown one by one.
   * @maxLength 1000
   */
  subtitle?: string;
  /**
   * How many new messages this notification stands for (iOS: summaryArgumentCount), when it
   * is a push's notification.
   */
  count?: Counter;
  /** Deliver no earlier than this (used for "could not synchronize" warnings). */
  deliverAt?: EpochMs;
  /**
   * The message shown is a group chat message that mentions the user's nick in the room:
   * highlight it (the body reads "nick: text", the title is the room).
   */
  mention?: boolean;
}

/** Nothing to show: the push was handled but produced no visible message. */
export interface SilentNotification {
  kind: "silent";
  /** Why nothing is shown (e.g. "no-new-messages", "main-app-running"). */
  reason: string;
}

/** What the NSE hands to the OS for one push. */
export type NotificationContent = AlertNotification | SilentNotification;
