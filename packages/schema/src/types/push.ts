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
  /** Whether the server acknowledged the <enable/>. */
  enabled: boolean;
  /** When the current token was registered on the server. */
  registeredAt: EpochMs;
}
