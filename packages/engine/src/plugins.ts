// The engine's plugin seam: code with another licence or a heavy dependency (OMEMO, GPL-3.0) hooks
// into a session's receive path without the engine importing it.
import type { StoreTx } from "@lichen/store";
import type { Element } from "@xmpp/xml";
import type { ProtocolContext } from "./context.js";

/** What a plugin's prepare step hands to the stanza's transaction. */
export interface PluginPrepared<C extends ProtocolContext = ProtocolContext> {
  /**
   * Handled instead of the received stanza (e.g. the same message with its decrypted body). The
   * received stanza is still the one counted, quarantined or replayed.
   */
  stanza?: Element;
  /** Re-checked inside the stanza's transaction: false means what prepare read changed; it runs again. */
  stillValid?(tx: StoreTx): boolean;
  /** Writes inside the stanza's transaction, after the engine handled the stanza (e.g. ratchet state). */
  apply?(ctx: C): void;
}

/**
 * A plugin of a session of type S whose stanza transactions give handlers a context C. The engine
 * exports it as `SessionPlugin` (S = DurableSession); generic here so this module does not import
 * the session that imports it.
 */
export interface SessionPluginOf<S, C extends ProtocolContext> {
  readonly name: string;
  /** Service discovery features the plugin adds to ours (and so to our XEP-0115 caps). */
  readonly features?: readonly string[];
  /** Called once by the session's constructor (e.g. to listen for "online"). */
  attach?(session: S): void;
  /**
   * Async work for an inbound stanza before its transaction, with reads only (no writes: a kill
   * here must leave nothing behind). Null: nothing to do for this stanza. Must not throw for bad
   * input: a throw fails the stanza's transaction (replayed, quarantined after repeated failures).
   */
  prepare?(stanza: Element, session: S): Promise<PluginPrepared<C> | null>;
  /**
   * End-to-end encrypts a message to an encrypted chat (`chats.omemo`) that the engine sends on
   * the user's behalf (a share outbox item, the URL of an uploaded file), and stores and queues it
   * in one transaction with the plugin's own state changes (e.g. ratchets) and `commit`'s writes.
   * Resolves true when queued, false when `commit` declined (nothing written). Throws
   * `EncryptionFailedError` when it can never succeed (no device can read it: the item fails with
   * the reason); any other throw is transient (offline, a timeout) and the engine tries again later.
   */
  encryptOutgoing?(message: OutgoingEncryption<C>, session: S): Promise<boolean>;
}

/** A message the engine hands to a plugin to encrypt (see SessionPluginOf.encryptOutgoing). */
export interface OutgoingEncryption<C extends ProtocolContext = ProtocolContext> {
  /** The chat (a contact's or a room's bare JID). */
  to: string;
  /** The plaintext (stored as the outgoing message's body; never sent in the clear). */
  body: string;
  /** XEP-0359 origin-id and stored message key: the same item is never sent twice. */
  originId: string;
  /**
   * Runs first inside the transaction that stores and queues the encrypted message (e.g. marks
   * the outbox row sent). False: the item moved on meanwhile; the plugin then writes nothing.
   */
  commit(ctx: C): boolean;
}

// Object identity cannot come over the wire, so a sender cannot mark its plaintext "encrypted".
const decrypted = new WeakSet<Element>();

/** Marks a message element whose body a plugin decrypted: it is stored with `encrypted` set. */
export function markDecrypted(message: Element): Element {
  decrypted.add(message);
  return message;
}

export function wasDecrypted(message: Element): boolean {
  return decrypted.has(message);
}

/** Runs every plugin's prepare step in order; each sees the stanza the previous one produced. */
export async function preparePlugins<S, C extends ProtocolContext>(
  plugins: readonly SessionPluginOf<S, C>[],
  stanza: Element,
  session: S,
  log: (event: Record<string, unknown>) => void,
): Promise<PluginPrepared<C>[]> {
  const out: PluginPrepared<C>[] = [];
  let current = stanza;
  for (const plugin of plugins) {
    if (!plugin.prepare) continue;
    try {
      const prepared = await plugin.prepare(current, session);
      if (!prepared) continue;
      out.push(prepared);
      if (prepared.stanza) current = prepared.stanza;
    } catch (err) {
      log({
        event: "plugin-prepare-failed",
        plugin: plugin.name,
        error: err instanceof Error ? err.message : String(err),
      });
      // Handling the stanza without the plugin could store what it must not (an encrypted
      // message's fallback text): fail its transaction instead, so it is replayed, and kept in
      // quarantine if it keeps failing.
      out.push({
        apply: () => {
          throw err instanceof Error ? err : new Error(String(err));
        },
      });
      break;
    }
  }
  return out;
}
