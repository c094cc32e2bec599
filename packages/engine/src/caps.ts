// XEP-0115 entity capabilities with a persisted cache: our own <c/> in presence (so servers and
// contacts know our features, e.g. PEP +notify), and verified caps of others, queried once per
// distinct verification string across restarts and processes.
import { createHash } from "node:crypto";
import { listIqHandlers, tables } from "@lichen/store";
import type { StoreTx } from "@lichen/store";
import xml, { type Element } from "@xmpp/xml";
import parseXml from "@xmpp/xml/lib/parse.js";
import { and, eq } from "drizzle-orm";
import type { HandlerRegistry } from "./handlers.js";
import type { ProtocolContext } from "./context.js";
import type { DiscoForm, DiscoIdentity, DiscoInfo } from "./disco-info.js";

export const NS_CAPS = "http://jabber.org/protocol/caps";
const NS_DISCO_INFO = "http://jabber.org/protocol/disco#info";
const NS_DATA = "jabber:x:data";
/** Our caps node (identifies the software, not the version). */
export const LICHEN_CAPS_NODE = "https://lichen.im";

export type { DiscoForm, DiscoIdentity, DiscoInfo } from "./disco-info.js";

/** Octet-wise ("i;octet") comparison, as XEP-0115 §5.1 requires (not locale order). */
const octet = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** The XEP-0115 §5.1 verification string and its SHA-1 (base64). */
export function capsVerification(info: DiscoInfo): string {
  const ids = info.identities
    .map((i) => `${i.category}/${i.type}/${i.lang ?? ""}/${i.name ?? ""}`)
    .sort(octet);
  let s = ids.map((i) => i + "<").join("");
  s += [...info.features]
    .sort(octet)
    .map((f) => f + "<")
    .join("");
  const forms = [...info.forms].sort((a, b) => octet(a.formType, b.formType));
  for (const form of forms) {
    s += form.formType + "<";
    for (const v of Object.keys(form.fields).sort(octet)) {
      s += v + "<";
      s += [...form.fields[v]!]
        .sort(octet)
        .map((x) => x + "<")
        .join("");
    }
  }
  return createHash("sha1").update(s, "utf8").digest("base64");
}

/**
 * Parses a disco#info <query/>. Returns null for input XEP-0115 §5.4 says must not be cached:
 * duplicate identities or features, or a form with no or several FORM_TYPE values.
 */
export function parseDiscoInfo(query: Element): DiscoInfo | null {
  const identities: DiscoIdentity[] = [];
  const features: string[] = [];
  const forms: DiscoForm[] = [];
  const seenIds = new Set<string>();
  for (const c of query.getChildren("identity")) {
    const id: DiscoIdentity = {
      category: c.attrs.category ?? "",
      type: c.attrs.type ?? "",
      ...(c.attrs["xml:lang"] ? { lang: c.attrs["xml:lang"] } : {}),
      ...(c.attrs.name ? { name: c.attrs.name } : {}),
    };
    const key = `${id.category}/${id.type}/${id.lang ?? ""}/${id.name ?? ""}`;
    if (seenIds.has(key)) return null;
    seenIds.add(key);
    identities.push(id);
  }
  for (const f of query.getChildren("feature")) {
    const v = f.attrs.var;
    if (!v) continue;
    if (features.includes(v)) return null;
    features.push(v);
  }
  for (const x of query.getChildren("x", NS_DATA)) {
    if (x.attrs.type !== "result") continue;
    const fields: Record<string, string[]> = {};
    let formType: string | null = null;
    for (const field of x.getChildren("field")) {
      const name = field.attrs.var;
      if (!name) continue;
      const values = field.getChildren("value").map((v) => v.getText());
      if (name === "FORM_TYPE") {
        if (values.length !== 1 || formType !== null) return null;
        formType = values[0]!;
      } else fields[name] = values;
    }
    if (formType === null) continue; // forms without FORM_TYPE are ignored (§5.4 3.6)
    if (forms.some((f) => f.formType === formType)) return null;
    forms.push({ formType, fields });
  }
  return { identities, features, forms };
}

/** What we answer to disco#info (and hash into our own caps). */
export function ownDiscoInfo(features: readonly string[]): DiscoInfo {
  return {
    identities: [{ category: "client", type: "phone", name: "Lichen" }],
    features: [...features, NS_CAPS],
    forms: [],
  };
}

export function discoInfoQuery(info: DiscoInfo, node?: string): Element {
  return xml(
    "query",
    { xmlns: NS_DISCO_INFO, ...(node ? { node } : {}) },
    ...info.identities.map((i) =>
      xml("identity", {
        category: i.category,
        type: i.type,
        ...(i.lang ? { "xml:lang": i.lang } : {}),
        ...(i.name ? { name: i.name } : {}),
      }),
    ),
    ...info.features.map((f) => xml("feature", { var: f })),
  );
}

const ownVers = new WeakMap<DiscoInfo, string>();
function ownVer(info: DiscoInfo): string {
  let ver = ownVers.get(info);
  if (ver === undefined) ownVers.set(info, (ver = capsVerification(info)));
  return ver;
}

