// XEP-0313 query building, page parsing and the page handler logic, shared by the account
// archive (protocol.ts) and room archives (muc.ts).
import xml, { type Element } from "@xmpp/xml";
import parseXml from "@xmpp/xml/lib/parse.js";

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
  let fin: Element | undefined;
  try {
    fin = (parseXml(iq) as Element | null)?.getChild("fin", NS_MAM);
  } catch {
    fin = undefined; // not XML: no page to continue from (the catch-up ends, the gap logic decides)
  }
  const complete = fin?.attrs.complete;
  return {
    complete: complete === "true" || complete === "1",
    last: fin?.getChild("set", NS_RSM)?.getChildText("last") || null,
  };
}

/**
 * One archive being caught up page by page: the account's own (AccountState.mam) or a room's
 * (table mam_marks). Each says how it stores its mark; handleMamPage decides what a page means.
 */
export interface MamArchive {
  /** The query failed (`condition`): the gap stays open, a later catch-up retries. */
  failed(condition: string): void;
  /** The page's last archive id: the mark moves past it. */
  advance(last: string): void;
  /** No page follows (`last`: this page's last id, if any): the catch-up ends here. */
  complete(last: string | null): void;
  /** Ask for the page after `last`. */
  next(last: string): void;
}

/**
 * The answer to one page query (the stored IQ handler's args: `type`, `stanza`, `condition`, and
 * `forward` as bound at the query). Forward: the gap is closed only by the page the server marks
 * complete (XEP-0313 §4.3: the last page of the query) or an empty one; every other page asks for
 * the next after its last. A newest-page-only query (not forward) is one page.
 */
export function handleMamPage(args: Record<string, unknown>, archive: MamArchive): void {
  if (args.type !== "result") {
    archive.failed(String(args.condition));
    return;
  }
  const { complete: fin, last } = mamPage(String(args.stanza));
  if (last) archive.advance(last);
  if (fin || !last || !args.forward) archive.complete(last);
  else archive.next(last);
}
