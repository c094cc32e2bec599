import { createRequire } from "node:module";
import { xml, type Element, type SessionPlugin } from "@lichen/engine";
import { startEjabberd, startProsody, startTestPeer, type TestPeer } from "@lichen/test-servers";
import { describe, expect, it } from "vitest";
import { NS_OMEMO, OmemoError } from "../src/index.js";
import { signal } from "../src/libsignal.js";
import { online, openDevice, publishIq, until, useServer, type Device } from "./helpers.js";

const T = 180_000;
// libsignal's protobuf codec, to forge a PreKeyWhisperMessage the way a replaying attacker would.
const protobufs = createRequire(import.meta.url)("libsignal/src/protobufs") as {
  PreKeyWhisperMessage: {
    decode(b: Buffer): { baseKey: Buffer };
    encode(m: unknown): { finish(): Uint8Array };
  };
};

function copy(e: Element): Element {
  return xml(
    e.name,
    { ...e.attrs },
    ...e.children.map((c) => (typeof c === "string" ? c : copy(c))),
  );
}

/** Runs in front of the OMEMO plugin: rewrites the next encrypted message as the network could. */
class Tamperer implements SessionPlugin {
  readonly name = "tamper";
  next: ((encrypted: Element, message: Element) => void) | null = null;
  async prepare(stanza: Element) {
    const f = this.next;
    if (!f || !stanza.is("message") || !stanza.getChild("encrypted", NS_OMEMO)) return null;
    this.next = null;
    const forged = copy(stanza);
    f(forged.getChild("encrypted", NS_OMEMO)!, forged);
    return { stanza: forged };
  }
}

function setText(el: Element, text: string): void {
  el.children = [text];
}

