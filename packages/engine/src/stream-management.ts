// XEP-0198 acks and counters: requesting acks (<r/>), answering with the committed h (<a/>),
// what an ack or a resumption commits, the state of a new stream, and the continuity of h.
// Negotiation (resume/enable) is in sm-negotiation.ts.
import { randomUUID } from "node:crypto";
import type { AccountState } from "@lichen/schema";
import type { StoreTx } from "@lichen/store";
import xml, { type Element } from "@xmpp/xml";
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

/**
 * The stored inbound counter is not the one this session committed last: something else changed
 * it, so which stanzas the server may drop can no longer be proven. Thrown inside the stanza's
 * transaction (nothing is counted); the session then opens a MAM gap and starts a new stream.
 */
export class ContinuityError extends Error {
  constructor(
    readonly stored: number,
    readonly expected: number,
  ) {
    super(`stored inbound h ${stored} is not the ${expected} this session committed`);
  }
}

/**
 * Defence in depth for h (the fence already keeps other processes out): the stored counter must
 * be the one this session committed last. If it is not, something else counted stanzas on this
 * stream, and resuming with either number could make the server drop stanzas we never stored.
 */
export function assertContinuity(state: AccountState, committedH: number): void {
  if (state.sm.inboundH !== committedH) throw new ContinuityError(state.sm.inboundH, committedH);
}

/**
 * <resumed h/> (XEP-0198 §5): what the server got of ours is acked; corrupt queue rows are
 * repaired before the rest is resent. Returns the origin-ids of the messages now sent.
 */
export function commitResumed(
  tx: StoreTx,
  st: AccountState,
  outbox: Outbox,
  h: number,
  log: (event: Record<string, unknown>) => void,
): string[] {
  if (h > st.sm.outboundSent) {
    // The server claims more of ours than we ever numbered: our counters are not to be
    // trusted; keep the stream, but let MAM check what we may have missed.
    log({ event: "resume-counter-mismatch", serverH: h, sent: st.sm.outboundSent });
    st.mam.gapOpen = true;
  }
  const sent = applyAck(tx, st, outbox, h);
  outbox.repair(tx);
  return sent;
}

/** The stream-management state of a stream the server just enabled (<enabled/>, §3). */
export function newStreamState(
  enabled: Element,
  boundJid: string,
  now: number,
): AccountState["sm"] {
  return {
    streamId:
      enabled.attrs.resume === "true" || enabled.attrs.resume === "1"
        ? (enabled.attrs.id ?? null)
        : null,
    location: enabled.attrs.location ?? null,
    boundJid,
    maxResumeSeconds: enabled.attrs.max ? Number(enabled.attrs.max) : null,
    inboundH: 0,
    outboundSent: 0,
    outboundAcked: 0,
    unackedQueue: randomUUID(),
    enabledAt: now,
  };
}
