// XEP-0313 query building and page parsing, shared by the account archive and room archives.
import xml, { type Element } from "@xmpp/xml";

export const NS_MAM = "urn:xmpp:mam:2";
const NS_RSM = "http://jabber.org/protocol/rsm";
/** Small pages: at 32 kbit/s a page must arrive well within a push wake-up. */
export const MAM_PAGE = 50;

/**
 * Where a catch-up page starts: after an archive id (RSM `<after>`, oldest first), at a time
 * (XEP-0313 `start` filter, oldest first), or — only for a first sync with neither — the newest
 * page (RSM `<before/>`), so a first sync never downloads a whole archive.
 */
export type MamFrom = { after: string } | { start: number } | null;

/** The query IQ for one page of at most MAM_PAGE results from `from`. */
export function mamQuery(queryId: string, from: MamFrom | string, to?: string): Element {
  const pos: MamFrom = typeof from === "string" ? { after: from } : from;
  const max = xml("max", {}, String(MAM_PAGE));
  return xml(
    "iq",
    { type: "set", ...(to ? { to } : {}) },
    xml(
      "query",
      { xmlns: NS_MAM, queryid: queryId },
      xml(
        "x",
        { xmlns: "jabber:x:data", type: "submit" },
        xml("field", { var: "FORM_TYPE", type: "hidden" }, xml("value", {}, NS_MAM)),
        pos && "start" in pos
          ? xml("field", { var: "start" }, xml("value", {}, xmppDateTime(pos.start)))
          : undefined,
      ),
      pos && "after" in pos
        ? xml("set", { xmlns: NS_RSM }, max, xml("after", {}, pos.after))
        : pos
          ? xml("set", { xmlns: NS_RSM }, max)
          : xml("set", { xmlns: NS_RSM }, max, xml("before", {})),
    ),
  );
}

/** XEP-0082 DateTime in UTC, whole seconds (servers compare archive stamps against it). */
export function xmppDateTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** What a `<fin/>` page answer says: the last id it carried and whether the archive is exhausted. */
export function mamPage(iq: string): { complete: boolean; last: string | null } {
  return {
    complete: /<fin[^>]*complete=["'](true|1)["']/.test(iq),
    last: /<last>([^<]+)<\/last>/.exec(iq)?.[1] ?? null,
  };
}
