// What becomes of what we send: a message's outcome on the current connection (acked, or still
// queued for the next one), and the sync ping that tells when the server delivered its backlog.
import type { EventEmitter } from "node:events";
import { randomBytes } from "node:crypto";
import xml, { type Element } from "@xmpp/xml";
import type { SessionEvents } from "./events.js";
import { bare } from "./jid.js";

/** What send() returns: the message's id, and its fate on the current connection. */
export interface OutgoingMessage {
  /** XEP-0359 origin-id (also the stanza id and the stored row's key). */
  originId: string;
  /** Resolves when the server acknowledged the message; rejects with MessageQueuedError. */
  acked: Promise<void>;
}

/**
 * The message could not be acknowledged on the current connection (`offline`: there was none;
 * `connection-ended`: it ended first). It is stored and stays queued: the next connection sends
 * it (resumed streams resend it; new streams send the queue), so this is news, not a loss.
 */
export class MessageQueuedError extends Error {
  override readonly name = "MessageQueuedError";
  constructor(
    readonly originId: string,
    readonly reason: "offline" | "connection-ended",
  ) {
    super(
      reason === "offline"
        ? "offline: the message is queued and goes out on the next connection"
        : "the connection ended before the server acknowledged the message; it stays queued and goes out on the next connection",
    );
  }
}

/**
 * A plain message to a chat whose messages are end-to-end encrypted (`chats.omemo`, set through
 * the OMEMO plugin): refused, nothing stored or sent, so an encrypted chat never silently falls
 * back to plaintext. Send it through the plugin (or turn encryption off for the chat).
 */
export class EncryptionRequiredError extends Error {
  override readonly name = "EncryptionRequiredError";
  readonly code = "encryption-required";
  constructor(readonly chat: string) {
    super(`${chat} is an end-to-end encrypted chat: a plain message to it is refused`);
  }
}

/**
 * A message to an encrypted chat that its encryption plugin can never send (e.g. OMEMO
 * `no-devices`: the recipient has no device we could encrypt for). The share outbox item or
 * upload fails with `code: message`, kept for the user; nothing is sent in the clear.
 */
export class EncryptionFailedError extends Error {
  override readonly name = "EncryptionFailedError";
  constructor(
    /** The plugin's reason, e.g. "no-devices". */
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * What send() returns as `acked`, for every message in flight on a session: resolves when the
 * server acknowledged up to the message's sequence number on this connection; rejects with
 * MessageQueuedError when there is none (`seq` null: offline, or the message was already queued)
 * or it ends first. One set of listeners for all of them (three per message made every <a/> walk
 * them all, and Node warn of a listener leak past ten messages in flight). The rejection is
 * handled if nobody listens.
 */
export class AckWaiters {
  /** In sequence order (send() numbers them as it queues them). */
  private waiting: {
    seq: number;
    originId: string;
    resolve: () => void;
    reject: (e: Error) => void;
  }[] = [];
  private listening = false;

  constructor(private readonly events: EventEmitter<SessionEvents>) {}

  wait(originId: string, seq: number | null): Promise<void> {
    const acked = new Promise<void>((resolve, reject) => {
      if (seq === null) {
        reject(new MessageQueuedError(originId, "offline"));
        return;
      }
      this.listen();
      const w = { seq, originId, resolve, reject };
      const last = this.waiting.at(-1);
      if (!last || last.seq <= seq) this.waiting.push(w);
      else
        this.waiting.splice(
          this.waiting.findIndex((x) => x.seq > seq),
          0,
          w,
        );
    });
    acked.catch(() => {});
    return acked;
  }

  private listen(): void {
    if (this.listening) return;
    this.listening = true;
    this.events.on("acked", (h: number) => {
      let n = 0;
      while (n < this.waiting.length && this.waiting[n]!.seq <= h) n++;
      if (n === 0) return;
      const done = this.waiting.slice(0, n);
      this.waiting = this.waiting.slice(n);
      for (const w of done) w.resolve();
    });
    const gone = () => {
      const ended = this.waiting;
      this.waiting = [];
      for (const w of ended) w.reject(new MessageQueuedError(w.originId, "connection-ended"));
    };
    this.events.on("offline", gone);
    this.events.on("session-lost", gone);
  }
}

/**
 * The XEP-0199 ping behind DurableSession.syncBarrier(): queued with `send` (in its own
 * transaction), resolved by its answer from our server (`server` or our bare JID `own`), rejected
 * when the connection goes away first.
 */
export function syncPing(
  events: EventEmitter<SessionEvents>,
  send: (stanza: Element) => void,
  { server, own }: { server: string; own: string },
): Promise<void> {
  // Short: it crosses the link twice on every sync (the NSE's resume bytes); 72 random bits
  // cannot collide with another pending ping.
  const id = `sync-${randomBytes(9).toString("base64url")}`;
  return new Promise<void>((resolve, reject) => {
    const cleanup = () => {
      events.off("stanza", onStanza);
      events.off("offline", onGone);
      events.off("session-lost", onGone);
    };
    const onStanza = (el: Element) => {
      if (el.name !== "iq" || el.attrs.id !== id) return;
      if (el.attrs.type !== "result" && el.attrs.type !== "error") return;
      const from = el.attrs.from;
      if (from && from !== server && bare(from) !== own) return; // only our server answers it
      cleanup();
      resolve();
    };
    const onGone = () => {
      cleanup();
      reject(new Error("the connection went away before the server answered the sync ping"));
    };
    events.on("stanza", onStanza);
    events.once("offline", onGone);
    events.once("session-lost", onGone);
    try {
      send(xml("iq", { type: "get", id, to: server }, xml("ping", { xmlns: "urn:xmpp:ping" })));
    } catch (err) {
      cleanup();
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}
