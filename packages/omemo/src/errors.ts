/** Why an OMEMO message could not be decrypted (stored with the message, never thrown at the engine). */
export type DecryptFailureReason =
  | "no-identity"
  | "not-for-this-device"
  | "bad-element"
  | "unknown-device"
  | "distrusted-device"
  | "signal"
  | "payload"
  /** A groupchat message from an occupant whose real JID we do not know (left, or anonymous room). */
  | "unknown-occupant"
  /** An unexpected error while decrypting (a bug, or input nobody foresaw). */
  | "internal";

/** Bad OMEMO input from the network (bundle, device list, message) or a refused operation. */
export class OmemoError extends Error {
  override readonly name = "OmemoError";
  constructor(
    readonly code:
      | "no-identity"
      | "no-devices"
      | "bad-device-list"
      | "bad-bundle"
      | "iq-error"
      | "iq-timeout"
      | "state-conflict"
      /** sendToRoom to a room we are not in. */
      | "not-in-room"
      /** sendToRoom to a room that hides real JIDs (semi-anonymous): nobody's devices can be known. */
      | "room-anonymous"
      /** sendPrivate to room/nick whose real JID the room does not show us (or who left). */
      | "unknown-occupant",
    message: string,
  ) {
    super(message);
  }
}
