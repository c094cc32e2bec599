import type { EpochMs } from "./common.js";

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
  /** Deliver no earlier than this (used for "could not synchronize" warnings). */
  deliverAt?: EpochMs;
}

/** Nothing to show: the push was handled but produced no visible message. */
export interface SilentNotification {
  kind: "silent";
  /** Why nothing is shown (e.g. "no-new-messages", "main-app-running"). */
  reason: string;
}

/** What the NSE hands to the OS for one push. */
export type NotificationContent = AlertNotification | SilentNotification;
