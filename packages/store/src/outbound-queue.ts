/**
 * The XEP-0198 outbound queue of one account (table outbound_queue): every stanza the engine sends
 * is a row, numbered by its stream-management sequence number, appended in the transaction that
 * produced it and written to the socket after COMMIT; the server's `<a h/>` removes what it has.
 * The same statements as the SQL contract's outbound* entries (the Swift NSE runs those).
 */
import { and, asc, eq, gt, lte, sql } from "drizzle-orm";
import { outboundQueue } from "./schema.js";
import type { StoreTx } from "./store.js";
import { TransactionUsageError } from "./errors.js";

/** One queued stanza, as stored (the serialization is the engine's). */
export interface QueuedStanza {
  /** Outbound SM sequence number (unique per account). */
  seq: number;
  /** The stanza's exact serialization. */
  stanza: string;
}

export interface QueuedStanzaRow extends QueuedStanza {
  /** Which stream it was counted on (AccountState.sm.unackedQueue). */
  streamKey: string;
  /** A message with a body (the user's words): reported when it stays unacknowledged. */
  important: boolean;
  createdAt: number;
}

function requireWrite(tx: StoreTx, what: string): void {
  if (tx.mode !== "write") throw new TransactionUsageError(`${what} needs a write transaction`);
}

export class OutboundQueue {
  constructor(readonly accountId: string) {}

  private mine() {
    return eq(outboundQueue.accountId, this.accountId);
  }

  /** Queue a stanza in the caller's write transaction (the socket sees it after COMMIT). */
  append(
    tx: StoreTx,
    row: { streamKey: string; seq: number; stanza: string; important: boolean },
  ): void {
    requireWrite(tx, "OutboundQueue.append");
    tx.insert(outboundQueue)
      .values({ accountId: this.accountId, ...row, createdAt: tx.now })
      .run();
  }

  /** Highest queued sequence number, 0 for an empty queue. */
  lastSeq(tx: StoreTx): number {
    const row = tx
      .select({ max: sql<number | null>`max(${outboundQueue.seq})` })
      .from(outboundQueue)
      .where(this.mine())
      .get();
    return row?.max ?? 0;
  }

  /** Stanzas after `seq` (0: all), oldest first: what to write to a socket that has seen `seq`. */
  after(tx: StoreTx, seq: number): QueuedStanza[] {
    return tx
      .select({ seq: outboundQueue.seq, stanza: outboundQueue.stanza })
      .from(outboundQueue)
      .where(and(this.mine(), gt(outboundQueue.seq, seq)))
      .orderBy(asc(outboundQueue.seq))
      .all();
  }

  /** Every queued row, oldest first (for renumbering onto a new stream, or repair). */
  rows(tx: StoreTx): QueuedStanzaRow[] {
    return tx
      .select({
        seq: outboundQueue.seq,
        stanza: outboundQueue.stanza,
        streamKey: outboundQueue.streamKey,
        important: outboundQueue.important,
        createdAt: outboundQueue.createdAt,
      })
      .from(outboundQueue)
      .where(this.mine())
      .orderBy(asc(outboundQueue.seq))
      .all();
  }

  /** The important stanzas (messages with a body) up to and including `h`, oldest first. */
  importantThrough(tx: StoreTx, h: number): string[] {
    return tx
      .select({ stanza: outboundQueue.stanza })
      .from(outboundQueue)
      .where(and(this.mine(), lte(outboundQueue.seq, h), eq(outboundQueue.important, true)))
      .orderBy(asc(outboundQueue.seq))
      .all()
      .map((r) => r.stanza);
  }

  /** The server has everything up to `h` (<a h/>, <resumed h/>): those rows go. */
  removeThrough(tx: StoreTx, h: number): void {
    requireWrite(tx, "OutboundQueue.removeThrough");
    tx.delete(outboundQueue)
      .where(and(this.mine(), lte(outboundQueue.seq, h)))
      .run();
  }

  /** Empty the queue (a new stream renumbers what it keeps: see append). */
  clear(tx: StoreTx): void {
    requireWrite(tx, "OutboundQueue.clear");
    tx.delete(outboundQueue).where(this.mine()).run();
  }

  /** Put another stanza in a row's place, keeping its sequence number (the server counts positions). */
  replace(tx: StoreTx, seq: number, stanza: string, important: boolean): void {
    requireWrite(tx, "OutboundQueue.replace");
    tx.update(outboundQueue)
      .set({ stanza, important })
      .where(and(this.mine(), eq(outboundQueue.seq, seq)))
      .run();
  }
}
