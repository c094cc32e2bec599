import type { Counter, EpochMs } from "./common.js";

/** A file the share extension copied into the shared container (never the bytes themselves). */
export interface FileReference {
  /**
   * Path relative to the shared container's attachment directory.
   * @minLength 1
   * @maxLength 4096
   */
  path: string;
  /** @minLength 1 */
  mimeType: string;
  /** Size in bytes. */
  size: Counter;
  /** Original file name shown to the user. */
  fileName: string;
}

export interface TextShare {
  kind: "text";
  /** @maxLength 100000 */
  text: string;
}
export interface UrlShare {
  kind: "url";
  /** @format uri */
  url: string;
  title?: string;
}
export interface GeoShare {
  kind: "geo";
  /**
   * @minimum -90
   * @maximum 90
   */
  latitude: number;
  /**
   * @minimum -180
   * @maximum 180
   */
  longitude: number;
  /** @minimum 0 */
  accuracyMeters?: number;
}
export interface ImageShare {
  kind: "image";
  file: FileReference;
  caption?: string;
}
export interface FileShare {
  kind: "file";
  file: FileReference;
}
export interface AudiovisualShare {
  kind: "audiovisual";
  file: FileReference;
  /** Duration in milliseconds. */
  durationMs?: Counter;
}
export interface ContactShare {
  kind: "contact";
  displayName: string;
  /** XMPP address of the contact, if known. */
  jid?: string;
  /** vCard text, if the OS provided one. */
  vcard?: string;
}

/** What the user shared. */
export type ShareContent =
  TextShare | UrlShare | GeoShare | ImageShare | FileShare | AudiovisualShare | ContactShare;

/** One row of the share outbox: written by the share extension, sent by the main app. */
export interface ShareOutboxItem {
  /**
   * Format version.
   * @TJS-type integer
   * @minimum 1
   * @maximum 1
   */
  v: 1;
  /** @minLength 1 */
  id: string;
  /** Account that sends it. */
  accountId: string;
  /** Bare JID of the chat (contact or room) it goes to. */
  to: string;
  createdAt: EpochMs;
  content: ShareContent;
}
