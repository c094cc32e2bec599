// One inbound stanza, one transaction (DESIGN.md "the receive path"): its handlers and the
// inbound h commit together; a throw rolls both back, and the server replays the stanza after a
// resume. Poison stanzas take the other path (inbound-failures.ts).
import type { AccountState } from "@lichen/schema";
import { loadAccountState, saveAccountState, type StoreTx } from "@lichen/store";
import type { Element } from "@xmpp/xml";
import type { ProtocolContext } from "./context.js";
import type { PluginPrepared } from "./plugins.js";
import { dispatchStanza } from "./protocol.js";
import { assertContinuity } from "./stream-management.js";

/** What SessionOptions.prepare returns: data read before the transaction, re-checked in it. */
export interface PreparedStanza {
  data: unknown;
  stillValid?: (tx: StoreTx) => boolean;
}

/** What prepare read changed before the transaction (another process wrote): prepare again. */
export class PreparedStale extends Error {}

/**
 * The stanza's transaction: built-in handling, then the app's `onStanza`, then h += 1. Returns
 * the new inbound h. Throws PreparedStale (rolled back) when the prepared data is stale and a
 * retry is allowed; out of retries, the stanza is handled without it rather than loop forever.
 */
export function commitStanza<C extends ProtocolContext>(
  tx: StoreTx,
  o: {
    accountId: string;
    committedH: number;
    context: (tx: StoreTx, state: AccountState) => C;
    stanza: Element;
    prepared: PreparedStanza | undefined;
    mayRetry: boolean;
    /** The plugins' prepare results for this stanza (plugins.ts). */
    plugins?: PluginPrepared<C>[];
    onStanza?: (ctx: C, stanza: Element, prepared: unknown) => void;
  },
): number {
  const state = loadAccountState(tx, o.accountId);
  assertContinuity(state, o.committedH);
  const ctx = o.context(tx, state);
  let prepared = o.prepared;
  if (prepared?.stillValid && !prepared.stillValid(tx)) {
    if (o.mayRetry) throw new PreparedStale();
    prepared = undefined;
  }
  // A plugin's work is only valid against the rows it read: no fallback without it.
  const plugins = o.plugins ?? [];
  if (plugins.some((p) => p.stillValid && !p.stillValid(tx)))
    throw o.mayRetry ? new PreparedStale() : new Error("plugin state changed at every attempt");
  const handled = plugins.reduce<Element>((el, p) => p.stanza ?? el, o.stanza);
  dispatchStanza(ctx, handled);
  for (const p of plugins) p.apply?.(ctx);
  o.onStanza?.(ctx, handled, prepared?.data);
  state.sm.inboundH += 1;
  saveAccountState(tx, o.accountId, state);
  return state.sm.inboundH;
}
