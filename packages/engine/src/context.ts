// What a protocol module (roster, MUC, caps, push, setup, MAM) sees of the stanza transaction it
// runs in. Protocol modules import this, never the session: the session composes them, so a type
// imported back from it would make every module depend on every other (an import cycle).
import type { AccountState, HandlerDescriptor } from "@lichen/schema";
import type { Element } from "@xmpp/xml";
import type { DiscoInfo } from "./disco-info.js";
import type { SessionEvents } from "./events.js";
import type { HandlerContext, HandlerRegistry } from "./handlers.js";

/** The part of the session that protocol handlers use: its handlers, its events, its settings. */
export interface SessionHandle {
  readonly accountId: string;
  readonly registry: HandlerRegistry;
  /** How receipt requests are answered (SessionOptions.receipts). */
  readonly receipts: "send" | "defer";
  /** Our disco#info and XEP-0115 caps: the engine's features and those of the plugins. */
  readonly ownInfo: DiscoInfo;
  emit<K extends keyof SessionEvents>(event: K, ...args: SessionEvents[K]): boolean;
  /** Runs a stored handler; an unknown name is reported, not thrown. */
  callSafely(
    ctx: ProtocolContext,
    descriptor: HandlerDescriptor,
    args: Record<string, unknown>,
  ): void;
}

/** Everything a stanza handler may touch: the transaction, the account state, outbound queue. */
export interface ProtocolContext extends HandlerContext {
  state: AccountState;
  /** Runs after the transaction committed (events for the UI); dropped on rollback. */
  afterCommit(fn: () => void): void;
  session: SessionHandle;
  /** Send an IQ whose answer runs `handler` in whichever process receives it. */
  sendIq(iq: Element, handler: HandlerDescriptor, opts?: { timeoutTicks?: number }): string;
}
