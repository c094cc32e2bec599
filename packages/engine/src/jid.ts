// Small JID helpers shared by the protocol handlers.

/** The bare JID (no resource) of `jid`; "" for undefined. */
export const bare = (jid: string | undefined): string => {
  if (!jid) return "";
  const slash = jid.indexOf("/");
  return slash === -1 ? jid : jid.slice(0, slash);
};

/** Local part and domain are case-insensitive (RFC 7622 for ASCII); the resource is not. */
export function normalizeJid(jid: string): string {
  const slash = jid.indexOf("/");
  const head = slash === -1 ? jid : jid.slice(0, slash);
  return head.toLowerCase() + (slash === -1 ? "" : jid.slice(slash));
}

/**
 * Whether an IQ answer from `from` may complete a request sent to `peer` (RFC 6120 §8.1.2.1: the
 * answer comes from the JID the request went to). A request without `to` (or to our own bare JID)
 * is answered by our server, which may omit `from` or use our bare JID or its domain.
 */
export function isExpectedIqSender(
  from: string | undefined,
  peer: string | null,
  ownBare: string,
): boolean {
  const own = normalizeJid(ownBare);
  const ownDomain = own.split("@")[1] ?? own;
  const to = peer === null ? null : normalizeJid(peer);
  if (to === null || to === own) {
    if (from === undefined || from === "") return true;
    const f = normalizeJid(from);
    return f === own || f === ownDomain;
  }
  return from !== undefined && normalizeJid(from) === to;
}
