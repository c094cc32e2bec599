// xmpp.js 0.14 ships no type declarations; these cover what the engine uses internally.
// @xmpp/xml, which appears in the public API, is declared in ../types/xmpp-xml.d.ts (published).
declare module "@xmpp/client-core";
declare module "@xmpp/tcp";
declare module "@xmpp/tls/lib/Connection.js";
declare module "@xmpp/middleware";
declare module "@xmpp/stream-features";
declare module "@xmpp/iq/caller.js";
declare module "@xmpp/sasl";
declare module "@xmpp/sasl-plain";
declare module "@xmpp/resource-binding";
declare module "@xmpp/events";
declare module "@xmpp/jid";
declare module "saslmechanisms";
declare module "@xmpp/xml/lib/parse.js" {
  import type { Element } from "@xmpp/xml";
  export default function parse(s: string): Element;
}
declare module "@xmpp/starttls/starttls.js" {
  export function canUpgrade(socket: unknown): boolean;
  export function upgrade(socket: unknown, options: Record<string, unknown>): Promise<unknown>;
}
declare module "@xmpp/tls/lib/Socket.js" {
  const Socket: new () => unknown;
  export default Socket;
}
