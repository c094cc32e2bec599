// Before a deliberate drop of the connection (suspend, NSE yield, replay reconnect): wait, within
// a bound, until the server has acknowledged what we wrote and answered what it owes us, so
// nothing crosses the line twice on the next resume.
import type { EventEmitter } from "node:events";
import { listIqHandlers, loadAccountState, type Store } from "@lichen/store";
import type { XmppConnection } from "./connection.js";
import type { SessionEvents } from "./events.js";
import { bare } from "./jid.js";

/** What the waits need of the session. */
export interface DrainHost {
  readonly store: Store;
  readonly accountId: string;
  /** The session's events ("acked", "stanza", "offline"...). */
  readonly events: EventEmitter<SessionEvents>;
  /** Stream management is active on `conn`, and it is the session's connection. */
  onStream(conn: XmppConnection): boolean;
  /** A stanza failed: nothing more is handled on this connection. */
  halted(): boolean;
  /** Highest outbound seq written to the connection. */
  flushedSeq(): number;
  /** Ask for an <a/> (at most one <r/> outstanding: AckRequests). */
  requestAck(conn: XmppConnection): void;
  /** Resolves when every stanza received so far has been handled. */
  idle(): Promise<void>;
  /** Handle nothing more on this connection (not counted: the server replays it on resume). */
  halt(): void;
  log(event: Record<string, unknown>): void;
}

/**
 * Wait (bounded) until the server acknowledged every stanza written on this socket. A server
 * still reading its backlog from a dropped socket after we resumed elsewhere delivers that
 * backlog while we resend it from its older h (seen with ejabberd: duplicate stanzas).
 *
 * Stanzas keep arriving while we wait, and handling them may write more (answers to a peer's
 * IQs): those were written after the first target, so the wait repeats until nothing new was
 * written. Then handling stops (`halt`: what arrives later is not counted, and the server
 * replays it on resume) and what was in flight is waited for once more. Before this, answers
 * written during the wait went out unacknowledged without a `drain-timeout`: ejabberd, still
 * reading them from the old socket, routed them after handing its (older) h to our resume, and
 * the peer got them twice (engine hostile.test on ejabberd, seed 2043423025, loaded CI).
 */
export async function drainBeforeDrop(
  host: DrainHost,
  conn: XmppConnection,
  timeoutMs: number,
  /** Aborted: stop waiting now (a second drop of the same connection with a shorter bound). */
  cut?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let gaveUp = false; // timed out or cut (logged once), or the connection went
  // Until a round writes nothing new (waitAcked's target is what was written when it began).
  for (let waitedFor = -1; waitedFor !== host.flushedSeq();) {
    waitedFor = host.flushedSeq();
    if (!(await waitAcked(host, conn, deadline, cut))) {
      gaveUp = true;
      break;
    }
    await waitServerAnswers(host, conn, deadline, cut);
    await host.idle();
  }
  host.halt();
  await host.idle(); // what was handled before the halt is committed before we acknowledge it
  if (!gaveUp) await waitAcked(host, conn, deadline, cut);
}

/**
 * Wait (bounded) for the answers to our IQs that the server answers itself (to our server, our
 * bare JID or no `to`: disco#info, roster, carbons). An `<a/>` does not imply them: ejabberd
 * acknowledges the IQs and routes the answers after it, so after a login's <a/> 6 KB of answers
 * were still on their way, dropped with the socket and replayed on the NSE's next resume.
 * IQs to other entities are not waited for: a peer may take its time or never answer.
 */
async function waitServerAnswers(
  host: DrainHost,
  conn: XmppConnection,
  deadline: number,
  cut?: AbortSignal,
): Promise<void> {
  const own = (): Set<string> => {
    const jid = host.store.read((tx) => loadAccountState(tx, host.accountId)).sm.boundJid;
    const b = jid ? bare(jid) : null;
    return new Set(b ? [b, b.slice(b.indexOf("@") + 1)] : []);
  };
  const serverPeers = own();
  const pending = () =>
    host.store
      .read((tx) => listIqHandlers(tx, host.accountId))
      .some((h) => h.peer === null || serverPeers.has(h.peer));
  // A halted session (a stanza failed; a replay reconnect follows) handles nothing more on
  // this connection: the answers could not be committed, so waiting would only delay the drop.
  while (host.onStream(conn) && !host.halted() && pending()) {
    const left = deadline - Date.now();
    if (left <= 0 || cut?.aborted) {
      host.log({ event: "drain-answers-timeout" });
      return;
    }
    // Re-checked after each handled stanza (or the connection's end).
    await new Promise<void>((resolve) => {
      const events = ["stanza", "stanza-failed", "stanza-quarantined", "offline"] as const;
      const done = () => {
        clearTimeout(timer);
        for (const e of events) host.events.off(e, done);
        cut?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, left);
      for (const e of events) host.events.on(e, done);
      cut?.addEventListener("abort", done);
    });
    await host.idle();
  }
}

/** True once everything written is acknowledged; false when it gave up (logged) or `conn` went. */
async function waitAcked(
  host: DrainHost,
  conn: XmppConnection,
  deadline: number,
  cut?: AbortSignal,
): Promise<boolean> {
  if (!host.onStream(conn)) return false;
  const target = host.flushedSeq();
  const acked = host.store.read((tx) => loadAccountState(tx, host.accountId)).sm.outboundAcked;
  if (target === 0 || acked >= target) return true;
  const timeoutMs = deadline - Date.now();
  // What the server has not acknowledged is resent after the resume; if the server still reads
  // it from the old socket too, the peer gets it twice (XEP-0198 is at-least-once there;
  // messages carry origin-ids for that). A second drop with a shorter bound (the app suspending
  // while a replay reconnect drains) ran out first: the same case, so reported as one.
  if (cut?.aborted) {
    host.log({ event: "drain-timeout", flushed: target, cut: true });
    return false;
  }
  if (timeoutMs <= 0) {
    host.log({ event: "drain-timeout", flushed: target, timeoutMs: 0 });
    return false;
  }
  return new Promise<boolean>((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      host.events.off("acked", onAcked);
      host.events.off("offline", onOffline);
      cut?.removeEventListener("abort", onCut);
      resolve(ok);
    };
    const onCut = () => {
      host.log({ event: "drain-timeout", flushed: target, cut: true });
      done(false);
    };
    const onOffline = () => done(false);
    const onAcked = (h: number) => {
      if (h >= target) done(true);
    };
    const timer = setTimeout(() => {
      host.log({ event: "drain-timeout", flushed: target, timeoutMs });
      done(false);
    }, timeoutMs);
    host.events.on("acked", onAcked);
    host.events.once("offline", onOffline);
    cut?.addEventListener("abort", onCut);
    // Through acks.request: an outstanding request is answered with the h we wait for, or is
    // followed by a fresh one (a second <r/> here cost a duplicate <r/> and <a/> per drop).
    host.requestAck(conn);
  });
}
