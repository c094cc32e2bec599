// Inbound stanzas whose handling keeps failing. A failed stanza is rolled back and not counted
// (the server replays it after a resume); one that failed MAX_STANZA_FAILURES times, or that
// cannot even be serialized, is a poison stanza: quarantined and counted, so the session moves on.
import { createHash } from "node:crypto";
import { loadAccountState, quarantineRow, saveAccountState, type StoreTx } from "@lichen/store";
import xml, { type Element } from "@xmpp/xml";
import type { Outbox } from "./outbound.js";
import { serviceUnavailable } from "./protocol.js";
import { assertContinuity } from "./stream-management.js";

/** A stanza whose handler failed this often (each time replayed after resume) is quarantined. */
export const MAX_STANZA_FAILURES = 3;

/**
 * Identity of an inbound stanza for counting its failures, independent of attribute order:
 * Prosody may serialize a replayed stanza with its attributes in another order.
 */
export function stanzaKey(el: Element, raw: string): string {
  const hash = createHash("sha1");
  const walk = (e: Element): void => {
    hash.update(`<${e.name}`);
    for (const k of Object.keys(e.attrs).sort()) hash.update(` ${k}=${JSON.stringify(e.attrs[k])}`);
    hash.update(">");
    for (const c of e.children) {
      if (typeof c === "string") hash.update(JSON.stringify(c));
      else walk(c);
    }
    hash.update("</>");
  };
  try {
    walk(el);
    return hash.digest("hex");
  } catch {
    return createHash("sha1").update(raw).digest("hex"); // too deep to walk
  }
}

/** The outer levels of a stanza, for the quarantine of one nested too deep to serialize. */
export function truncatedXml(el: Element, depth: number): string {
  const copy = (e: Element, d: number): Element =>
    xml(
      e.name,
      { ...e.attrs },
      ...(d > 0 ? e.children.map((c) => (typeof c === "string" ? c : copy(c, d - 1))) : ["…"]),
    );
  return copy(el, depth).toString();
}

/** What StanzaFailures.inspect() found out about a stanza before its transaction. */
export interface InspectedStanza {
  /** Its serialization (the outer levels, when it cannot be serialized). */
  raw: string;
  unserializable: boolean;
  /** Its identity, computed only once something failed (the common case skips the hash). */
  key: string | null;
  /** Quarantine and count it instead of handling it. */
  poison: boolean;
}

/** Failure counts of inbound stanzas, for this process's lifetime (replays come to the same one). */
export class StanzaFailures {
  private readonly counts = new Map<string, number>();

  inspect(stanza: Element): InspectedStanza {
    let raw: string;
    let unserializable = false;
    try {
      raw = stanza.toString();
    } catch {
      // Nested too deep for the (recursive) serializer: thrown here, it would go uncounted and
      // shift h. It can only be counted and quarantined.
      raw = truncatedXml(stanza, 32);
      unserializable = true;
    }
    const key = unserializable || this.counts.size > 0 ? stanzaKey(stanza, raw) : null;
    const poison =
      unserializable || (key !== null && (this.counts.get(key) ?? 0) >= MAX_STANZA_FAILURES);
    return { raw, unserializable, key, poison };
  }

  /** Its transaction rolled back: one more failure. */
  record(stanza: Element, inspected: InspectedStanza): void {
    const key = inspected.key ?? stanzaKey(stanza, inspected.raw);
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** Quarantined and counted: no longer tracked. */
  forget(inspected: InspectedStanza): void {
    if (inspected.key !== null) this.counts.delete(inspected.key);
  }
}

/** Keep a poison stanza (table quarantine) in the transaction that counts it. */
export function quarantinePoisonStanza(tx: StoreTx, inspected: InspectedStanza): void {
  quarantineRow(
    tx,
    "inbound_stanza",
    inspected.key!,
    inspected.raw,
    inspected.unserializable
      ? "stanza nested too deep to serialize"
      : `handler failed ${MAX_STANZA_FAILURES} times`,
  );
}

/**
 * The transaction of a poison stanza: keep it (quarantine) and count it, so the session can move
 * on. Returns the new inbound h.
 */
export function commitPoisonStanza(
  tx: StoreTx,
  o: {
    accountId: string;
    committedH: number;
    outbox: Outbox;
    stanza: Element;
    inspected: InspectedStanza;
  },
): number {
  const state = loadAccountState(tx, o.accountId);
  assertContinuity(state, o.committedH);
  quarantinePoisonStanza(tx, o.inspected);
  // The requester of an IQ still gets an answer instead of waiting forever.
  const { stanza } = o;
  if (stanza.is("iq") && (stanza.attrs.type === "get" || stanza.attrs.type === "set"))
    o.outbox.enqueue(tx, state, serviceUnavailable(stanza));
  state.sm.inboundH += 1;
  saveAccountState(tx, o.accountId, state);
  return state.sm.inboundH;
}
