// What a new (non-resumed) stream does after XEP-0198 is enabled, all queued in that same
// transaction: service discovery, versioned roster fetch (XEP-0237), carbons (XEP-0280).
// On a resumed stream none of this is needed: the server kept the session.
import xml, { type Element } from "@xmpp/xml";
import parseXml from "@xmpp/xml/lib/parse.js";
import type { HandlerRegistry } from "./handlers.js";
import { fetchBookmarks } from "./bookmarks.js";
import { rejoinRooms } from "./muc.js";
import { resendPendingPush } from "./push.js";
import {
  NS_ROSTER,
  parseRosterItem,
  replaceRoster,
  rosterRequestVersion,
  type RosterItem,
} from "./roster.js";
import type { ProtocolContext } from "./context.js";

const NS_DISCO_INFO = "http://jabber.org/protocol/disco#info";
const NS_CARBONS = "urn:xmpp:carbons:2";

export function setupNewStream(
  ctx: ProtocolContext,
  ownBareJid: string,
  opts: { serverCapsVer?: string | null } = {},
): void {
  const r = ctx.session.registry;
  rejoinRooms(ctx); // the server forgot our room occupancy with the old stream
  fetchBookmarks(ctx); // rooms our other devices joined (autojoin) while we were away
  resendPendingPush(ctx); // a push enable/disable whose answer was lost with the old stream
  const features = ctx.state.features;
  // XEP-0115: the server's caps ver (in its stream features) names its disco#info. Unchanged since
  // our last discovery: the cached features stand, and 3-6 KB stay off a slow link. The account's
  // features (PEP, MAM) are the server's modules too, so they are kept with it.
  const unchanged =
    !!opts.serverCapsVer &&
    features.serverCapsVer === opts.serverCapsVer &&
    features.discoveredAt !== null &&
    features.server.length > 0;
  if (unchanged) {
    ctx.afterCommit(() => ctx.session.emit("disco-cached", opts.serverCapsVer ?? null));
  } else {
    ctx.sendIq(
      xml(
        "iq",
        { type: "get", to: ownBareJid.split("@")[1] ?? "" },
        xml("query", { xmlns: NS_DISCO_INFO }),
      ),
      r.descriptor("lichen.disco.features", {
        target: "server",
        capsVer: opts.serverCapsVer ?? null,
      }),
      { timeoutTicks: 60 },
    );
    ctx.sendIq(
      xml("iq", { type: "get", to: ownBareJid }, xml("query", { xmlns: NS_DISCO_INFO })),
      r.descriptor("lichen.disco.features", { target: "account" }),
      { timeoutTicks: 60 },
    );
  }
  // XEP-0237: the stored roster's version ("" without one); an empty result means "unchanged".
  ctx.sendIq(
    xml(
      "iq",
      { type: "get" },
      xml("query", { xmlns: NS_ROSTER, ver: rosterRequestVersion(ctx.tx, ctx.accountId) }),
    ),
    r.descriptor("lichen.roster.result", {}),
    { timeoutTicks: 60 },
  );
  ctx.sendIq(
    xml("iq", { type: "set" }, xml("enable", { xmlns: NS_CARBONS })),
    r.descriptor("lichen.carbons.enabled", {}),
    {
      timeoutTicks: 60,
    },
  );
}

function parse(stanza: unknown): Element | null {
  // Handlers receive the IQ as XML text (it must survive storage); parse when needed.
  return typeof stanza === "string" ? parseXml(stanza) : null;
}

export function registerSetupHandlers(registry: HandlerRegistry): void {
  if (registry.has("lichen.disco.features")) return;
  registry.define("lichen.disco.features", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    if (args.type !== "result") return;
    const iq = parse(args.stanza);
    const vars = (iq?.getChild("query", NS_DISCO_INFO)?.getChildren("feature") ?? [])
      .map((f) => f.attrs.var ?? "")
      .filter(Boolean);
    if (args.target === "server") {
      ctx.state.features.server = vars;
      ctx.state.features.serverCapsVer = typeof args.capsVer === "string" ? args.capsVer : null;
    } else ctx.state.features.account = vars;
    ctx.state.features.discoveredAt = ctx.tx.now;
  });
  registry.define("lichen.roster.result", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    if (args.type !== "result") return;
    const query = parse(args.stanza)?.getChild("query", NS_ROSTER);
    if (!query) {
      // XEP-0237: empty result, the stored roster (which we asked with) is current.
      const version = rosterRequestVersion(ctx.tx, ctx.accountId) || null;
      ctx.afterCommit(() => ctx.session.emit("roster", { unchanged: true, version }));
      return;
    }
    const items: RosterItem[] = [];
    for (const el of query.getChildren("item")) {
      const item = parseRosterItem(el);
      if (item && item !== "remove") items.push(item);
    }
    const version = query.attrs.ver ?? null;
    replaceRoster(ctx.tx, ctx.accountId, items, version);
    ctx.state.rosterVersion = version;
    ctx.afterCommit(() => ctx.session.emit("roster", { unchanged: false, version, items }));
  });
  registry.define("lichen.carbons.enabled", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    ctx.afterCommit(() => ctx.session.emit("carbons", args.type === "result"));
  });
}
