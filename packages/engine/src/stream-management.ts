// XEP-0198 acks and counters: requesting acks (<r/>), answering with the committed h (<a/>), and
// what an ack from the server commits. Negotiation (resume/enable) is in sm-negotiation.ts.
import type { AccountState } from "@lichen/schema";
import type { StoreTx } from "@lichen/store";
import xml from "@xmpp/xml";
import type { XmppConnection } from "./connection.js";
import { markOutgoingSent } from "./messages.js";
import type { Outbox } from "./outbound.js";

export const NS_SM = "urn:xmpp:sm:3";

/**
 * The acks this process writes and requests on its connections. Ask the server to acknowledge
 * what we sent with at most one <r/> outstanding per connection: a burst of flushes (a receipt
 * for each replayed message, on a slow link) costs one request and one <a/> per round trip
 * instead of one per stanza. When the <a/> comes back and more was sent since, the next request
 * goes out then.
 */
export class AckRequests {
  private outstanding: XmppConnection | null = null;
  private again = false;
  /** The last <a/> we wrote: the one before a drop is skipped when it would say the same. */
  private lastSent: { conn: XmppConnection; h: number } | null = null;

  /** `mayWrite(conn)`: the connection is still ours and stream management is active on it. */
  constructor(private readonly mayWrite: (conn: XmppConnection) => boolean) {}

  request(conn: XmppConnection): void {
    if (this.outstanding === conn) {
      this.again = true;
      return;
    }
    this.outstanding = conn;
    this.again = false;
    // After the current tick: flushes of stanzas handled in the same turn share the request.
    setImmediate(() => {
      if (!this.mayWrite(conn)) return;
      conn.entity.write(`<r xmlns='${NS_SM}'/>`).catch(() => {});
    });
  }

  /** The server's <a h/> answered our request; `flushedSeq`: the highest seq written since. */
  answered(conn: XmppConnection, h: number, flushedSeq: number): void {
    if (this.outstanding !== conn) return;
    this.outstanding = null;
    if (this.again && flushedSeq > h) this.request(conn);
  }

  /** Write `<a h/>` with the committed h on `conn`, and remember it (see alreadySent). */
  write(conn: XmppConnection, committedH: number): Promise<void> {
    this.lastSent = { conn, h: committedH };
    return conn.entity
      .write(xml("a", { xmlns: NS_SM, h: String(committedH) }).toString())
      .catch(() => {});
  }

  /** Whether the last <a/> on `conn` already said `h`. */
  alreadySent(conn: XmppConnection, h: number): boolean {
    return this.lastSent?.conn === conn && this.lastSent.h === h;
  }
}

/**
 * The server has everything up to `h`: those messages are sent, their queue rows go. Returns
 * the origin-ids of the chat messages this ack marked sent.
 */
export function applyAck(tx: StoreTx, state: AccountState, outbox: Outbox, h: number): string[] {
  const sent = markOutgoingSent(tx, outbox.accountId, outbox.ackedMessageIds(tx, h));
  outbox.queue.removeThrough(tx, h);
  state.sm.outboundAcked = Math.max(state.sm.outboundAcked, h);
  return sent;
}
