import type { EpochMs } from "./common.js";

/**
 * A XEP-0357 registration made directly on the user's own XMPP server. The device token is the
 * pubsub node, so the appserver never learns the user's JID.
 */
export interface PushRegistration {
  /**
   * JID of the push appserver component, e.g. "push.example.org".
   * @minLength 1
   * @maxLength 1023
   */
  appServerJid: string;
  /**
   * The device token (APNs hex token or FCM registration token), used as the pubsub node.
   * @minLength 8
   * @maxLength 4096
   */
  node: string;
  /**
   * Selects the app (APNs topic / FCM project) at the appserver; sent as the `pushModule`
   * publish-option, compatible with Monal's appserver. Absent: the appserver's default app.
   * @maxLength 200
   */
  pushModule?: string;
  /** Whether the server acknowledged the <enable/> (and no <disable/> since). */
  enabled: boolean;
  /** When the current token was registered on the server (or asked to be, while enabling). */
  registeredAt: EpochMs;
  /**
   * Where the registration stands: `enabling` / `disabling` while the IQ waits for the server's
   * answer (queued while offline), `enabled`, `disabled` (after a disable, or an enable the server
   * refused: see `lastError`). Absent in states written before it existed: `enabled` tells.
   */
  status?: PushRegistrationStatus;
  /** The last error answer (or timeout) to an enable or disable IQ; null or absent: none. */
  lastError?: PushRegistrationError | null;
  /** When `status` last changed. */
  updatedAt?: EpochMs;
}

export type PushRegistrationStatus = "enabling" | "enabled" | "disabling" | "disabled";

/** Why the server refused (or never answered) an enable/disable IQ. */
export interface PushRegistrationError {
  /** Which IQ failed. */
  op: "enable" | "disable";
  /**
   * RFC 6120 stanza error condition, e.g. "not-allowed"; "remote-server-timeout" when no answer came
   * in time; "session-not-resumed" when the stream it was sent on was lost before the answer.
   * @maxLength 200
   */
  condition: string;
  /**
   * The error's human-readable text, when the server gave one.
   * @maxLength 1000
   */
  text?: string;
  /** When it was recorded. */
  at: EpochMs;
}
