import { openStore, tables } from "@lichen/store";
import { streamManagementEnabled, type XmppTestServer } from "@lichen/test-servers";
import { client, xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import parseXml from "@xmpp/xml/lib/parse.js";
import { describe, expect, it } from "vitest";
import { capsVerification, featuresOf, LICHEN_CAPS_NODE, parseDiscoInfo } from "../src/index.js";
import { SERVERS, until, useEngineEnv } from "./helpers.js";

const T = 180_000;
const NS_DISCO_INFO = "http://jabber.org/protocol/disco#info";

// XEP-0115 §5.2 and §5.3: the published examples and their verification strings.
const SIMPLE = `<query xmlns='${NS_DISCO_INFO}'>
  <identity category='client' name='Exodus 0.9.1' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
</query>`;
const SIMPLE_VER = "QgayPKawpkPSDYmwT/WM94uAlu0=";
const COMPLEX = `<query xmlns='${NS_DISCO_INFO}'>
  <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
  <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
    <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>
    <field var='os'><value>Mac</value></field>
    <field var='os_version'><value>10.5.1</value></field>
    <field var='software'><value>Psi</value></field>
    <field var='software_version'><value>0.11</value></field>
  </x>
</query>`;
const COMPLEX_VER = "q07IKJEyjvHSyhy//CH0CxmKi8w=";

describe("XEP-0115 verification string", () => {
  it("matches the XEP's simple and complex examples", () => {
    expect(capsVerification(parseDiscoInfo(parseXml(SIMPLE))!)).toBe(SIMPLE_VER);
    expect(capsVerification(parseDiscoInfo(parseXml(COMPLEX))!)).toBe(COMPLEX_VER);
  });
  it("refuses to cache ambiguous answers (duplicate feature, two FORM_TYPEs)", () => {
    const dup = SIMPLE.replace(
      "</query>",
      "<feature var='http://jabber.org/protocol/muc'/></query>",
    );
    expect(parseDiscoInfo(parseXml(dup))).toBeNull();
    const twoTypes = COMPLEX.replace(
      "<field var='os'>",
      "<field var='FORM_TYPE'><value>x</value></field><field var='os'>",
    );
    expect(parseDiscoInfo(parseXml(twoTypes))).toBeNull();
  });
});

/** bob asks `jid` for its plain disco#info. */
async function capsPeerQuery(server: XmppTestServer, jid: string): Promise<Element> {
  const bob = await capsPeer(server, "bob", "desk", SIMPLE);
  try {
    return await bob.xmpp.iqCaller.get(xml("query", { xmlns: NS_DISCO_INFO }), jid);
  } finally {
    await bob.stop();
  }
}

/** A plain client that announces `ver` in directed presence and answers disco#info with `info`. */
async function capsPeer(server: XmppTestServer, user: string, resource: string, info: string) {
  const xmpp = client({
    service: `xmpp://127.0.0.1:${server.c2sPort}`,
    domain: "localhost",
    username: user,
    password: `${user}pw`,
    resource,
  });
  xmpp.on("error", () => {});
  xmpp.reconnect.stop();
  const queries: string[] = [];
  xmpp.iqCallee.get(NS_DISCO_INFO, "query", (ctx: { element: { attrs: { node?: string } } }) => {
    queries.push(ctx.element.attrs.node ?? "");
    const q = parseXml(info);
    if (ctx.element.attrs.node) q.attrs.node = ctx.element.attrs.node;
    return q;
  });
  await xmpp.start();
  await streamManagementEnabled(xmpp);
  return {
    xmpp,
    queries,
    announce: (to: string, ver: string) =>
      xmpp.send(
        xml(
          "presence",
          { to },
          xml("c", {
            xmlns: "http://jabber.org/protocol/caps",
            hash: "sha-1",
            node: "http://code.google.com/p/exodus",
            ver,
          }),
        ),
      ),
    stop: () => xmpp.stop().catch(() => {}),
  };
}

describe.each(SERVERS)("entity capabilities on %s", (_kind, start) => {
  const env = useEngineEnv(start, {
    users: ["alice", "bob", "carol", "dave"],
    prefix: "lichen-caps-",
  });
  const features = (jid: string) => env.store.read((tx) => featuresOf(tx, "alice", jid));

  it(
    "queries each ver once, persists the cache across processes, and never caches a lie",
    async () => {
      const alice = env.session();
      await alice.connect();
      const bob = await capsPeer(env.server, "bob", "desk", SIMPLE);
      const carol = await capsPeer(env.server, "carol", "laptop", SIMPLE);
      const dave = await capsPeer(env.server, "dave", "evil", SIMPLE);
      try {
        const verified = new Promise((r) => alice.once("caps", r));
        await bob.announce("alice@localhost/phone", SIMPLE_VER);
        await verified;
        expect(bob.queries).toEqual([`http://code.google.com/p/exodus#${SIMPLE_VER}`]);
        expect(features("bob@localhost/desk")).toContain("http://jabber.org/protocol/muc");

        // Same ver from someone else: known at once, nobody is asked.
        await carol.announce("alice@localhost/phone", SIMPLE_VER);
        await until(() => features("carol@localhost/laptop"), "carol's caps from the cache");
        expect(carol.queries).toEqual([]);

        // A ver that does not match the answer is not cached (XEP-0115 §5.4).
        const mismatch = new Promise((r) => alice.once("caps-mismatch", r));
        await dave.announce("alice@localhost/phone", COMPLEX_VER);
        expect(await mismatch).toMatchObject({ ver: COMPLEX_VER, computed: SIMPLE_VER });
        expect(features("dave@localhost/evil")).toBeNull();
        const cached = env.store.read((tx) => tx.select().from(tables.capsCache).all());
        expect(cached.map((c) => c.ver)).toContain(SIMPLE_VER);
        expect(cached.map((c) => c.ver)).not.toContain(COMPLEX_VER);

        // Another process (new store handle, resumed stream): the cache is still there.
        await alice.suspend();
        const other = openStore({ path: env.db, role: "nse" });
        const alice2 = env.session({ store: other });
        try {
          expect(await alice2.connect()).toBe("resumed");
          const entries = () => other.read((tx) => tx.select().from(tables.entityCaps).all());
          const before = entries().find((e) => e.jid === "bob@localhost/desk")!.updatedAt;
          await bob.announce("alice@localhost/phone", SIMPLE_VER);
          await until(
            () => entries().find((e) => e.jid === "bob@localhost/desk")!.updatedAt > before,
            "bob's presence handled",
          );
          expect(bob.queries).toHaveLength(1);
          // Unavailable presence forgets the entity's caps (the cache entry stays).
          await carol.xmpp.send(
            xml("presence", { to: "alice@localhost/phone", type: "unavailable" }),
          );
          await until(
            () => !entries().some((e) => e.jid === "carol@localhost/laptop"),
            "carol gone",
          );
          expect(other.read((tx) => tx.select().from(tables.capsCache).all())).toHaveLength(
            cached.length,
          );
        } finally {
          await alice2.suspend();
          other.close();
        }
      } finally {
        await Promise.all([bob.stop(), carol.stop(), dave.stop()]);
      }
    },
    T,
  );

  it(
    "knows its own ver: caches it from its reflected presence without asking itself",
    async () => {
      const alice = env.session();
      const selfAnswers: string[] = [];
      const own = "alice@localhost/phone";
      alice.on("stanza", (el: Element) => {
        // The answer to a disco#info alice would have sent to her own full JID.
        if (el.is("iq") && el.attrs.type === "result" && el.attrs.from === own)
          selfAnswers.push(el.toString());
      });
      await alice.connect();
      try {
        const plain = await capsPeerQuery(env.server, own);
        const ver = capsVerification(parseDiscoInfo(plain)!);
        await until(
          () =>
            env.store.read((tx) =>
              tx
                .select()
                .from(tables.capsCache)
                .all()
                .some((c) => c.ver === ver),
            ),
          "alice's own ver in the caps cache",
        );
        await alice.syncBarrier(); // anything alice asked herself would be answered by now
        expect(selfAnswers).toEqual([]);
        expect(features(own)).toContain("urn:xmpp:receipts");
      } finally {
        await alice.close();
      }
    },
    T,
  );

  it(
    "answers disco#info for the node#ver it announces, and that answer hashes to the ver",
    async () => {
      const alice = env.session();
      await alice.connect();
      const bob = await capsPeer(env.server, "bob", "desk", SIMPLE);
      try {
        // The ver alice announced in her initial presence, as stored in her outbound history:
        // recompute from what she answers to a plain disco#info.
        const plain = await bob.xmpp.iqCaller.get(
          xml("query", { xmlns: NS_DISCO_INFO }),
          "alice@localhost/phone",
        );
        const ver = capsVerification(parseDiscoInfo(plain)!);
        const withNode = await bob.xmpp.iqCaller.get(
          xml("query", { xmlns: NS_DISCO_INFO, node: `${LICHEN_CAPS_NODE}#${ver}` }),
          "alice@localhost/phone",
        );
        expect(withNode.attrs.node).toBe(`${LICHEN_CAPS_NODE}#${ver}`);
        expect(capsVerification(parseDiscoInfo(withNode)!)).toBe(ver);
        expect(parseDiscoInfo(withNode)!.features).toContain("http://jabber.org/protocol/caps");
        await expect(
          bob.xmpp.iqCaller.get(
            xml("query", { xmlns: NS_DISCO_INFO, node: `${LICHEN_CAPS_NODE}#not-our-ver` }),
            "alice@localhost/phone",
          ),
        ).rejects.toThrow(/service-unavailable/);
      } finally {
        await bob.stop();
        await alice.close();
      }
    },
    T,
  );
});
