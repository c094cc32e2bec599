// Bad input: ≥ 1000 mutated stanzas from a peer (seeded, LICHEN_FUZZ_SEED overrides) against a real
// server, and corrupt rows in the units the engine owns (account state, IQ handlers, outbound queue).
import { join } from "node:path";
import { loadAccountState, openStore, type Store } from "@lichen/store";
import { client, xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { describe, expect, it } from "vitest";
import { DurableSession, ensureAccount } from "../src/index.js";
import { prng, SERVERS, startPeer, until, useEngineEnv } from "./helpers.js";
import { startProsody, streamManagementEnabled } from "@lichen/test-servers";

const T = 180_000;
const STANZAS = 1250;
const SEED = process.env.LICHEN_FUZZ_SEED
  ? Number(process.env.LICHEN_FUZZ_SEED)
  : Math.floor(Math.random() * 2 ** 31);
const ALICE_FULL = "alice@localhost/phone";
const NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";

type Rnd = ReturnType<typeof prng>;

// Code points that are legal XML 1.0 characters but hostile to naive code: combining marks, RTL and
// bidi overrides, zero-width, BOM, private use, astral planes, and lone surrogates (which Node
// writes as U+FFFD). No C0 controls and no U+FFFE/U+FFFF: a server would close the PEER's stream.
const RANGES: [number, number][] = [
  [0x20, 0x7e],
  [0x20, 0x7e],
  [0xa0, 0x2ff],
  [0x300, 0x36f],
  [0x590, 0x6ff],
  [0x200b, 0x200f],
  [0x202a, 0x202e],
  [0x2066, 0x2069],
  [0xfeff, 0xfeff],
  [0xd800, 0xdfff],
  [0xe000, 0xf8ff],
  [0x1f300, 0x1faff],
  [0x10000, 0x10fffd],
];
function unicode(r: Rnd, len: number): string {
  let s = "";
  for (let i = 0; i < len; i++) {
    const [a, b] = r.pick(RANGES);
    const cp = a + r.int(b - a + 1);
    s += cp >= 0xd800 && cp <= 0xdfff ? String.fromCharCode(cp) : String.fromCodePoint(cp);
    if (r.chance(0.02)) s += r.pick(["&", "<", ">", "'", '"', "]]>", "\t", "\n", "&amp;"]);
  }
  return s;
}
const name = (r: Rnd) =>
  "abcdefghijklmnopqrstuvwxyz"[r.int(26)]! + Math.abs(r.int(1e6)).toString(36);
function deep(r: Rnd, depth: number, leaf?: Element): Element {
  let el: Element = leaf ?? xml("leaf", {}, unicode(r, 5));
  for (let i = 0; i < depth; i++)
    el = xml(r.chance(0.5) ? "x" : name(r), r.chance(0.3) ? { xmlns: `urn:evil:${i}` } : {}, el);
  return el;
}

interface Generated {
  stanza: Element;
  kind:
    | "control"
    | "message"
    | "carbon"
    | "mam"
    | "iq-request"
    | "iq-response"
    | "presence"
    | "error-message"
    | "stanza-id-spoof"
    | "receipt-spoof";
  /** Body that must never be stored (forged content). */
  forged?: string;
  /** Body that must be stored exactly once. */
  expect?: string;
}

/**
 * One mutated stanza from the peer. Never sets `from` (the server stamps it) and keeps the XML
 * well formed: the server would otherwise close the peer's stream, not alice's.
 */
function generate(
  r: Rnd,
  i: number,
  ctx: { lastIqId: string; spoofOrigin: string; originSpoofed: number },
): Generated {
  const to = r.chance(0.5) ? "alice@localhost" : ALICE_FULL;
  const id = (): Record<string, string> => {
    const v = r.int(10);
    if (v === 0) return {};
    if (v === 1) return { id: "" };
    if (v === 2) return { id: "dup-id" };
    if (v === 3) return { id: unicode(r, 1 + r.int(40)) };
    if (v === 4) return { id: "x".repeat(2000 + r.int(2000)) };
    return { id: `f-${i}-${r.int(1e9)}` };
  };
  const junkAttrs = (): Record<string, string> => {
    const a: Record<string, string> = {};
    for (let k = r.int(4); k > 0; k--) a[name(r)] = unicode(r, r.int(30));
    if (r.chance(0.1)) a["xml:lang"] = unicode(r, 3);
    return a;
  };
  const junkChildren = (): Element[] => {
    const out: Element[] = [];
    for (let k = r.int(3); k > 0; k--) {
      const v = r.int(5);
      if (v === 0) out.push(deep(r, 20 + r.int(180)));
      else if (v === 1)
        out.push(xml(name(r), { xmlns: `urn:evil:${name(r)}` }, unicode(r, r.int(200))));
      else if (v === 2) out.push(xml("body", { xmlns: "urn:not-the-client-ns" }, unicode(r, 20)));
      else if (v === 3)
        out.push(xml("delay", { xmlns: "urn:xmpp:delay", stamp: unicode(r, r.int(30)) }));
      else
        out.push(
          xml("origin-id", { xmlns: "urn:xmpp:sid:0", ...(r.chance(0.5) ? { id: "o-dup" } : {}) }),
        );
    }
    return out;
  };
  const hugeOrWeird = (): string => {
    const v = r.int(8);
    if (v === 0) return "";
    if (v === 1) return unicode(r, 5000 + r.int(15000)); // up to ~60 kB of UTF-8
    if (v === 2) return "A".repeat(20000 + r.int(40000));
    return unicode(r, 1 + r.int(300));
  };

  if (i % 50 === 0)
    return {
      kind: "control",
      expect: `ctl-${SEED}-${i}`,
      stanza: xml(
        "message",
        { to: "alice@localhost", type: "chat", id: `ctl-${i}` },
        xml("body", {}, `ctl-${SEED}-${i}`),
      ),
    };

  const kind = r.pick([
    "message",
    "message",
    "message",
    "carbon",
    "mam",
    "iq-request",
    "iq-request",
    "iq-request",
    "iq-response",
    "presence",
    "error-message",
    "stanza-id-spoof",
    "receipt-spoof",
  ] as const);
  switch (kind) {
    case "message": {
      const children: Element[] = [];
      const bodies = r.chance(0.1) ? 2 : r.chance(0.8) ? 1 : 0;
      for (let b = 0; b < bodies; b++) children.push(xml("body", {}, hugeOrWeird()));
      if (r.chance(0.2)) children.push(xml("request", { xmlns: "urn:xmpp:receipts" }));
      if (r.chance(0.1)) children.push(xml("thread", {}, unicode(r, 10)));
      const type = r.pick(["chat", "normal", "headline", "bogus", "", "CHAT", undefined]);
      return {
        kind,
        stanza: xml(
          "message",
          { to, ...(type !== undefined ? { type } : {}), ...id(), ...junkAttrs() },
          ...children,
          ...junkChildren(),
        ),
      };
    }
    case "carbon": {
      const forged = `FORGED-CARBON-${i}`;
      const innerFrom = r.pick([
        "carol@localhost/x",
        "alice@localhost/other",
        "bob@localhost/desk",
      ]);
      const inner = xml(
        "message",
        { from: innerFrom, to: ALICE_FULL, type: "chat", id: `fc-${i}` },
        xml("body", {}, forged),
        xml("origin-id", { xmlns: "urn:xmpp:sid:0", id: `fco-${i}` }),
      );
      const wrap = xml(
        r.pick(["received", "sent"]),
        { xmlns: "urn:xmpp:carbons:2" },
        xml("forwarded", { xmlns: "urn:xmpp:forward:0" }, inner),
      );
      return {
        kind,
        forged,
        stanza: xml(
          "message",
          { to, type: r.pick(["chat", "normal", "error"]), ...id() },
          r.chance(0.2) ? deep(r, 5 + r.int(50), wrap) : wrap,
          ...(r.chance(0.3) ? [xml("private", { xmlns: "urn:xmpp:carbons:2" })] : []),
        ),
      };
    }
    case "mam": {
      const forged = `FORGED-MAM-${i}`;
      return {
        kind,
        forged,
        stanza: xml(
          "message",
          { to, ...id() },
          xml(
            "result",
            {
              xmlns: "urn:xmpp:mam:2",
              ...(r.chance(0.7) ? { queryid: r.chance(0.5) ? "q1" : unicode(r, 8) } : {}),
              ...(r.chance(0.9) ? { id: `fmam-${i}` } : {}),
            },
            xml(
              "forwarded",
              { xmlns: "urn:xmpp:forward:0" },
              xml("delay", { xmlns: "urn:xmpp:delay", stamp: "2001-01-01T00:00:00Z" }),
              xml(
                "message",
                {
                  from: r.pick(["carol@localhost/x", "alice@localhost/phone", "localhost"]),
                  to: "alice@localhost",
                  type: "chat",
                },
                xml("body", {}, forged),
              ),
            ),
          ),
        ),
      };
    }
    case "iq-request": {
      const v = r.int(9);
      const children: Element[] =
        v === 0
          ? []
          : v === 1
            ? [xml(name(r), { xmlns: `urn:evil:${name(r)}` }), xml("query", { xmlns: "urn:x" })]
            : v === 2
              ? [xml("ping", { xmlns: "urn:xmpp:pingx" })]
              : v === 3
                ? [
                    xml(
                      "query",
                      { xmlns: "jabber:iq:roster", ver: "forged" },
                      xml("item", { jid: "mallory@localhost", subscription: "both" }),
                    ),
                  ]
                : v === 4
                  ? [
                      xml("query", {
                        xmlns: "http://jabber.org/protocol/disco#info",
                        node: "urn:evil#" + unicode(r, 10),
                      }),
                    ]
                  : v === 5
                    ? [deep(r, 50 + r.int(150))]
                    : v === 6
                      ? [xml("query", { xmlns: "http://jabber.org/protocol/disco#items" })]
                      : [xml(name(r), { xmlns: `urn:evil:${name(r)}` }, unicode(r, r.int(500)))];
      const dup = r.chance(0.05);
      const iqId = dup ? ctx.lastIqId : `hiq-${i}`;
      ctx.lastIqId = iqId;
      return {
        kind,
        stanza: xml(
          "iq",
          { to: ALICE_FULL, type: v === 3 || r.chance(0.5) ? "set" : "get", id: iqId },
          ...children,
        ),
      };
    }
    case "iq-response": {
      const type = r.pick(["result", "error"]);
      return {
        kind,
        stanza: xml(
          "iq",
          { to: ALICE_FULL, type, id: `unk-${i}` },
          ...(type === "error"
            ? [
                xml(
                  "error",
                  { type: r.pick(["cancel", "bogus"]) },
                  ...(r.chance(0.5) ? [xml(name(r), { xmlns: NS_STANZAS })] : []),
                ),
              ]
            : r.chance(0.5)
              ? [
                  xml(
                    "fin",
                    { xmlns: "urn:xmpp:mam:2", complete: "true" },
                    xml("set", { xmlns: "http://jabber.org/protocol/rsm" }, xml("last", {}, "x")),
                  ),
                ]
              : []),
        ),
      };
    }
    case "presence": {
      const type = r.pick([undefined, undefined, "unavailable", "subscribe", "error", "bogus"]);
      return {
        kind,
        stanza: xml(
          "presence",
          { to: ALICE_FULL, ...(type ? { type } : {}), ...id(), ...junkAttrs() },
          ...(r.chance(0.6)
            ? [
                xml("c", {
                  xmlns: "http://jabber.org/protocol/caps",
                  hash: r.pick(["sha-1", "md5", ""]),
                  node: r.chance(0.1) ? "n".repeat(5000) : "https://evil.example",
                  ver: r.chance(0.5) ? unicode(r, 28) : "x".repeat(1000),
                }),
              ]
            : []),
          ...(r.chance(0.2) ? [xml("status", {}, hugeOrWeird())] : []),
          ...(r.chance(0.2)
            ? [
                xml(
                  "x",
                  { xmlns: "http://jabber.org/protocol/muc#user" },
                  xml("status", { code: "110" }),
                ),
              ]
            : []),
        ),
      };
    }
    case "error-message": {
      const forged = `ERROR-MESSAGE-${i}`;
      return {
        kind,
        forged,
        stanza: xml(
          "message",
          { to, type: "error", ...id() },
          xml("body", {}, forged),
          xml("error", { type: "cancel" }, xml("item-not-found", { xmlns: NS_STANZAS })),
        ),
      };
    }
    case "stanza-id-spoof": {
      const body = `SID-SPOOF-${SEED}-${i}`;
      return {
        kind,
        expect: body,
        stanza: xml(
          "message",
          { to: "alice@localhost", type: "chat", id: `sid-${i}` },
          xml("stanza-id", {
            xmlns: "urn:xmpp:sid:0",
            by: r.pick([
              "alice@localhost",
              "alice@localhost/phone",
              "alice@localhost/x",
              "ALICE@localhost",
              "localhost",
            ]),
            id: `spoof-${i}`,
          }),
          // alice's own origin-id once (must not clash with her message), then fresh ones: a
          // sender reusing its own origin-id is deduplicated by design.
          xml("origin-id", {
            xmlns: "urn:xmpp:sid:0",
            id: ctx.originSpoofed++ === 0 ? ctx.spoofOrigin : `sid-o-${i}`,
          }),
          xml("body", {}, body),
        ),
      };
    }
    case "receipt-spoof":
      return {
        kind,
        stanza: xml(
          "message",
          { to, ...id() },
          xml("received", { xmlns: "urn:xmpp:receipts", id: ctx.spoofOrigin }),
        ),
      };
  }
}

function countBody(store: Store, body: string): number {
  return (
    store.sqlite.prepare("SELECT count(*) AS n FROM messages WHERE body = ?").get(body) as {
      n: number;
    }
  ).n;
}

describe.each(SERVERS)("hostile input on %s", (kind, start) => {
  const env = useEngineEnv(start, { users: ["alice", "bob", "carol"], prefix: "lichen-hostile-" });
  const sessionOpts = (store: Store) => ({ store, ...env.config() });

  it(
    `${STANZAS} mutated stanzas (seeded; a failure prints the seed, LICHEN_FUZZ_SEED reruns it), a suspend and an injected handler failure mid-flood: online and resumable, controls stored once, forgeries never stored, hostile IQs answered`,
    async () => {
      const path = join(env.dir, `fuzz-${kind}.db`);
      const store = openStore({ path, role: "main" });
      ensureAccount(store, { id: "alice", jid: "alice@localhost", resource: "phone" });
      const logs: Record<string, unknown>[] = [];
      // One injected handler failure mid-flood: the session drops TCP, resumes and is replayed
      // from that stanza while hostile stanzas keep coming.
      const injectAt = `ctl-${SEED}-300`;
      let injected = false;
      const s1 = new DurableSession({
        ...sessionOpts(store),
        logger: (e) => logs.push(e),
        onStanza: (_ctx, st) => {
          if (!injected && st.getChildText("body") === injectAt) {
            injected = true;
            throw new Error("injected failure");
          }
        },
      });
      const handled1: Element[] = [];
      const failures: string[] = [];
      s1.on("stanza", (s: Element) => handled1.push(s));
      s1.on("stanza-failed", (s: Element, err: Error) =>
        failures.push(`${err.message}: ${s.toString().slice(0, 500)}`),
      );
      s1.on("stanza-quarantined", (s: Element) => failures.push(`quarantined ${s.toString()}`));
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const bobErrors: string[] = [];
      bob.xmpp.on("error", (e: Error) => bobErrors.push(e.message));
      const bobIqs: Element[] = [];
      bob.xmpp.on("stanza", (s: Element) => {
        if (s.is("iq") && (s.attrs.type === "error" || s.attrs.type === "result")) bobIqs.push(s);
      });
      let s2: DurableSession | undefined;
      let store2: Store | undefined;
      // ejabberd sometimes resets alice's connection under this flood (seen in loaded CI runs,
      // "write ECONNRESET", no stream error; not reproduced with the same seed unloaded). A bare
      // session does not reconnect by itself; an app does (AppController): so does this test,
      // outside its own suspend window. Every assertion below (each control once, no forgery
      // stored, online at the end) still holds across such a resume.
      let testOffline = false;
      let lost = 0;
      s1.on("connection-lost", () => {
        lost++;
        setTimeout(() => {
          if (!testOffline && !s1.online) s1.connect().catch(() => {});
        }, 200);
      });
      try {
        expect(await s1.connect()).toBe("new");
        // An outgoing message whose origin-id the peer tries to spoof and fake a receipt for.
        const spoofOrigin = s1.sendMessage("carol@localhost", "to-carol");
        const r = prng(SEED);
        const gen = { lastIqId: "hiq-none", spoofOrigin, originSpoofed: 0 };
        const generated: Generated[] = [];
        for (let i = 0; i < STANZAS; i++) {
          const g = generate(r, i, gen);
          generated.push(g);
          if (bob.xmpp.status !== "online")
            throw new Error(`the server closed the peer's stream at stanza ${i}: ${bobErrors}`);
          await bob.xmpp.send(g.stanza);
          // Midway: drop alice's TCP while stanzas keep coming; they are replayed on resume.
          if (i === 550) {
            testOffline = true;
            await s1.suspend();
          }
          if (i === 600) {
            expect(await s1.connect()).toBe("resumed");
            testOffline = false;
          }
        }
        if (lost > 0) console.log(`hostile ${kind}: the server dropped alice's link ${lost}×`);
        await bob.send("alice@localhost", "fuzz-done");
        await until(() => countBody(store, `fuzz-done`) > 0 || undefined, "final marker", 90_000);
        await s1.idle();
        // Only the injected failure: no hostile stanza makes a handler throw.
        expect(failures, "no stanza handler may fail on hostile input").toEqual([
          expect.stringMatching(/^injected failure: <message [^>]*id="ctl-300"/),
        ]);
        expect(s1.online).toBe(true);

        // Every control message and every legit (stanza-id-spoofing) message: stored exactly once.
        const expected = generated.filter((g) => g.expect).map((g) => g.expect!);
        expect(expected.length).toBeGreaterThanOrEqual(22);
        for (const body of expected) expect(countBody(store, body), body).toBe(1);
        // Forged carbons / MAM results and error messages: never stored.
        const forged = generated.filter((g) => g.forged).map((g) => g.forged!);
        expect(forged.length).toBeGreaterThan(100);
        const leaked = store.sqlite
          .prepare(
            "SELECT body FROM messages WHERE body LIKE 'FORGED-%' OR body LIKE 'ERROR-MESSAGE-%'",
          )
          .all();
        expect(leaked).toEqual([]);
        // Spoofed stanza-ids are never taken as our archive's ids (MAM would resume after them).
        expect(
          store.sqlite
            .prepare(
              "SELECT stanza_id, stanza_id_by FROM messages WHERE stanza_id LIKE 'spoof-%' OR archive_id LIKE 'fmam-%'",
            )
            .all(),
        ).toEqual([]);
        const state = store.read((tx) => loadAccountState(tx, "alice"));
        expect(state.mam.lastStanzaId ?? "").not.toMatch(/^spoof-/);
        // The peer's receipt for alice's message to carol must not mark it received.
        const toCarol = store.sqlite
          .prepare(
            "SELECT delivery_state AS d, body FROM messages WHERE origin_id = ? AND direction = 'out'",
          )
          .get(spoofOrigin) as { d: string; body: string };
        expect(toCarol.body).toBe("to-carol");
        expect(toCarol.d).not.toBe("received");
        // Forged roster pushes from a stranger do not change the roster version.
        expect(state.rosterVersion).not.toBe("forged");

        // Hostile IQ get/set that reached alice: each answered once with service-unavailable.
        const fromBob = (s: Element) => (s.attrs.from ?? "").startsWith("bob@localhost");
        const requests = handled1.filter(
          (s) => s.is("iq") && fromBob(s) && (s.attrs.type === "get" || s.attrs.type === "set"),
        );
        expect(requests.length).toBeGreaterThan(50);
        // ≥ 1000 hostile stanzas actually reached the engine (the server drops or bounces some).
        expect(handled1.filter(fromBob).length).toBeGreaterThanOrEqual(1000);
        const want = new Map<string, number>();
        for (const q of requests) want.set(q.attrs.id ?? "", (want.get(q.attrs.id ?? "") ?? 0) + 1);
        const got = () => {
          const m = new Map<string, number>();
          // The server bounces some malformed IQs itself (bad-request, from alice's JID too).
          for (const a of bobIqs)
            if (
              a.attrs.from === ALICE_FULL &&
              want.has(a.attrs.id ?? "") &&
              a.getChild("error")?.getChild("service-unavailable", NS_STANZAS)
            )
              m.set(a.attrs.id ?? "", (m.get(a.attrs.id ?? "") ?? 0) + 1);
          return m;
        };
        await until(
          () => [...want].every(([id, n]) => (got().get(id) ?? 0) >= n) || undefined,
          "an answer to every hostile IQ",
          60_000,
        );
        if (lost > 0 || logs.some((e) => e.event === "drain-timeout")) {
          // The server did not acknowledge our answers before a drop (our suspend's drain timed
          // out, or ejabberd reset the connection as described above): resent after the resume
          // or on a new stream, some may arrive twice (XEP-0198 is at-least-once for what was
          // not acknowledged). Without a drop, exactly once.
          for (const [id, n] of want) expect(got().get(id), id).toBeGreaterThanOrEqual(n);
        } else expect(got()).toEqual(want);
        for (const a of bobIqs.filter((a) => want.has(a.attrs.id ?? "")))
          expect(a.attrs.type).toBe("error");
        // IQ results/errors with unknown ids are never answered (no error loops).
        expect(bobIqs.filter((a) => (a.attrs.id ?? "").startsWith("unk-"))).toEqual([]);

        // Inbound h = stanzas committed on this stream (one stream: new, then resumed).
        const after1 = store.read((tx) => loadAccountState(tx, "alice"));
        expect(after1.sm.inboundH).toBe(handled1.length);

        // A NEW session (new store handle, as another process) resumes: nothing is replayed.
        await s1.suspend();
        store2 = openStore({ path, role: "main" });
        s2 = new DurableSession(sessionOpts(store2));
        const handled2: Element[] = [];
        s2.on("stanza", (s: Element) => handled2.push(s));
        expect(await s2.connect()).toBe("resumed");
        await bob.send("alice@localhost", "after-resume");
        await until(() => countBody(store2!, "after-resume") > 0 || undefined, "after-resume");
        const seen = new Set(handled1.map((s) => s.toString()));
        expect(handled2.filter((s) => seen.has(s.toString())).map((s) => s.toString())).toEqual([]);
        for (const body of expected) expect(countBody(store2, body), body).toBe(1);
        expect(bobErrors).toEqual([]);
      } catch (err) {
        throw new Error(
          `hostile input (seed ${SEED}; rerun with LICHEN_FUZZ_SEED=${SEED}): ${(err as Error).message}\nlogs: ${JSON.stringify(logs.slice(-15)).slice(0, 3000)}`,
          { cause: err },
        );
      } finally {
        await s2?.close();
        await s1.close();
        await bob.stop();
        store2?.close();
        store.close();
      }
    },
    T,
  );

  it(
    "carbons and MAM results forged by the account's own other resource (full JID) are not stored; real carbons are",
    async () => {
      const store = openStore({ path: join(env.dir, `own-${kind}.db`), role: "main" });
      ensureAccount(store, { id: "alice", jid: "alice@localhost", resource: "phone" });
      const s = new DurableSession(sessionOpts(store));
      const desk = client({
        service: `xmpp://127.0.0.1:${env.server.c2sPort}`,
        domain: "localhost",
        username: "alice",
        password: "alicepw",
        resource: "desk",
      });
      desk.on("error", () => {});
      desk.reconnect.stop();
      try {
        expect(await s.connect()).toBe("new");
        await desk.start();
        await streamManagementEnabled(desk);
        await desk.send(xml("presence"));
        const forwarded = (body: string) =>
          xml(
            "forwarded",
            { xmlns: "urn:xmpp:forward:0" },
            xml("delay", { xmlns: "urn:xmpp:delay", stamp: "2001-01-01T00:00:00Z" }),
            xml(
              "message",
              { from: "carol@localhost/x", to: "alice@localhost", type: "chat" },
              xml("body", {}, body),
            ),
          );
        // XEP-0280 §11 and XEP-0313: copies come from the account's BARE JID (or no from) only.
        for (let i = 0; i < 5; i++) {
          await desk.send(
            xml(
              "message",
              { to: ALICE_FULL, type: "chat" },
              xml(
                i % 2 ? "sent" : "received",
                { xmlns: "urn:xmpp:carbons:2" },
                forwarded(`OWN-FORGED-CARBON-${i}`),
              ),
            ),
          );
          await desk.send(
            xml(
              "message",
              { to: ALICE_FULL },
              xml(
                "result",
                { xmlns: "urn:xmpp:mam:2", queryid: "q", id: `own-fmam-${i}` },
                forwarded(`OWN-FORGED-MAM-${i}`),
              ),
            ),
          );
        }
        // A real carbon: desk writes to bob; the server copies it to phone from alice's bare JID.
        await desk.send(
          xml(
            "message",
            { to: "bob@localhost", type: "chat", id: "real-1" },
            xml("body", {}, "real-carbon"),
          ),
        );
        await until(() => countBody(store, "real-carbon") > 0 || undefined, "real carbon stored");
        await s.idle();
        expect(
          store.sqlite.prepare("SELECT body FROM messages WHERE body LIKE 'OWN-FORGED-%'").all(),
        ).toEqual([]);
        expect(
          store.sqlite
            .prepare("SELECT direction AS d FROM messages WHERE body = 'real-carbon'")
            .get(),
        ).toEqual({ d: "out" });
      } finally {
        await desk.stop().catch(() => {});
        await s.close();
        store.close();
      }
    },
    T,
  );

  it(
    "corrupt rows (outbound_queue stanza, iq_handlers handler, account_state JSON): quarantined with the error, the session survives, nothing else lost",
    async () => {
      const path = join(env.dir, `corrupt-${kind}.db`);
      const storeLogs: Record<string, unknown>[] = [];
      const open = () =>
        openStore({
          path,
          role: "main",
          logger: (e) => storeLogs.push(e as Record<string, unknown>),
        });
      const stores: Store[] = [];
      const sessions: DurableSession[] = [];
      const session = () => {
        const store = open();
        stores.push(store);
        const s = new DurableSession(sessionOpts(store));
        sessions.push(s);
        return { store, s };
      };
      const quarantined = (store: Store) =>
        store.sqlite
          .prepare("SELECT table_name AS t, row_key AS k, raw, error FROM quarantine ORDER BY id")
          .all() as { t: string; k: string; raw: string; error: string }[];
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      try {
        const a = session();
        ensureAccount(a.store, { id: "alice", jid: "alice@localhost", resource: "phone" });
        expect(await a.s.connect()).toBe("new");
        await bob.send("alice@localhost", "pre-1");
        await until(() => countBody(a.store, "pre-1") > 0 || undefined, "pre-1 stored");
        await a.s.suspend();

        // Offline: two messages queued; then the disk "corrupts" q-1's queued stanza, a pending
        // IQ handler and a non-SM part of the account state.
        const q1 = a.s.sendMessage("bob@localhost", "q-1");
        a.s.sendMessage("bob@localhost", "q-2");
        const db = a.store.sqlite;
        const broken = "<message to='bob@localhost'><body>q-1 truncat";
        expect(
          db
            .prepare(
              "UPDATE outbound_queue SET stanza = ? WHERE account_id = 'alice' AND stanza LIKE ?",
            )
            .run(broken, `%${q1}%`).changes,
        ).toBe(1);
        db.prepare(
          // Sent to bob: only his answer may complete it (the sender check comes before parsing).
          "INSERT INTO iq_handlers (account_id, iq_id, handler, stream_key, peer, remaining_ticks, created_at) VALUES ('alice', 'corrupt-iq', ?, NULL, 'bob@localhost/desk', 100000, 0)",
        ).run('{"v":1,"name":');
        const row = db
          .prepare("SELECT state FROM account_state WHERE account_id = 'alice'")
          .get() as {
          state: string;
        };
        const st = JSON.parse(row.state) as Record<string, unknown>;
        st.features = "garbage";
        db.prepare("UPDATE account_state SET state = ? WHERE account_id = 'alice'").run(
          JSON.stringify(st),
        );
        a.store.close();

        // Another process resumes (the SM part of the state was intact).
        const b = session();
        expect(await b.s.connect()).toBe("resumed");
        await until(() => bob.received.some((m) => m.body === "q-2") || undefined, "bob gets q-2");
        await bob.xmpp.send(xml("iq", { to: ALICE_FULL, type: "result", id: "corrupt-iq" }));
        await bob.send("alice@localhost", "mid-1");
        await until(() => countBody(b.store, "mid-1") > 0 || undefined, "mid-1 stored");
        await b.s.idle();
        expect(b.s.online).toBe(true);
        let q = quarantined(b.store);
        expect(q.find((r) => r.t === "outbound_queue")?.raw).toBe(broken);
        expect(q.find((r) => r.t === "iq_handlers")?.k).toBe("alice/corrupt-iq");
        expect(q.find((r) => r.t === "account_state")?.error).toMatch(/features/);
        for (const r of q) expect(r.error.length).toBeGreaterThan(0);
        expect(
          b.store.sqlite
            .prepare("SELECT count(*) AS n FROM iq_handlers WHERE iq_id = 'corrupt-iq'")
            .get(),
        ).toEqual({ n: 0 });
        expect(bob.received.filter((m) => m.body?.startsWith("q-1"))).toEqual([]);

        // Offline again: messages arrive, one more is queued, then the state is not even JSON.
        await b.s.suspend();
        for (let i = 1; i <= 3; i++) await bob.send("alice@localhost", `gap-${i}`);
        b.s.sendMessage("bob@localhost", "q-3");
        const q4 = b.s.sendMessage("bob@localhost", "q-4");
        const broken4 = "<message to='bob@localhost'><body>q-4 &bogus;</body></message>";
        b.store.sqlite
          .prepare(
            "UPDATE outbound_queue SET stanza = ? WHERE account_id = 'alice' AND stanza LIKE ?",
          )
          .run(broken4, `%${q4}%`);
        b.store.sqlite
          .prepare("UPDATE account_state SET state = ? WHERE account_id = 'alice'")
          .run("{{{ not json");
        b.store.close();

        // No stream to resume: a new login, the queued message is still sent, MAM fills the gap.
        const c = session();
        // Sending still works before connecting, although the invalidated state's counters
        // restart at 0 below the sequence numbers still in the queue.
        const maxSeq = (
          c.store.sqlite
            .prepare("SELECT max(seq) AS m FROM outbound_queue WHERE account_id = 'alice'")
            .get() as { m: number }
        ).m;
        expect(maxSeq).toBeGreaterThan(0);
        const late = Array.from({ length: maxSeq + 1 }, (_, k) => `late-${k}`);
        for (const body of late) c.s.sendMessage("bob@localhost", body);
        const mamDone = new Promise<void>((resolve) => c.s.once("mam-complete", () => resolve()));
        expect(await c.s.connect()).toBe("new");
        await mamDone;
        await until(
          () => bob.received.some((m) => m.body === late.at(-1)) || undefined,
          "bob gets the late messages",
        );
        const order = bob.received.map((m) => m.body);
        expect(order.filter((b) => b === "q-3" || b?.startsWith("late-"))).toEqual([
          "q-3",
          ...late,
        ]);
        await until(() => bob.received.some((m) => m.body === "q-3") || undefined, "bob gets q-3");
        q = quarantined(c.store);
        expect(q.find((r) => r.t === "account_state" && r.raw === "{{{ not json")?.error).toMatch(
          /JSON/,
        );
        expect(q.filter((r) => r.t === "outbound_queue").map((r) => r.raw)).toEqual([
          broken,
          broken4,
        ]);
        expect(bob.received.filter((m) => m.body?.startsWith("q-4"))).toEqual([]);
        expect(storeLogs.map((e) => e.event)).toEqual(
          expect.arrayContaining(["store.account-state.corrupt", "store.quarantined"]),
        );
        await bob.send("alice@localhost", "post-1");
        await until(() => countBody(c.store, "post-1") > 0 || undefined, "post-1 stored");
        for (const body of ["pre-1", "mid-1", "gap-1", "gap-2", "gap-3", "post-1"])
          expect(countBody(c.store, body), body).toBe(1);
        for (const body of ["q-2", "q-3"])
          expect(
            bob.received.filter((m) => m.body === body),
            body,
          ).toHaveLength(1);
        expect(c.s.online).toBe(true);
      } finally {
        for (const s of sessions.reverse()) await s.close().catch(() => {});
        for (const s of stores) if (s.sqlite.open) s.close();
        await bob.stop();
      }
    },
    T,
  );
});

// Prosody only. The deep stanza: ejabberd 23.01 never relays it — its whole node dies on the input
// (checked: the VM's PID is gone), which would take the shared server down for the other tests.
describe("hostile input on prosody only", () => {
  const env = useEngineEnv(startProsody, { prefix: "lichen-hostile-deep-" });
  const sessionOpts = (store: Store) => ({ store, ...env.config() });

  // Client-side race, one server suffices.
  it(
    "suspend() right after a handler failure wins over the replay reconnect: offline until connect(), which resumes and replays",
    async () => {
      const store = openStore({ path: join(env.dir, "race.db"), role: "main" });
      ensureAccount(store, { id: "alice", jid: "alice@localhost", resource: "phone" });
      let thrown = false;
      const s = new DurableSession({
        ...sessionOpts(store),
        onStanza: (_ctx, st) => {
          if (!thrown && st.getChildText("body") === "boom") {
            thrown = true;
            throw new Error("injected failure");
          }
        },
      });
      let suspended: Promise<void> | undefined;
      // The app goes to the background at that very moment (e.g. iOS suspends it).
      s.on("stanza-failed", () => (suspended ??= s.suspend()));
      const onlines: string[] = [];
      s.on("online", (how: string) => onlines.push(how));
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      try {
        expect(await s.connect()).toBe("new");
        await bob.send("alice@localhost", "boom");
        // (until awaits what the predicate returns: test for the promise, do not return it.)
        await until(() => suspended !== undefined || undefined, "the failure and the suspend");
        await suspended;
        // Absence of a reconnect can only be checked over time: give it ample.
        await new Promise((r) => setTimeout(r, 2000));
        expect(s.online).toBe(false);
        expect(onlines).toEqual(["new"]);
        expect(countBody(store, "boom")).toBe(0);

        expect(await s.connect()).toBe("resumed");
        await until(() => countBody(store, "boom") > 0 || undefined, "boom replayed and stored");
        expect(countBody(store, "boom")).toBe(1);
      } finally {
        await s.close();
        await bob.stop();
        store.close();
      }
    },
    T,
  );

  it(
    "a stanza nested 30000 deep (too deep to serialize): counted and quarantined, an IQ still answered, nothing replayed after resume",
    async () => {
      const path = join(env.dir, "deep.db");
      const store = openStore({ path, role: "main" });
      ensureAccount(store, { id: "alice", jid: "alice@localhost", resource: "phone" });
      const s1 = new DurableSession(sessionOpts(store));
      const handled: Element[] = [];
      const quarantinedStanzas: Element[] = [];
      s1.on("stanza", (s: Element) => handled.push(s));
      s1.on("stanza-quarantined", (s: Element) => quarantinedStanzas.push(s));
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const bobIqs: Element[] = [];
      bob.xmpp.on("stanza", (s: Element) => s.is("iq") && bobIqs.push(s));
      let s2: DurableSession | undefined;
      let store2: Store | undefined;
      try {
        expect(await s1.connect()).toBe("new");
        // xmpp.js cannot even serialize it: written raw. An IQ is not archived, so Prosody relays it.
        // 30000 levels (~210 kB, under Prosody's 256 kB stanza limit) overflow the recursive
        // serializer even once V8 has optimized it (5000 did only while cold).
        const depth = 30_000;
        let tooDeep: Element = xml("x");
        for (let i = 1; i < depth; i++) tooDeep = xml("x", {}, tooDeep);
        expect(() => tooDeep.toString(), "precondition: too deep to serialize").toThrow(RangeError);
        await bob.xmpp.write(
          `<iq to='${ALICE_FULL}' type='get' id='deep-iq'><query xmlns='urn:evil:deep'>${"<x>".repeat(depth)}${"</x>".repeat(depth)}</query></iq>`,
        );
        await bob.send("alice@localhost", "after-deep");
        await until(() => countBody(store, "after-deep") > 0 || undefined, "after-deep stored");
        await s1.idle();
        await until(() => quarantinedStanzas.length > 0 || undefined, "the deep IQ quarantined");
        expect(quarantinedStanzas.map((s) => s.attrs.id)).toEqual(["deep-iq"]);
        const q = store.sqlite
          .prepare("SELECT raw, error FROM quarantine WHERE table_name = 'inbound_stanza'")
          .all() as { raw: string; error: string }[];
        expect(q).toHaveLength(1);
        expect(q[0]!.error).toMatch(/too deep/);
        expect(q[0]!.raw).toMatch(/^<iq [^>]*id="deep-iq"/);
        const reply = await until(
          () => bobIqs.find((i) => i.attrs.id === "deep-iq"),
          "an error answer to the deep IQ",
        );
        expect(reply.attrs.type).toBe("error");
        expect(reply.getChild("error")?.getChild("service-unavailable", NS_STANZAS)).toBeTruthy();
        // h counts it: every handled stanza plus the quarantined one.
        const st = store.read((tx) => loadAccountState(tx, "alice"));
        expect(st.sm.inboundH).toBe(handled.length + 1);

        // Another session resumes from the DB: the server replays nothing.
        await s1.suspend();
        store2 = openStore({ path, role: "main" });
        s2 = new DurableSession(sessionOpts(store2));
        const handled2: Element[] = [];
        s2.on("stanza", (s: Element) => handled2.push(s));
        expect(await s2.connect()).toBe("resumed");
        await bob.send("alice@localhost", "after-deep-resume");
        await until(
          () => countBody(store2!, "after-deep-resume") > 0 || undefined,
          "after-deep-resume stored",
        );
        await s2.idle();
        expect(handled2.map((s) => s.getChildText("body"))).toEqual(["after-deep-resume"]);
        expect(countBody(store2, "after-deep")).toBe(1);
      } finally {
        await s2?.close();
        await s1.close();
        await bob.stop();
        store2?.close();
        store.close();
      }
    },
    T,
  );
});
