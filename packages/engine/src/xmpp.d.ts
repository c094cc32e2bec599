// xmpp.js 0.14 ships no type declarations; these cover what the engine uses.
declare module "@xmpp/xml" {
  export interface Element {
    name: string;
    attrs: Record<string, string>;
    children: (Element | string)[];
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildText(name: string, xmlns?: string): string | null;
    getText(): string;
    is(name: string, xmlns?: string): boolean;
    append(...children: unknown[]): Element;
    toString(): string;
    clone(): Element;
  }
  function xml(
    name: string,
    attrs?: Record<string, string | number | undefined> | null,
    ...children: unknown[]
  ): Element;
  export default xml;
  export { xml };
  export function parse(s: string): Element;
}
declare module "@xmpp/client-core";
declare module "@xmpp/tcp";
declare module "@xmpp/tls";
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
