// The engine's side of the XEP-0198 outbound queue: numbering, what a new stream keeps, repair of
// corrupt rows. The rows and their SQL are @lichen/store's OutboundQueue; this module decides
// what goes in them (a stanza's sequence number and serialization).
import type { AccountState } from "@lichen/schema";
import { OutboundQueue, quarantineRow, type Store, type StoreTx } from "@lichen/store";
import xml, { type Element } from "@xmpp/xml";
import parse from "@xmpp/xml/lib/parse.js";

const CORRUPT_QUEUE_ROW =
  "queued stanza is not well-formed XML (resending it would end the stream)";

/**
 * A queue row is the exact serialization of a stanza we built, so anything that does not
 * round-trip is corrupt (the XML parser alone is lenient: it accepts truncated text).
 */
export function parseQueuedStanza(text: string): Element | null {
  try {
    const el = parse(text) as Element | null;
    return el && ["message", "presence", "iq"].includes(el.name) && el.toString() === text
      ? el
      : null;
  } catch {
    return null;
  }
}

export class Outbox {
  readonly queue: OutboundQueue;
  /** Set when a transaction queued a stanza; cleared by takeQueued(). A rollback only costs one read. */
  private queuedSinceFlush = false;

  constructor(readonly accountId: string) {
    this.queue = new OutboundQueue(accountId);
  }

  /** Append to the unacked queue in this transaction; the socket sees it after commit. */
  enqueue(tx: StoreTx, state: AccountState, stanza: Element): void {
    this.queuedSinceFlush = true;
    let seq = state.sm.outboundSent + 1;
    if (state.sm.streamId === null) {
      // No resumable stream, so numbering is free (a new stream renumbers the queue); but an
      // invalidated state restarts its counters below rows still queued: continue after them.
      seq = Math.max(seq, this.queue.lastSeq(tx) + 1);
    }
    state.sm.outboundSent = seq;
    this.queue.append(tx, {
      streamKey: state.sm.unackedQueue,
      seq,
      stanza: stanza.toString(),
      important: stanza.name === "message" && !!stanza.getChild("body"),
    });
  }

  /**
   * Whether a stanza was queued since the last call (or `force`), and clears the mark: most
   * stanzas queue nothing, so flush() skips its read unless this process queued something.
   */
  takeQueued(force: boolean): boolean {
    if (!force && !this.queuedSinceFlush) return false;
    this.queuedSinceFlush = false;
    return true;
  }

  /** Committed rows after `seq`, in order (what a socket that has seen `seq` still needs). */
  pending(store: Store, seq: number): { seq: number; stanza: string }[] {
    return store.read((tx) => this.queue.after(tx, seq));
  }

  /**
   * Unacked rows are resent verbatim: a corrupt one would make the server close the stream on
   * every resume. Quarantine it and keep its slot with a harmless ping to our server, because the
   * server counts stanzas by position.
   */
  repair(tx: StoreTx): void {
    for (const row of this.queue.rows(tx)) {
      if (parseQueuedStanza(row.stanza)) continue;
      this.quarantine(tx, row);
      const ping = xml(
        "iq",
        { type: "get", id: `lichen-quarantined-${row.seq}` },
        xml("ping", { xmlns: "urn:xmpp:ping" }),
      );
      this.queue.replace(tx, row.seq, ping.toString(), false);
    }
  }

  private quarantine(tx: StoreTx, row: { seq: number; stanza: string }): void {
    quarantineRow(
      tx,
      "outbound_queue",
      `${this.accountId}/${row.seq}`,
      row.stanza,
      CORRUPT_QUEUE_ROW,
    );
  }

  /**
   * Ids of the chat messages among the rows up to `h` (the server acknowledged them). Read from
   * the parsed stanza: only messages with a body are marked important when queued.
   */
  ackedMessageIds(tx: StoreTx, h: number): string[] {
    const ids: string[] = [];
    for (const text of this.queue.importantThrough(tx, h)) {
      let el: Element | null = null;
      try {
        el = parse(text) as Element | null;
      } catch {
        continue; // corrupt: quarantined on the next resume, never marked sent
      }
      if (el?.name === "message" && el.attrs.id) ids.push(el.attrs.id);
    }
    return ids;
  }

  /**
   * A new stream: take every queued row out. Stanzas never acked on the old stream are returned
   * to be renumbered onto the new one and resent (receivers dedupe by origin-id), so nothing the
   * user sent is lost; IQs of a dead stream are invalidated, not resent; corrupt rows go to
   * quarantine.
   */
  takeForNewStream(tx: StoreTx): Element[] {
    const rows = this.queue.rows(tx);
    this.queue.clear(tx);
    const resend: Element[] = [];
    for (const row of rows) {
      const stanza = parseQueuedStanza(row.stanza);
      if (!stanza) this.quarantine(tx, row);
      else if (stanza.name !== "iq") resend.push(stanza);
    }
    return resend;
  }
}
