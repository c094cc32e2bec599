/** Why an OMEMO message could not be decrypted (stored with the message, never thrown at the engine). */
export type DecryptFailureReason =
  | "no-identity"
  | "not-for-this-device"
  | "bad-element"
  | "unknown-device"
  | "distrusted-device"
  | "signal"
  | "payload"
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
      | "state-conflict",
    message: string,
  ) {
    super(message);
  }
}
