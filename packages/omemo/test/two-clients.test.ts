import { startEjabberd, startProsody } from "@lichen/test-servers";
import { addShareOutboxItem, listChats, listShareOutbox, loadAccountState } from "@lichen/store";
import { EncryptionRequiredError, sendShareOutbox } from "@lichen/engine";
import { describe, expect, it, vi } from "vitest";
import { FALLBACK_BODY, NODE_DEVICELIST, NS_OMEMO, OmemoError } from "../src/index.js";
import { NS_PUBSUB_EVENT } from "../src/wire.js";
import { online, openDevice, subscribeMutually, until, useServer, type Device } from "./helpers.js";

const T = 180_000;

describe.each([
  ["prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const)("OMEMO between two Lichen clients on %s", (_name, start) => {
  const env = useServer(start, ["alice", "bob", "carol", "dave", "erin"]);
  const devices = env.devices;
  const device = (user: string, resource: string, o: Parameters<typeof openDevice>[3] = {}) => {
    const d = openDevice(env.server, user, resource, o);
    devices.push(d);
    return online(d);
  };

  it(
    "first message (prekey), replies both ways, a second device of alice, carbons of own messages",
    async () => {
      const alice = await device("alice", "phone");
      const bob = await device("bob", "laptop");
      const bobId = bob.omemo.deviceId!;

      // What bob's server gets is ciphertext with the fallback body, EME and <store/>.
      const wire: string[] = [];
      bob.session.on("stanza", (el) => {
        if (el.is("message") && el.getChild("encrypted", NS_OMEMO)) wire.push(el.toString());
      });
      const first = await alice.omemo.send("bob@localhost", "hello bob (prekey)");
      expect(first.devices).toEqual([{ jid: "bob@localhost", deviceId: bobId }]);
      await until(
        () => bob.messages("alice@localhost").length === 1,
        "bob stores the first message",
      );
      expect(bob.messages("alice@localhost")).toEqual([
        { body: "hello bob (prekey)", encrypted: 1, direction: "in" },
      ]);
      expect(wire[0]).toContain(`prekey="true"`);
      expect(wire[0]).toContain(FALLBACK_BODY);
      expect(wire[0]).toContain("urn:xmpp:eme:0");
      expect(wire[0]).toContain("urn:xmpp:hints");
      expect(wire[0]).not.toContain("hello bob");
      // The used prekey is replaced and the bundle republished by bob's main app.
      const unusedPreKeys = () =>
        (
          bob.store.sqlite
            .prepare("SELECT count(*) AS n FROM omemo_prekeys WHERE consumed_at IS NULL")
            .get() as { n: number }
        ).n;
      await until(() => unusedPreKeys() === 100, "bob refills its prekeys");
      // Alice's message is stored (plaintext, encrypted flag) on her side too.
      expect(alice.messages("bob@localhost")).toEqual([
        { body: "hello bob (prekey)", encrypted: 1, direction: "out" },
      ]);

      // Each waits for the previous one: the chat order is the order of arrival.
      const has = (d: Device, chat: string, body: string) =>
        until(() => d.messages(chat).some((m) => m.body === body), `${d.jid} has "${body}"`);
      await bob.omemo.send("alice@localhost", "hi alice, reply 1");
      await has(alice, "bob@localhost", "hi alice, reply 1");
      await alice.omemo.send("bob@localhost", "second from alice");
      await has(bob, "alice@localhost", "second from alice");
      await bob.omemo.send("alice@localhost", "reply 2");
      await until(() => alice.messages("bob@localhost").length === 4, "alice has all four");
      await until(() => bob.messages("alice@localhost").length === 4, "bob has all four");
      expect(alice.messages("bob@localhost").map((m) => m.body)).toEqual([
        "hello bob (prekey)",
        "hi alice, reply 1",
        "second from alice",
        "reply 2",
      ]);
      // BTBV: each side recorded the other's identity, blindly trusted.
      expect(alice.omemo.fingerprints("bob@localhost")).toEqual([
        {
          jid: "bob@localhost",
          deviceId: bobId,
          fingerprint: bob.omemo.ownFingerprint(),
          trust: "trusted",
        },
      ]);

      // A second device of alice: bob's next message is encrypted for both, and what alice's
      // phone sends reaches her tablet as a carbon it can decrypt.
      const tablet = await device("alice", "tablet");
      const toAlice = await bob.omemo.send("alice@localhost", "to both of alice's devices");
      expect(toAlice.devices.map((d) => d.deviceId).sort()).toEqual(
        [alice.omemo.deviceId!, tablet.omemo.deviceId!].sort(),
      );
      await until(
        () => tablet.messages("bob@localhost").some((m) => m.body === "to both of alice's devices"),
        "tablet decrypts bob's message",
      );
      await until(
        () => alice.messages("bob@localhost").some((m) => m.body === "to both of alice's devices"),
        "phone decrypts bob's message",
      );
      const fromPhone = await alice.omemo.send("bob@localhost", "sent from the phone");
      expect(fromPhone.devices.map((d) => d.deviceId).sort()).toEqual(
        [bobId, tablet.omemo.deviceId!].sort(),
      );
      await until(
        () =>
          tablet
            .messages("bob@localhost")
            .some(
              (m) => m.body === "sent from the phone" && m.direction === "out" && m.encrypted === 1,
            ),
        "tablet decrypts the carbon of the phone's message",
      );
      await until(
        () => bob.messages("alice@localhost").some((m) => m.body === "sent from the phone"),
        "bob decrypts it",
      );
      for (const d of [alice, bob, tablet])
        expect(d.store.sqlite.prepare("SELECT raw, error FROM quarantine").all()).toEqual([]);
    },
    T,
  );

  it(
    "signed prekey rotation: publish replaces it and keeps the previous one, the bundle carries the new one, the running session goes on",
    async () => {
      // Rotates at every publish (max age 0), as it would after a week.
      const carol = await device("carol", "phone", { omemo: { signedPreKeyMaxAgeMs: 0 } });
      const bob = await device("bob", "rotation");
      const spks = () =>
        (
          carol.store.sqlite
            .prepare("SELECT key_id AS id FROM omemo_signed_prekeys ORDER BY key_id")
            .all() as { id: number }[]
        ).map((r) => r.id);
      const published = await bob.omemo.fetchBundle("carol@localhost", carol.omemo.deviceId!);
      expect(spks()).toEqual([1, 2]); // generated 1, rotated to 2 at the first publish
      expect(published.signedPreKey.keyId).toBe(2);
      await bob.omemo.send("carol@localhost", "built on signed prekey 2");
      await until(() => carol.messages("bob@localhost").length === 1, "carol decrypts");
      // Bob's prekey message used one of carol's prekeys: the app refills and republishes on its
      // own (rotating too, at max age 0). Let that finish, or the explicit publish below may join
      // it (publish() runs once at a time) or come after it: one rotation or two, by timing.
      const refilled = () => {
        const st = carol.store.read((tx) => loadAccountState(tx, carol.session.accountId)).omemo;
        return !st.preKeysNeedRefill && st.bundlePublished;
      };
      await until(refilled, "carol's own refill publish");
      const [, current] = spks();
      expect(current).toBeGreaterThanOrEqual(2);
      await carol.omemo.publish(); // rotates to current + 1, keeps current for bundles fetched before
      expect(spks()).toEqual([current, current! + 1]);
      const publishes = vi.spyOn(carol.omemo, "publish");
      expect(
        (await bob.omemo.fetchBundle("carol@localhost", carol.omemo.deviceId!)).signedPreKey.keyId,
      ).toBe(current! + 1);
      // Bob's session still has carol's old signed prekey pending (she never answered).
      await bob.omemo.send("carol@localhost", "still on the old one");
      await until(() => carol.messages("bob@localhost").length === 2, "carol decrypts again");
      // That was a PreKeyWhisperMessage too (bob goes on sending them until carol replies), but
      // for the session carol already built: no prekey consumed, so no refill, no republication
      // (which, at max age 0, would also have rotated the signed prekey). Publication runs right
      // after the commit that stored the message, so it would show here already.
      expect(publishes).not.toHaveBeenCalled();
      expect(spks()).toEqual([current, current! + 1]);
      expect(carol.messages("bob@localhost").map((m) => m.body)).toEqual([
        "built on signed prekey 2",
        "still on the old one",
      ]);
    },
    T,
  );
});

describe.each([
  ["prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const)("the per-chat OMEMO setting on %s", (_name, start) => {
  const env = useServer(start, ["alice", "bob", "carol"]);
  const devices = env.devices;

  it(
    "on: plain sends are refused (session.send), a share to a contact without devices fails clearly, sendMessage encrypts or fails clearly; off: plain again",
    async () => {
      const alice = openDevice(env.server, "alice", "phone");
      const bob = openDevice(env.server, "bob", "laptop");
      devices.push(alice, bob);
      await online(alice);
      await online(bob);
      const outgoing = () =>
        alice.store.sqlite
          .prepare("SELECT count(*) AS n FROM messages WHERE direction = 'out'")
          .get() as { n: number };
      const queued = () =>
        alice.store.sqlite
          .prepare("SELECT count(*) AS n FROM outbound_queue WHERE stanza LIKE '<message%'")
          .get() as {
          n: number;
        };

      expect(alice.omemo.isChatEncrypted(bob.jid)).toBe(false);
      alice.omemo.setChatEncrypted(bob.jid, true);
      alice.omemo.setChatEncrypted("carol@localhost", true); // carol has no OMEMO device
      expect(alice.omemo.isChatEncrypted(`${bob.jid}/laptop`)).toBe(true);
      expect(bob.omemo.isChatEncrypted(alice.jid)).toBe(false); // per account
      expect(listChats(alice.store, "alice").find((c) => c.jid === bob.jid)?.omemo).toBe(true);

      const before = { out: outgoing(), queue: queued() };
      let refused: unknown = null;
      try {
        alice.session.send(bob.jid, "in the clear?");
      } catch (e) {
        refused = e;
      }
      expect(refused).toBeInstanceOf(EncryptionRequiredError);
      expect((refused as EncryptionRequiredError).chat).toBe(bob.jid);
      // A shared text to an encrypted chat is encrypted by the main app (share.test.ts); to a
      // recipient without devices it fails with the reason, nothing stored or queued.
      alice.store.write((tx) =>
        addShareOutboxItem(tx, {
          v: 1,
          id: "share-1",
          accountId: "alice",
          to: "carol@localhost",
          createdAt: 1,
          content: { kind: "text", text: "shared in the clear?" },
        }),
      );
      expect(sendShareOutbox(alice.store, alice.session)).toEqual([]);
      const failedShares = () =>
        alice.store.write((tx) => listShareOutbox(tx, ["failed"])).map((e) => [e.item.id, e.error]);
      await until(() => failedShares().length === 1, "the share to carol fails");
      expect(failedShares()).toEqual([
        ["share-1", expect.stringMatching(/^no-devices: .*carol@localhost/)],
      ]);
      const noDevices = await alice.omemo
        .sendMessage("carol@localhost", "hi carol")
        .catch((e: unknown) => e);
      expect(noDevices).toBeInstanceOf(OmemoError);
      expect((noDevices as OmemoError).code).toBe("no-devices");
      expect((noDevices as OmemoError).message).toMatch(/carol@localhost/);
      expect({ out: outgoing(), queue: queued() }).toEqual(before); // nothing stored or queued

      const sent = await alice.omemo.sendMessage(bob.jid, "encrypted by the setting");
      expect(sent.omemo?.devices).toEqual([{ jid: bob.jid, deviceId: bob.omemo.deviceId! }]);
      await until(() => bob.messages(alice.jid).length === 1, "bob gets it");
      expect(bob.messages(alice.jid)).toEqual([
        { body: "encrypted by the setting", encrypted: 1, direction: "in" },
      ]);

      alice.omemo.setChatEncrypted(bob.jid, false);
      const plain = await alice.omemo.sendMessage(bob.jid, "plain again");
      expect(plain.omemo).toBeNull();
      await until(() => bob.messages(alice.jid).length === 2, "bob gets the plain one");
      expect(bob.messages(alice.jid)[1]).toEqual({
        body: "plain again",
        encrypted: 0,
        direction: "in",
      });
    },
    T,
  );
});

// Both servers push a contact's device-list changes to the full JIDs whose caps (our presence's
// <c/>, answered by our disco#info) include the +notify feature. Only the list current when the
// subscription becomes mutual differs: Prosody sends it, ejabberd 23.01 does not (see
// Omemo.fetchUnknownDeviceList), so the app fetches a list it never had once.
describe.each([
  ["prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const)("OMEMO device-list notifications on %s", (_name, start) => {
  const env = useServer(start, ["dave", "erin"]);
  const devices = env.devices;
  const device = (user: string, resource: string) => {
    const d = openDevice(env.server, user, resource);
    devices.push(d);
    return online(d);
  };

  it(
    "a contact's new device is learnt from its PEP notification (+notify in our caps), no fetch",
    async () => {
      const dave = await device("dave", "phone");
      const erin = await device("erin", "phone");
      // Device-list events from erin's PEP service, as dave's session committed them.
      const events: string[] = [];
      dave.session.on("stanza", (el) => {
        const items = el.getChild("event", NS_PUBSUB_EVENT)?.getChild("items");
        if (el.attrs.from === "erin@localhost" && items?.attrs.node === NODE_DEVICELIST)
          events.push(items.toString());
      });
      await subscribeMutually(dave, erin);
      const erinIds = () => dave.omemo.devices("erin@localhost").sort();
      await until(() => erinIds().length === 1, "dave learns erin's list");
      expect(erinIds()).toEqual([erin.omemo.deviceId!]);
      // From here on, any fetch by dave would hide a missing notification.
      const fetched: string[] = [];
      const fetchDeviceList = dave.omemo.fetchDeviceList.bind(dave.omemo);
      dave.omemo.fetchDeviceList = (jid) => {
        fetched.push(jid);
        return fetchDeviceList(jid);
      };
      const tablet = await device("erin", "tablet");
      await until(() => erinIds().length === 2, "dave learns erin's new device from PEP");
      expect(erinIds()).toEqual([erin.omemo.deviceId!, tablet.omemo.deviceId!].sort());
      expect(fetched).toEqual([]);
      expect(events.some((e) => e.includes(`id="${tablet.omemo.deviceId!}"`))).toBe(true);
      // Erin's first device learnt its sibling the same way.
      await until(() => erin.omemo.devices("erin@localhost").length === 2, "erin's own list");
    },
    T,
  );
});
