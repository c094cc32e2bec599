// @xmpp/xml 0.14 ships no type declarations. This file is published with the engine and referenced
// from its index.d.ts, so a consumer type-checking with skipLibCheck: false sees a typed Element
// (not TS7016, not `any`). It declares only the parts Lichen uses.
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
