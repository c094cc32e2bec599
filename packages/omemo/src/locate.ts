// Where an OMEMO message sits in a received stanza (live, carbon, or MAM result), and a copy of
// the stanza with another body for the engine to store.
import { xml, type Element } from "@lichen/engine";

const NS_MAM = "urn:xmpp:mam:2";
const NS_CARBONS = "urn:xmpp:carbons:2";
const NS_FORWARD = "urn:xmpp:forward:0";

export function bare(jid: string): string {
  return jid.split("/")[0]!;
}

const NS_MUC_USER = "http://jabber.org/protocol/muc#user";

/** Where a groupchat message was written: the room, the author's nick, and what else says who. */
export interface RoomOrigin {
  room: string;
  nick: string;
  /** The real JID in the archived message's muc#user item (room MAM), trusted only from there. */
  archivedRealJid: string | null;
  /** The MAM query id of a room archive result (checked against our running room catch-ups). */
  queryId: string | null;
}

/** A message element whose body we replace, inside a copy of the stanza that carries it. */
export interface Located {
  inner: Element;
  /** Bare JID of the author (for a groupchat message: the occupant's real JID, once resolved). */
  sender: string;
  archiveId: string | null;
  /** Set for a groupchat message (live from the room, or from the room's archive). */
  roomOrigin: RoomOrigin | null;
  copy(): { stanza: Element; inner: Element };
}

export function locate(stanza: Element, own: string): Located | null {
  const from = stanza.attrs.from;
  const fromOwn = !from || from === own;
  let roomResultQueryId: string | null = null;
  const find = (root: Element): { inner: Element; archiveId: string | null } | null => {
    const result = root.getChild("result", NS_MAM);
    if (result) {
      // A room's archive result: the caller checks it answers our catch-up of that room.
      if (!fromOwn) roomResultQueryId = result.attrs.queryid ?? "";
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
  if (!found || found.inner.attrs.type === "error") return null;
  const innerFrom = found.inner.attrs.from ?? own;
  let roomOrigin: RoomOrigin | null = null;
  if (found.inner.attrs.type === "groupchat") {
    const slash = innerFrom.indexOf("/");
    // A groupchat message comes from room/nick; the room's own messages are never encrypted.
    if (slash < 0) return null;
    const room = innerFrom.slice(0, slash);
    // Only a room result from the room itself, and a live one not wrapped in anything.
    if (roomResultQueryId !== null ? from !== room : found.inner !== stanza) return null;
    const itemJid =
      roomResultQueryId !== null
        ? found.inner.getChild("x", NS_MUC_USER)?.getChild("item")?.attrs.jid
        : undefined;
    roomOrigin = {
      room,
      nick: innerFrom.slice(slash + 1),
      archivedRealJid: itemJid ? bare(itemJid) : null,
      queryId: roomResultQueryId,
    };
  } else if (roomResultQueryId !== null) {
    return null; // a non-groupchat result from someone else's archive: a forgery
  }
  return {
    ...found,
    roomOrigin,
    // Resolved by the caller for a groupchat message (from the room's occupant list).
    sender: roomOrigin ? "" : bare(innerFrom),
    copy: () => pathCopy(stanza, found.inner) ?? deepCopyFound(stanza, find),
  };
}

function deepCopyFound(
  stanza: Element,
  find: (root: Element) => { inner: Element } | null,
): { stanza: Element; inner: Element } {
  const copy = deepCopy(stanza);
  return { stanza: copy, inner: find(copy)!.inner };
}

/** ltx's parent pointer (set by the parser and by append; not in the published Element type). */
type Linked = Element & { parent: Element | null };

/** A new element with the same name, attributes and children (the children themselves shared). */
function shallowCopy(e: Element): Element {
  const copy = xml(e.name, { ...e.attrs });
  copy.children = e.children.slice();
  return copy;
}

/**
 * A copy of the elements from the stanza down to the message element only (its body is then
 * replaced); every other subtree, the large <encrypted/> one among them, is shared with the
 * received stanza, which nobody changes (a shared child keeps its parent pointer: its namespace
 * resolves through equal attributes). Copying the whole stanza was a fifth of the plugin's
 * allocation per message. Null when the parent chain does not lead to the stanza.
 */
function pathCopy(stanza: Element, inner: Element): { stanza: Element; inner: Element } | null {
  const path: Element[] = [];
  for (let e: Element | null = inner; e !== stanza; e = (e as Linked).parent) {
    if (!e) return null;
    path.push(e);
  }
  const root = shallowCopy(stanza);
  let copied = root;
  let original = stanza;
  for (let i = path.length - 1; i >= 0; i--) {
    const child = path[i]!;
    const at = original.children.indexOf(child);
    if (at < 0) return null;
    const c = shallowCopy(child);
    (c as Linked).parent = copied;
    copied.children[at] = c;
    copied = c;
    original = child;
  }
  return { stanza: root, inner: copied };
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
