import { prng } from "@lichen/test-kit";
import { escapeXml } from "../../src/xml.js";

export interface HostileIq {
  xml: string;
  /** The id under which a reply is expected, or undefined when none is (result/error/no id). */
  expectReplyId: string | undefined;
  /** The id of an IQ reply (result/error) sent to the appserver, which must never be answered. */
  mustNotAnswerId?: string | undefined;
}

const HEX = "0123456789abcdef";

/**
 * Well-formed but hostile push IQs: every attribute and structural part is mutated (missing,
 * duplicated, oversized, wrong namespace, odd characters, deep nesting). Sender domains are
 * `evil-N.example` so that the domain blacklist they trigger never touches healthy traffic.
 */
export function hostileIqs(seed: number, count: number): HostileIq[] {
  const r = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const hex = (n: number) => Array.from({ length: n }, () => HEX[Math.floor(r() * 16)]).join("");
  const junk = (n: number) =>
    Array.from({ length: n }, () => String.fromCharCode(0x20 + Math.floor(r() * 0x2fd0))).join("");
  const nodes = () =>
    pick([
      () => hex(64),
      () => hex(64),
      () => "",
      () => hex(10),
      () => hex(600),
      () => junk(70),
      () => `${hex(60)} <x>`,
      () => `../../${hex(64)}`,
      () => "é".repeat(64),
      () => hex(64) + "\u0000".slice(0, 0) + "%00",
    ])();
  const froms = () =>
    pick([
      () => `evil-${Math.floor(r() * 5)}.example`,
      () => `user${Math.floor(r() * 100)}@evil-${Math.floor(r() * 5)}.example/res`,
      () => "",
      () => "@",
      () => "x".repeat(400),
      () => "evil.example/" + junk(20),
    ])();
  const summary = () =>
    pick([
      "",
      `<x xmlns='jabber:x:data' type='form'><field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field><field var='last-message-body'><value>${escapeXml(junk(30))}</value></field></x>`,
      `<x xmlns='jabber:x:data'><field/><field var=''/><value/></x>`,
      `<x xmlns='wrong'><field var='FORM_TYPE'><value>urn:xmpp:push:summary</value></field></x>`,
      `<x xmlns='jabber:x:data' type='form'>${"<field var='message-count'><value>9</value></field>".repeat(200)}</x>`,
    ]);
  const options = () =>
    pick([
      "",
      `<publish-options><x xmlns='jabber:x:data' type='submit'><field var='pushModule'><value>${escapeXml(pick(["default", "nope", "", "x".repeat(100), "a b", junk(5)]))}</value></field></x></publish-options>`,
      `<publish-options><x xmlns='jabber:x:data'><field var='pushModule'/></x></publish-options>`,
      `<publish-options>${escapeXml(junk(50))}</publish-options>`,
      `<publish-options><x xmlns='jabber:x:data'><field var='pushModule'><value>default</value><value>other</value></field></x><x xmlns='jabber:x:data'/></publish-options>`,
    ]);
  const deep = (n: number) => "<a>".repeat(n) + "</a>".repeat(n);
  const out: HostileIq[] = [];
  for (let i = 0; i < count; i++) {
    const id = `h${i}`;
    const node = nodes();
    const notification = pick([
      `<notification xmlns='urn:xmpp:push:0'>${summary()}</notification>`,
      `<notification xmlns='urn:xmpp:push:0'/>`,
      `<notification xmlns='urn:xmpp:push:1'/>`,
      `<notification/>`,
      "",
      deep(150),
    ]);
    const publish = pick([
      () => `<publish node='${escapeXml(node)}'><item>${notification}</item></publish>`,
      () => `<publish node='${escapeXml(node)}'>${notification}</publish>`,
      () => `<publish>${notification}</publish>`,
      () => `<publish node='${escapeXml(node)}'/><publish node='${hex(64)}'/>`,
      () => "",
      () =>
        `<publish node='${escapeXml(node)}'><item><item><item>${notification}</item></item></item></publish>`,
    ])();
    const payload = pick([
      () => `<pubsub xmlns='http://jabber.org/protocol/pubsub'>${publish}${options()}</pubsub>`,
      () => `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>${publish}</pubsub>`,
      () => `<pubsub>${publish}</pubsub>`,
      () =>
        `<pubsub xmlns='http://jabber.org/protocol/pubsub'>${publish}</pubsub><extra xmlns='x'/>`,
      () => `<query xmlns='http://jabber.org/protocol/disco#info'/>`,
      () => `<ping xmlns='urn:xmpp:ping'/>`,
      () => "",
      () => escapeXml(junk(200)),
      () =>
        `<pubsub xmlns='http://jabber.org/protocol/pubsub'>${publish}${"<x/>".repeat(500)}</pubsub>`,
    ])();
    const type = pick(["set", "set", "set", "get", "result", "error", "", "bogus"]);
    const from = froms();
    const idAttr = pick([
      () => id,
      () => id,
      () => id,
      () => undefined,
      () => `${id}-${"i".repeat(300)}`,
    ])();
    const attrs = [
      type ? `type='${type}'` : "",
      from ? `from='${escapeXml(from)}'` : "",
      `to='push.localhost'`,
      idAttr !== undefined ? `id='${escapeXml(idAttr)}'` : "",
    ]
      .filter(Boolean)
      .join(" ");
    const stanzaName = r() < 0.03 ? pick(["message", "presence"]) : "iq";
    let xml = `<${stanzaName} ${attrs}>${payload}</${stanzaName}>`;
    if (r() < 0.3) {
      // Near-valid: correct structure, only node, sender and options hostile, so that a good share
      // of the requests goes all the way to the provider.
      const opts = options();
      xml = `<iq type='set' from='${escapeXml(froms() || "evil.example")}' to='push.localhost' id='${id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${escapeXml(r() < 0.5 ? hex(64) : node)}'><item><notification xmlns='urn:xmpp:push:0'>${summary()}</notification></item></publish>${opts}</pubsub></iq>`;
      out.push({ xml, expectReplyId: id });
      continue;
    }
    // RFC 6120 §8.3.3.1: every IQ that is not a reply (result/error) is answered, an unknown or
    // missing type with bad-request; replies are never answered (no loops).
    const isReply = type === "result" || type === "error";
    const answered = stanzaName === "iq" && !isReply && idAttr !== undefined;
    out.push({
      xml,
      expectReplyId: answered ? idAttr : undefined,
      mustNotAnswerId: stanzaName === "iq" && isReply ? idAttr : undefined,
    });
  }
  return out;
}
