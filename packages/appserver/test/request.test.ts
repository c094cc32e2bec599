import { createHmac } from "node:crypto";
import parse from "@xmpp/xml/lib/parse.js";
import { describe, expect, it } from "vitest";
import { parseStanza } from "../src/request.js";
import { checkToken, domainOf, TokenHasher } from "../src/token.js";
import type { XmlElement } from "../src/xml.js";

const TOKEN = "a".repeat(64);
const rules = { minLength: 64, maxLength: 512 };
const el = (s: string) => parse(s) as unknown as XmlElement;

// Captured from Prosody 0.12 mod_cloud_notify (shared/notes/real-servers-recipe.md §6c).
const PROSODY = `<iq from="localhost" type="set" to="push.localhost" id="9965e2ae"><pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="${TOKEN}"><item><notification xmlns="urn:xmpp:push:0"><x type="form" xmlns="jabber:x:data"><field type="hidden" var="FORM_TYPE"><value>urn:xmpp:push:summary</value></field><field type="text-single" var="message-count"><value>1</value></field><field type="text-single" var="pending-subscription-count"/><field type="jid-single" var="last-message-sender"/><field type="text-single" var="last-message-body"><value>New Message!</value></field></x></notification></item></publish></pubsub></iq>`;
// Captured from ejabberd 23.01 mod_push with include_body: false.
const EJABBERD = `<iq to="push.localhost" from="localhost" type="set" id="rr-1795475398683-7207047964709494992-GfSrwmRkDabesM9th6hfXwLc5mk=-90237988"><pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="${TOKEN}"><item><notification xmlns="urn:xmpp:push:0"/></item></publish></pubsub></iq>`;

const withOptions = (fields: string) =>
  `<iq from="user@example.org/res" type="set" to="push.x" id="1"><pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="${TOKEN}"><item><notification xmlns="urn:xmpp:push:0"/></item></publish><publish-options><x xmlns="jabber:x:data" type="submit">${fields}</x></publish-options></pubsub></iq>`;

describe("parseStanza", () => {
  it("reads Prosody's summary form (important: body present)", () => {
    const r = parseStanza(el(PROSODY), rules);
    expect(r).toEqual({
      kind: "push",
      request: {
        id: "9965e2ae",
        domain: "localhost",
        token: TOKEN,
        app: undefined,
        important: true,
      },
    });
  });

  it("reads Prosody's hibernation push (empty body) as not important", () => {
    const s = PROSODY.replace("<value>New Message!</value>", "");
    const r = parseStanza(el(s), rules);
    expect(r.kind === "push" && r.request.important).toBe(false);
  });

  it("reads ejabberd's empty notification", () => {
    const r = parseStanza(el(EJABBERD), rules);
    expect(r.kind).toBe("push");
    if (r.kind === "push")
      expect(r.request).toMatchObject({ domain: "localhost", token: TOKEN, important: false });
  });

  it("selects the app by the pushModule publish-option (fpush compatible), reduces from to its domain", () => {
    const r = parseStanza(
      el(
        withOptions(
          `<field var="FORM_TYPE"><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var="pushModule"><value>monal-prod</value></field><field var="other"><value>x</value></field>`,
        ),
      ),
      rules,
    );
    expect(r).toMatchObject({
      kind: "push",
      request: { app: "monal-prod", domain: "example.org" },
    });
    expect(JSON.stringify(r)).not.toContain("user");
  });

  it("publish-options without pushModule → default app", () => {
    const r = parseStanza(el(withOptions(`<field var="secret"><value>s</value></field>`)), rules);
    expect(r).toMatchObject({ kind: "push", request: { app: undefined } });
  });

  it("validates the node as a token first: known-bad token → cancel/item-not-found", () => {
    for (const node of ["short", "x".repeat(513), `${"a".repeat(63)}<`, `${"a".repeat(64)} `, ""]) {
      const s = EJABBERD.replace(`node="${TOKEN}"`, `node="${node.replace("<", "&lt;")}"`).replace(
        'from="localhost"',
        "",
      );
      const r = parseStanza(el(s), rules);
      expect(r.kind).toBe("error");
      if (r.kind === "error") {
        expect(r.error.type).toBe("cancel");
        expect(r.error.condition).toBe("item-not-found");
        expect(r.error.text).toMatch(/node/);
      }
    }
  });

  it("answers disco#info and ping, rejects other payloads clearly", () => {
    expect(
      parseStanza(
        el(
          `<iq type="get" id="d" from="localhost"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>`,
        ),
        rules,
      ).kind,
    ).toBe("disco-info");
    expect(
      parseStanza(
        el(`<iq type="get" id="p" from="localhost"><ping xmlns="urn:xmpp:ping"/></iq>`),
        rules,
      ).kind,
    ).toBe("ping");
    const r = parseStanza(
      el(`<iq type="set" id="v" from="localhost"><query xmlns="jabber:iq:version"/></iq>`),
      rules,
    );
    expect(r).toMatchObject({
      kind: "error",
      error: { type: "cancel", condition: "service-unavailable" },
    });
    expect(parseStanza(el(`<iq type="result" id="r"/>`), rules).kind).toBe("ignore");
    expect(
      parseStanza(el(`<iq type="error" id="e"><ping xmlns="urn:xmpp:ping"/></iq>`), rules).kind,
    ).toBe("ignore");
  });

  it("unknown or missing iq type → modify/bad-request (RFC 6120 §8.3.3.1)", () => {
    for (const s of [
      `<iq type="bogus" id="u" from="localhost"><ping xmlns="urn:xmpp:ping"/></iq>`,
      `<iq type="SET" id="u" from="localhost"><ping xmlns="urn:xmpp:ping"/></iq>`,
      `<iq id="u" from="localhost"><ping xmlns="urn:xmpp:ping"/></iq>`,
    ]) {
      expect(parseStanza(el(s), rules), s).toMatchObject({
        kind: "error",
        id: "u",
        error: { type: "modify", condition: "bad-request", text: expect.stringMatching(/type/) },
      });
    }
    expect(parseStanza(el(`<message><body>x</body></message>`), rules).kind).toBe("ignore");
  });

  it("malformed IQ → modify/bad-request; malformed push publish → wait/bad-request (registration kept)", () => {
    const cases: [string, RegExp, "modify" | "wait"][] = [
      [
        `<iq type="set" from="localhost"><pubsub xmlns="http://jabber.org/protocol/pubsub"/></iq>`,
        /id/,
        "modify",
      ],
      [`<iq type="set" id="1" from="localhost"/>`, /payload/, "modify"],
      [
        `<iq type="set" id="1" from="localhost"><pubsub xmlns="http://jabber.org/protocol/pubsub"/></iq>`,
        /publish/,
        "wait",
      ],
      [EJABBERD.replace('<notification xmlns="urn:xmpp:push:0"/>', ""), /notification/, "wait"],
      [EJABBERD.replace('from="localhost"', 'from="@/"'), /domain/, "wait"],
      [
        withOptions(`<field var="pushModule"><value>bad module!</value></field>`),
        /pushModule/,
        "wait",
      ],
    ];
    for (const [s, re, type] of cases) {
      const r = parseStanza(el(s), rules);
      expect(r.kind, s).toBe("error");
      if (r.kind === "error") {
        expect(r.error.type, s).toBe(type);
        expect(r.error.text).toMatch(re);
      }
    }
  });
});