describe.each([
  ["prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const)("OMEMO bad input on %s", (_name, start) => {
  let alice: Device;
  let bob: Device;
  let carol: Device;
  let mallory: TestPeer;
  const tamper = new Tamperer();
  const env = useServer(start, ["alice", "bob", "carol", "dave", "mallory"], {
    timeoutMs: T,
    setUp: async ({ server, devices, stops }) => {
      alice = await online(openDevice(server, "alice", "phone", { before: [tamper] }));
      bob = await online(openDevice(server, "bob", "laptop"));
      carol = await online(openDevice(server, "carol", "phone"));
      devices.push(alice, bob, carol);
      mallory = await startTestPeer(server.c2sPort, "mallory", "mallorypw");
      stops.push(() => mallory.stop());
      // A session both ways, and alice knows bob's device list.
      await alice.omemo.send("bob@localhost", "hi bob");
      await until(() => bob.messages("alice@localhost").length === 1, "bob has alice's message");
      await bob.omemo.send("alice@localhost", "hi alice");
      await until(() => alice.messages("bob@localhost").length === 2, "alice has bob's reply");
    },
  });

  const sessionRow = (jid: string) =>
    alice.store.sqlite.prepare("SELECT record FROM omemo_sessions WHERE jid = ?").get(jid);
  const lastFrom = (jid: string) => alice.messages(jid).at(-1)!;
  const quarantined = () =>
    alice.store.sqlite
      .prepare("SELECT table_name AS tableName, raw, error FROM quarantine ORDER BY id")
      .all() as { tableName: string; raw: string; error: string }[];
  /** Bob sends `body` with `f` applied on the way; alice stores what she makes of it. */
  async function bobSendsForged(
    body: string,
    f: (enc: Element, message: Element) => void,
  ): Promise<void> {
    const n = alice.messages("bob@localhost").length;
    tamper.next = f;
    await bob.omemo.send("alice@localhost", body);
    await until(() => alice.messages("bob@localhost").length === n + 1, "alice stored it");
  }
  /** The session still works: bob's next message is decrypted. */
  async function stillDecrypts(from: Device, body: string): Promise<void> {
    await from.omemo.send("alice@localhost", body);
    await until(() => lastFrom(from.jid).body === body, `alice decrypts "${body}"`);
  }

  it(
    "a key element for another device only: failure stored, stanza kept, ratchet untouched",
    async () => {
      const before = sessionRow("bob@localhost");
      await bobSendsForged("not for you", (enc) => {
        for (const k of enc.getChild("header")!.getChildren("key")) k.attrs.rid = "12345";
      });
      expect(lastFrom("bob@localhost")).toEqual({
        body:
          "could not decrypt (OMEMO not-for-this-device): no key for device " +
          `${alice.omemo.deviceId} (keys for 12345)`,
        encrypted: 1,
        direction: "in",
      });
      expect(sessionRow("bob@localhost")).toEqual(before);
      const q = quarantined().at(-1)!;
      expect(q.tableName).toBe("omemo_message");
      expect(q.error).toMatch(/^could not decrypt: not-for-this-device/);
      expect(q.raw).toContain(NS_OMEMO);
      await stillDecrypts(bob, "after the foreign key");
    },
    T,
  );

  it(
    "a truncated and a tampered payload (GCM tag mismatch): failure stored, later messages fine",
    async () => {
      await bobSendsForged("truncated", (enc) => {
        const p = enc.getChild("payload")!;
        setText(p, Buffer.from(p.getText(), "base64").subarray(0, 3).toString("base64"));
      });
      expect(lastFrom("bob@localhost").body).toBe(
        "could not decrypt (OMEMO payload): payload authentication failed (GCM tag mismatch)",
      );
      await bobSendsForged("tampered", (enc) => {
        const p = enc.getChild("payload")!;
        const b = Buffer.from(p.getText(), "base64");
        b[0] = b[0]! ^ 1;
        setText(p, b.toString("base64"));
      });
      expect(lastFrom("bob@localhost").body).toMatch(/GCM tag mismatch/);
      await stillDecrypts(bob, "after the tampered payloads");
    },
    T,
  );

  it(
    "a stanza-id forged by the sender with the id of a stored message does not stop decryption",
    async () => {
      const stored = alice.store.sqlite
        .prepare("SELECT stanza_id AS id FROM messages WHERE stanza_id IS NOT NULL LIMIT 1")
        .get() as { id: string };
      await bobSendsForged("with a forged stanza-id", (_enc, message) => {
        message.append(
          xml("stanza-id", { xmlns: "urn:xmpp:sid:0", by: "bob@localhost", id: stored.id }),
        );
      });
      expect(lastFrom("bob@localhost").body).toBe("with a forged stanza-id");
    },
    T,
  );

  it(
    "a message from a device not in the sender's device list",
    async () => {
      const before = sessionRow("bob@localhost");
      await bobSendsForged("from a ghost device", (enc) => {
        enc.getChild("header")!.attrs.sid = "777";
      });
      expect(lastFrom("bob@localhost").body).toBe(
        "could not decrypt (OMEMO unknown-device): device 777 is not in bob@localhost's device list",
      );
      expect(sessionRow("bob@localhost")).toEqual(before);
      await stillDecrypts(bob, "after the ghost");
    },
    T,
  );

  it(
    "a PreKeyWhisperMessage for a prekey already used: failure, no new session, no prekey reused",
    async () => {
      await carol.omemo.send("alice@localhost", "carol's first (prekey)");
      await until(() => alice.messages("carol@localhost").length === 1, "alice has carol's first");
      expect(lastFrom("carol@localhost").body).toBe("carol's first (prekey)");
      const before = sessionRow("carol@localhost");
      // Carol's next message still carries the same prekey id; with a new base key it asks for a
      // new session from that (consumed) prekey, as a replay of a captured first message would.
      tamper.next = (enc) => {
        const key = enc
          .getChild("header")!
          .getChildren("key")
          .find((k) => k.attrs.rid === String(alice.omemo.deviceId))!;
        expect(key.attrs.prekey).toBe("true");
        const data = Buffer.from(key.getText(), "base64");
        const msg = protobufs.PreKeyWhisperMessage.decode(data.subarray(1));
        msg.baseKey = signal.curve.generateKeyPair().pubKey;
        setText(
          key,
          Buffer.concat([
            data.subarray(0, 1),
            protobufs.PreKeyWhisperMessage.encode(msg).finish(),
          ]).toString("base64"),
        );
      };
      // The failure's commit (seen before any I/O: a repair then needs a bundle fetch).
      let atCommit: unknown = null;
      const onStored = () => (atCommit = sessionRow("carol@localhost"));
      alice.session.once("message-stored", onStored);
      await carol.omemo.send("alice@localhost", "replayed prekey");
      await until(() => alice.messages("carol@localhost").length === 2, "alice stored it");
      expect(lastFrom("carol@localhost").body).toBe(
        "could not decrypt (OMEMO signal): Invalid PreKey ID",
      );
      expect(atCommit).toEqual(before);
      await stillDecrypts(carol, "carol goes on");
    },
    T,
  );

  it(
    "session repair: alice lost her session with bob; his next message fails, she sends a key transport element, the following one decrypts",
    async () => {
      alice.store.sqlite.prepare("DELETE FROM omemo_sessions WHERE jid = 'bob@localhost'").run();
      const bobRow = () =>
        JSON.stringify(
          bob.store.sqlite
            .prepare("SELECT record FROM omemo_sessions WHERE jid = 'alice@localhost'")
            .get(),
        );
      await bob.omemo.send("alice@localhost", "lost on alice's side");
      const sent = bobRow(); // (the repair cannot have arrived: no I/O ran since the commit)
      await until(
        () => lastFrom("bob@localhost").body.startsWith("could not decrypt (OMEMO signal)"),
        "alice stores the failure",
      );
      await until(() => bobRow() !== sent, "bob takes the new session from alice's key transport");
      expect(bob.messages("alice@localhost").at(-1)!.body).not.toBe(""); // no empty message stored
      await stillDecrypts(bob, "after the repair");
    },
    T,
  );

  it(
    "a failed PreKeyWhisperMessage (prekey already used): failures stored, one repair for the device, its next message decrypts",
    async () => {
      // Key transport elements (no payload) alice sends dave, counted before his plugin sees them.
      let repairsReceived = 0;
      const counter: SessionPlugin = {
        name: "repair-counter",
        prepare: async (stanza) => {
          const enc = stanza.getChild("encrypted", NS_OMEMO);
          if (stanza.attrs.from?.startsWith("alice@") && enc && !enc.getChild("payload"))
            repairsReceived++;
          return null;
        },
      };
      const dave = await online(openDevice(env.server, "dave", "phone", { before: [counter] }));
      env.devices.push(dave);
      await dave.omemo.send("alice@localhost", "dave's first (prekey)");
      await until(() => alice.messages("dave@localhost").length === 1, "alice has dave's first");
      expect(lastFrom("dave@localhost").body).toBe("dave's first (prekey)");
      // Alice loses the session (a restored backup) while dave, who never had an answer, still
      // sends PreKeyWhisperMessages for the prekey she consumed. Both arrive at once.
      alice.store.sqlite.prepare("DELETE FROM omemo_sessions WHERE jid = 'dave@localhost'").run();
      await alice.session.suspend();
      await dave.omemo.send("alice@localhost", "lost 1");
      await dave.omemo.send("alice@localhost", "lost 2");
      await dave.session.syncBarrier();
      await alice.session.connect();
      await until(() => alice.messages("dave@localhost").length === 3, "alice stores both");
      expect(
        alice
          .messages("dave@localhost")
          .slice(1)
          .map((m) => m.body),
      ).toEqual([
        "could not decrypt (OMEMO signal): Invalid PreKey ID",
        "could not decrypt (OMEMO signal): Invalid PreKey ID",
      ]);
      const kept = quarantined().filter((q) => q.raw.includes("dave@localhost"));
      expect(kept.map((q) => q.error)).toEqual([
        "could not decrypt: signal: Invalid PreKey ID",
        "could not decrypt: signal: Invalid PreKey ID",
      ]);
      await until(() => repairsReceived === 1, "dave gets alice's key transport");
      expect(
        alice.store.sqlite
          .prepare("SELECT jid FROM omemo_repairs WHERE jid = 'dave@localhost'")
          .all(),
      ).toEqual([{ jid: "dave@localhost" }]);
      expect(
        alice.store.sqlite.prepare("SELECT count(*) AS n FROM omemo_pending_work").get(),
      ).toEqual({ n: 0 });
      await stillDecrypts(dave, "after the prekey repair");
      // Another failure soon after the repair (as a message sent before dave got it would be)
      // queues none: the last repair is recent.
      tamper.next = (enc) => {
        const key = enc
          .getChild("header")!
          .getChildren("key")
          .find((k) => k.attrs.rid === String(alice.omemo.deviceId))!;
        const data = Buffer.from(key.getText(), "base64");
        data[data.length - 1] = data[data.length - 1]! ^ 1; // its MAC
        setText(key, data.toString("base64"));
      };
      await dave.omemo.send("alice@localhost", "broken in flight");
      await until(() => alice.messages("dave@localhost").length === 5, "alice stores it");
      expect(lastFrom("dave@localhost").body).toMatch(/^could not decrypt \(OMEMO signal\)/);
      expect(
        alice.store.sqlite.prepare("SELECT count(*) AS n FROM omemo_pending_work").get(),
      ).toEqual({ n: 0 });
      await stillDecrypts(dave, "dave goes on");
      expect(repairsReceived).toBe(1);
    },
    T,
  );

  /** Mallory publishes OMEMO nodes by hand (open access, as a real client would). */
  async function malloryPublishes(node: string, payload: Element): Promise<void> {
    await mallory.xmpp.iqCaller.request(publishIq(node, payload, { open: true }));
  }
  const list = (ids: string[]) =>
    xml("list", { xmlns: NS_OMEMO }, ...ids.map((id) => xml("device", { id })));
  const sendError = (to: string) =>
    alice.omemo.send(to, "to mallory").then(
      () => {
        throw new Error("send should have failed");
      },
      (e: unknown) => e as OmemoError,
    );

  it(
    "a bundle with a wrong signature: no session is built and nothing is sent",
    async () => {
      const identity = signal.curve.generateKeyPair();
      const spk = signal.curve.generateKeyPair();
      const wrong = signal.curve.calculateSignature(
        identity.privKey,
        Buffer.from("something else"),
      );
      await malloryPublishes(`${NS_OMEMO}.devicelist`, list(["4242"]));
      await malloryPublishes(
        `${NS_OMEMO}.bundles:4242`,
        xml(
          "bundle",
          { xmlns: NS_OMEMO },
          xml("signedPreKeyPublic", { signedPreKeyId: "1" }, spk.pubKey.toString("base64")),
          xml("signedPreKeySignature", {}, wrong.toString("base64")),
          xml("identityKey", {}, identity.pubKey.toString("base64")),
          xml(
            "prekeys",
            {},
            xml(
              "preKeyPublic",
              { preKeyId: "1" },
              signal.curve.generateKeyPair().pubKey.toString("base64"),
            ),
          ),
        ),
      );
      const err = await sendError("mallory@localhost");
      expect(err).toBeInstanceOf(OmemoError);
      expect(err.code).toBe("no-devices");
      expect(err.message).toContain(
        "signed prekey signature of mallory@localhost device 4242 is wrong",
      );
      expect(sessionRow("mallory@localhost")).toBeUndefined();
      expect(alice.messages("mallory@localhost")).toEqual([]);
    },
    T,
  );

  it(
    "a device list with thousands of ids, or with non-numeric ids, is refused as a whole",
    async () => {
      await malloryPublishes(
        `${NS_OMEMO}.devicelist`,
        list(Array.from({ length: 3000 }, (_, i) => String(i + 1))),
      );
      let err = await sendError("mallory@localhost");
      expect(err.code).toBe("bad-device-list");
      expect(err.message).toBe("device list has 3000 devices (at most 64 accepted)");
      await malloryPublishes(`${NS_OMEMO}.devicelist`, list(["4242", "12abc"]));
      err = await sendError("mallory@localhost");
      expect(err.code).toBe("bad-device-list");
      expect(err.message).toBe('device id "12abc" is not 1..2^31-1');
      // The earlier, valid list stays what alice knows.
      expect(alice.omemo.devices("mallory@localhost")).toEqual([4242]);
      await stillDecrypts(bob, "alice is still fine");
    },
    T,
  );
});
