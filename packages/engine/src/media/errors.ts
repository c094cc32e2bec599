/** Why an upload or a download cannot go on; `code` is for programs, the message for people. */
export type MediaErrorCode =
  | "missing-file"
  | "empty-file"
  | "no-upload-service"
  | "file-too-large"
  | "slot-refused"
  | "bad-slot"
  | "http-status"
  | "http-failed"
  | "bad-url"
  | "too-large"
  | "wrong-type"
  | "decrypt-failed"
  | "not-found"
  /** The chat became end-to-end encrypted meanwhile: the link is not sent in a plain message. */
  | "encryption-required"
  /** The chat is end-to-end encrypted and its plugin can never encrypt the link (e.g. no devices). */
  | "encryption-failed";

export class MediaError extends Error {
  override readonly name = "MediaError";
  constructor(
    readonly code: MediaErrorCode,
    message: string,
    /** The HTTP status, for `http-status`. */
    readonly status?: number,
  ) {
    super(message);
  }
}