describe("token helpers", () => {
  it("checkToken bounds and charset", () => {
    expect(checkToken("f".repeat(64)).ok).toBe(true);
    expect(checkToken("A-b_c:d.e".padEnd(64, "0")).ok).toBe(true);
    expect(checkToken("f".repeat(63)).ok).toBe(false);
    expect(checkToken("é".repeat(64)).ok).toBe(false);
    expect(checkToken(undefined).ok).toBe(false);
  });

  it("domainOf drops local part and resource", () => {
    expect(domainOf("alice@Example.ORG/phone")).toBe("example.org");
    expect(domainOf("localhost")).toBe("localhost");
    expect(domainOf("a@b@c")).toBe("c");
    expect(domainOf("")).toBeUndefined();
    expect(domainOf("x".repeat(300))).toBeUndefined();
  });

  it("hash is keyed and stable; seal/unseal round-trips and detects tampering", () => {
    const a = new TokenHasher("0123456789abcdef-secret");
    const b = new TokenHasher("another-secret-0123456789");
    expect(a.hash(TOKEN)).toMatch(/^[0-9a-f]{32}$/);
    expect(a.hash(TOKEN)).toBe(a.hash(TOKEN));
    expect(a.hash(TOKEN)).not.toBe(b.hash(TOKEN));
    // the same value as the first 32 hex chars of the full HMAC: hashes persisted by earlier
    // versions (DB, Redis) stay valid
    expect(a.hash(TOKEN)).toBe(
      createHmac("sha256", "0123456789abcdef-secret").update(TOKEN).digest("hex").slice(0, 32),
    );
    // APNs tokens are hex in either case: one device, one hash; FCM tokens are case-sensitive
    const upper = "ABCDEF0123456789".repeat(4);
    expect(a.hash(upper, true)).toBe(a.hash(upper.toLowerCase(), true));
    expect(a.hash(upper, true)).toBe(a.hash(upper.toLowerCase()));
    expect(a.hash(upper)).not.toBe(a.hash(upper.toLowerCase()));
    const sealed = a.seal(TOKEN);
    expect(sealed).not.toContain(TOKEN);
    expect(a.unseal(sealed)).toBe(TOKEN);
    expect(() => b.unseal(sealed)).toThrow();
    expect(() => new TokenHasher("short")).toThrow(/16 bytes/);
  });

  it("hash is HMAC-SHA256 for every key and token shape (precomputed key blocks)", () => {
    // hash() builds HMAC from the padded key blocks itself: it must stay the RFC 2104 value for
    // keys shorter than, equal to and longer than SHA-256's block, and for every token length,
    // or hashes persisted by earlier versions (DB, Redis, other nodes) would stop matching.
    const keys = ["0123456789abcdef", "k".repeat(64), "€-secret-".repeat(12)];
    const tokens = [
      "",
      TOKEN,
      "x".repeat(511),
      "y".repeat(512),
      "z".repeat(513), // past the preallocated buffer: the generic path
      "f".repeat(4096),
      "fcm:APA91b-ünïcödé_€",
    ];
    for (const k of keys) {
      const h = new TokenHasher(k);
      for (const t of tokens) {
        const want = createHmac("sha256", k).update(t).digest("hex").slice(0, 32);
        expect(h.hash(t), `key ${k.length} chars, token ${t.length} chars`).toBe(want);
      }
      // a long token hashed before a short one leaves nothing behind in the shared buffer
      h.hash("w".repeat(500));
      expect(h.hash(TOKEN)).toBe(createHmac("sha256", k).update(TOKEN).digest("hex").slice(0, 32));
    }
  });
});
