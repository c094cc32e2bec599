// XEP-0198 as a stream feature: resume the stored stream (§5), else bind and enable a new one
// (§3). Like xmpp.js's stream-feature.js, with the state in the database: what to resume is read
// from the store, and what the answer changes is committed by the session (SmNegotiationHost).
import { jid as parseJid } from "@xmpp/client-core";
import { procedure } from "@xmpp/events";
import xml, { type Element } from "@xmpp/xml";
import type { XmppConnection } from "./connection.js";
import { NS_SM } from "./stream-management.js";

/** What the negotiation needs of the session that opened the connection. */
export interface SmNegotiationHost {
  /** The server's XEP-0115 ver in its (post-authentication) stream features, or null. */
  serverCapsVer(ver: string | null): void;
  /** The stored stream, when there is one to resume. */
  storedStream(): { streamId: string; boundJid: string; inboundH: number } | null;
  /**
   * Called synchronously on the nonza, before the stanzas the server resends right after
   * <resumed/>: switch state now and queue the database work ahead of them.
   */
  resumed(h: number): void;
  /** The stored stream cannot be resumed (`h`: what the server says it got, when it says). */
  resumeFailed(h: number | null): void;
  /** A new stream is enabled (synchronously on <enabled/>, like resumed()). */
  enabled(enabled: Element, boundJid: string): void;
  /** Resolves once queued work (the resumeFailed step) is done. */
  idle(): Promise<void>;
  log(event: Record<string, unknown>): void;
}

export function useStreamManagement(c: XmppConnection, host: SmNegotiationHost): void {
  c.streamFeatures.use(
    "sm",
    NS_SM,
    async (ctx: { stanza?: Element }, next: () => Promise<void>) => {
      // XEP-0115 caps of the server in its (post-authentication) stream features: a new stream
      // with the same ver needs no new disco#info (see setupNewStream).
      host.serverCapsVer(
        ctx.stanza?.getChild("c", "http://jabber.org/protocol/caps")?.attrs.ver ?? null,
      );
      const stored = host.storedStream();
      if (stored) {
        try {
          const el: Element = await procedure(
            c.entity,
            xml("resume", {
              xmlns: NS_SM,
              h: String(stored.inboundH),
              previd: stored.streamId,
            }),
            (element: Element, done: (e: Element) => void) => {
              if (element.is("resumed", NS_SM)) {
                host.resumed(Number(element.attrs.h));
                done(element);
              } else if (element.is("failed", NS_SM)) {
                host.resumeFailed(element.attrs.h !== undefined ? Number(element.attrs.h) : null);
                done(element);
              }
            },
          );
          if (el.is("resumed", NS_SM)) {
            c.entity.jid = parseJid(stored.boundJid);
            c.entity._ready(true);
            return;
          }
          await host.idle();
        } catch (err) {
          host.log({
            event: "resume-error",
            error: err instanceof Error ? err.message : String(err),
          });
          host.resumeFailed(null);
          await host.idle();
        }
      }
      await next(); // resource binding
      await procedure(
        c.entity,
        xml("enable", { xmlns: NS_SM, resume: "true" }),
        (element: Element, done: (e: Element) => void) => {
          if (element.is("enabled", NS_SM)) {
            host.enabled(element, c.entity.jid.toString());
            done(element);
          } else if (element.is("failed", NS_SM))
            throw new Error("server refused stream management");
        },
      );
    },
  );
}
