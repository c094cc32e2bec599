/**
 * The XEP-0198 outbound queue of one account (table outbound_queue): every stanza the engine sends
 * is a row, numbered by its stream-management sequence number, appended in the transaction that
 * produced it and written to the socket after COMMIT; the server's `<a h/>` removes what it has.
 * The same statements as the SQL contract's outbound* entries (the Swift NSE runs those).
 */
import { and, asc, eq, gt, lte, sql } from "drizzle-orm";
import { outboundQueue } from "./schema.js";
import type { StoreTx } from "./store.js";
import { preparedPerStore } from "./prepared.js";
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

const p = (name: string) => sql.placeholder(name);

/**
 * The statements every stanza runs (append and the flush's read; an <a/>'s delete), prepared once
 * per store: building the drizzle query per stanza was ~a quarter of the engine's receive CPU in
 * the OMEMO bench's profile.
 */
function prepareHot(tx: StoreTx) {
  const mine = eq(outboundQueue.accountId, p("account"));
  return {
    append: tx
      .insert(outboundQueue)
      .values({
        accountId: p("account"),
        streamKey: p("streamKey"),
        seq: p("seq"),
        stanza: p("stanza"),
        important: p("important"),
        createdAt: p("now"),
      })
      .prepare(),
    lastSeq: tx
      .select({ max: sql<number | null>`max(${outboundQueue.seq})` })
      .from(outboundQueue)
      .where(mine)
      .prepare(),
    after: tx
      .select({ seq: outboundQueue.seq, stanza: outboundQueue.stanza })
      .from(outboundQueue)
      .where(and(mine, gt(outboundQueue.seq, p("seq"))))
      .orderBy(asc(outboundQueue.seq))
      .prepare(),
    importantThrough: tx
      .select({ stanza: outboundQueue.stanza })
      .from(outboundQueue)
      .where(and(mine, lte(outboundQueue.seq, p("h")), eq(outboundQueue.important, true)))
      .orderBy(asc(outboundQueue.seq))
      .prepare(),
    removeThrough: tx
      .delete(outboundQueue)
      .where(and(mine, lte(outboundQueue.seq, p("h"))))
      .prepare(),
  };
}

const hot = preparedPerStore(prepareHot);

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
    hot(tx).append.run({ account: this.accountId, ...row, now: tx.now });
  }

  /** Highest queued sequence number, 0 for an empty queue. */
  lastSeq(tx: StoreTx): number {
    return hot(tx).lastSeq.get({ account: this.accountId })?.max ?? 0;
  }

  /** Stanzas after `seq` (0: all), oldest first: what to write to a socket that has seen `seq`. */
  after(tx: StoreTx, seq: number): QueuedStanza[] {
    return hot(tx).after.all({ account: this.accountId, seq });
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
    return hot(tx)
      .importantThrough.all({ account: this.accountId, h })
      .map((r) => r.stanza);
  }

  /** The server has everything up to `h` (<a h/>, <resumed h/>): those rows go. */
  removeThrough(tx: StoreTx, h: number): void {
    requireWrite(tx, "OutboundQueue.removeThrough");
    hot(tx).removeThrough.run({ account: this.accountId, h });
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