/** Our <c/> element for outgoing presence. */
export function ownCapsElement(info: DiscoInfo): Element {
  return xml("c", {
    xmlns: NS_CAPS,
    hash: "sha-1",
    node: LICHEN_CAPS_NODE,
    ver: capsVerification(info),
  });
}

/** Features of an entity (full JID) from its announced and verified caps; null if unknown yet. */
export function featuresOf(tx: StoreTx, accountId: string, fullJid: string): string[] | null {
  const row = tx
    .select({ features: tables.capsCache.features })
    .from(tables.entityCaps)
    .innerJoin(
      tables.capsCache,
      and(
        eq(tables.capsCache.hash, tables.entityCaps.hash),
        eq(tables.capsCache.ver, tables.entityCaps.ver),
      ),
    )
    .where(and(eq(tables.entityCaps.accountId, accountId), eq(tables.entityCaps.jid, fullJid)))
    .get();
  return row ? (JSON.parse(row.features) as string[]) : null;
}

/** Inbound presence: remember the entity's caps; query disco#info once per unknown ver. */
export function handlePresenceCaps(ctx: ProtocolContext, presence: Element, own?: DiscoInfo): void {
  const from = presence.attrs.from;
  if (!from || !from.includes("/")) return; // caps belong to full JIDs
  if (presence.attrs.type === "unavailable") {
    ctx.tx
      .delete(tables.entityCaps)
      .where(and(eq(tables.entityCaps.accountId, ctx.accountId), eq(tables.entityCaps.jid, from)))
      .run();
    return;
  }
  if (presence.attrs.type) return; // subscription management, errors, probes
  const c = presence.getChild("c", NS_CAPS);
  // Only the current (hashed) form; legacy caps without `hash` cannot be verified.
  if (!c || c.attrs.hash !== "sha-1" || !c.attrs.ver || !c.attrs.node) return;
  const { node, ver, hash } = c.attrs as { node: string; ver: string; hash: string };
  if (node.length > 1024 || ver.length > 256) return; // hostile sizes are not stored
  ctx.tx
    .insert(tables.entityCaps)
    .values({ accountId: ctx.accountId, jid: from, node, hash, ver, updatedAt: ctx.tx.now })
    .onConflictDoUpdate({
      target: [tables.entityCaps.accountId, tables.entityCaps.jid],
      set: { node, hash, ver, updatedAt: ctx.tx.now },
    })
    .run();
  const known = ctx.tx
    .select({ ver: tables.capsCache.ver })
    .from(tables.capsCache)
    .where(and(eq(tables.capsCache.hash, hash), eq(tables.capsCache.ver, ver)))
    .get();
  if (known) return;
  if (own && node === LICHEN_CAPS_NODE && ver === ownVer(own)) {
    // Our own ver (this device's presence reflected, or another Lichen device of ours): we know
    // the answer. Asking cost a disco#info round trip (~1.3 KB) per login and, unanswered before
    // backgrounding, again on the next resume.
    ctx.tx
      .insert(tables.capsCache)
      .values({
        hash,
        ver,
        identities: JSON.stringify(own.identities),
        features: JSON.stringify(own.features),
        forms: JSON.stringify(own.forms),
        source: from,
        verifiedAt: ctx.tx.now,
      })
      .onConflictDoNothing()
      .run();
    return;
  }
  // One query per ver: another entity with the same ver may already be asked.
  const asking = listIqHandlers(ctx.tx, ctx.accountId).some(
    (h) => h.handler.name === "lichen.caps.info" && h.handler.bound.ver === ver,
  );
  if (asking) return;
  ctx.sendIq(
    xml(
      "iq",
      { type: "get", to: from },
      xml("query", { xmlns: NS_DISCO_INFO, node: `${node}#${ver}` }),
    ),
    ctx.session.registry.descriptor("lichen.caps.info", { ver, hash, jid: from }),
    { timeoutTicks: 30 },
  );
}

export function registerCapsHandlers(registry: HandlerRegistry): void {
  if (registry.has("lichen.caps.info")) return;
  registry.define("lichen.caps.info", (hctx, args) => {
    const ctx = hctx as ProtocolContext;
    const ver = String(args.ver);
    if (args.type !== "result" || typeof args.stanza !== "string") return; // asked again on next presence
    const query = parseXml(args.stanza).getChild("query", NS_DISCO_INFO);
    const info = query ? parseDiscoInfo(query) : null;
    const computed = info ? capsVerification(info) : null;
    if (!info || computed !== ver) {
      // A mismatch is never cached (XEP-0115 §5.4): the entity lied or is buggy.
      ctx.afterCommit(() =>
        ctx.session.emit("caps-mismatch", { jid: String(args.jid), ver, computed }),
      );
      return;
    }
    ctx.tx
      .insert(tables.capsCache)
      .values({
        hash: String(args.hash),
        ver,
        identities: JSON.stringify(info.identities),
        features: JSON.stringify(info.features),
        forms: JSON.stringify(info.forms),
        source: String(args.jid),
        verifiedAt: ctx.tx.now,
      })
      .onConflictDoNothing()
      .run();
    ctx.afterCommit(() =>
      ctx.session.emit("caps", { jid: String(args.jid), ver, features: info.features }),
    );
  });
}
