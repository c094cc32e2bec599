// XEP-0313 query building and page parsing, shared by the account archive and room archives.
import xml, { type Element } from "@xmpp/xml";

export const NS_MAM = "urn:xmpp:mam:2";
const NS_RSM = "http://jabber.org/protocol/rsm";
/** Small pages: at 32 kbit/s a page must arrive well within a push wake-up. */
export const MAM_PAGE = 50;

/**
 * The query IQ: everything after `since` (oldest first), or — with no mark yet — the newest page
 * (RSM `<before/>`), so a first sync never downloads a whole archive.
 */
export function mamQuery(queryId: string, since: string | null, to?: string): Element {
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
      ),
      since
        ? xml("set", { xmlns: NS_RSM }, max, xml("after", {}, since))
        : xml("set", { xmlns: NS_RSM }, max, xml("before", {})),
    ),
  );
}

/** What a `<fin/>` page answer says: the last id it carried and whether the archive is exhausted. */
export function mamPage(iq: string): { complete: boolean; last: string | null } {
  return {
    complete: /<fin[^>]*complete=["'](true|1)["']/.test(iq),
    last: /<last>([^<]+)<\/last>/.exec(iq)?.[1] ?? null,
  };
}
