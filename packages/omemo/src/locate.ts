// Where an OMEMO message sits in a received stanza (live, carbon, or MAM result), and a copy of
// the stanza with another body for the engine to store.
import { xml, type Element } from "@lichen/engine";

const NS_MAM = "urn:xmpp:mam:2";
const NS_CARBONS = "urn:xmpp:carbons:2";
const NS_FORWARD = "urn:xmpp:forward:0";

export function bare(jid: string): string {
  return jid.split("/")[0]!;
}

/** A message element whose body we replace, inside a copy of the stanza that carries it. */
export interface Located {
  inner: Element;
  sender: string;
  archiveId: string | null;
  copy(): { stanza: Element; inner: Element };
}

export function locate(stanza: Element, own: string): Located | null {
  const from = stanza.attrs.from;
  const fromOwn = !from || from === own;
  const find = (root: Element): { inner: Element; archiveId: string | null } | null => {
    const result = root.getChild("result", NS_MAM);
    if (result) {
      if (!fromOwn) return null; // room archives (MUC OMEMO) are not handled yet
      const inner = result.getChild("forwarded", NS_FORWARD)?.getChild("message");
      return inner ? { inner, archiveId: result.attrs.id ?? null } : null;
    }
    const carbon = root.getChild("received", NS_CARBONS) ?? root.getChild("sent", NS_CARBONS);
    if (carbon) {
      if (!fromOwn) return null; // forged carbon: the engine ignores it too
      const inner = carbon.getChild("forwarded", NS_FORWARD)?.getChild("message");
      return inner ? { inner, archiveId: null } : null;
    }
    return { inner: root, archiveId: null };
  };
  const found = find(stanza);
  if (!found || found.inner.attrs.type === "groupchat" || found.inner.attrs.type === "error")
    return null;
  const sender = bare(found.inner.attrs.from ?? own);
  return {
    ...found,
    sender,
    copy: () => {
      const copy = deepCopy(stanza);
      return { stanza: copy, inner: find(copy)!.inner };
    },
  };
}

/** Elements from the parser have no working clone(): copy by hand. */
function deepCopy(e: Element): Element {
  return xml(
    e.name,
    { ...e.attrs },
    ...e.children.map((c) => (typeof c === "string" ? c : deepCopy(c))),
  );
}

export function setBody(message: Element, body: string | null): void {
  message.children = message.children.filter((c) => typeof c === "string" || c.name !== "body");
  if (body !== null) message.append(xml("body", {}, body));
}
