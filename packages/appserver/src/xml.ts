/** The parts of an ltx element (as produced by @xmpp/xml's parser) that the appserver reads. */
export interface XmlElement {
  name: string;
  attrs: Record<string, string | undefined>;
  children: (XmlElement | string)[];
  getChild(name: string, xmlns?: string): XmlElement | undefined;
  getChildren(name: string, xmlns?: string): XmlElement[];
  getChildElements(): XmlElement[];
  /** The name without its prefix. */
  getName(): string;
  /** The namespace, inherited from the parents when the element declares none. */
  getNS(): string | undefined;
  getText(): string;
  toString(): string;
}

const ESC: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&apos;",
};

/** Escapes text for an XML attribute value or text node. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESC[c]!);
}

/**
 * `el.getChild(name, xmlns)` without the array `getChildren` builds: the first child element
 * with that name (and namespace, when given), by the same test.
 */
export function firstChild(el: XmlElement, name: string, xmlns?: string): XmlElement | undefined {
  for (const c of el.children) {
    if (typeof c === "object" && c.getName() === name && (!xmlns || c.getNS() === xmlns)) return c;
  }
  return undefined;
}

/** `el.getChildren(name).length` without the array. */
export function countChildren(el: XmlElement, name: string): number {
  let n = 0;
  for (const c of el.children) if (typeof c === "object" && c.getName() === name) n++;
  return n;
}
