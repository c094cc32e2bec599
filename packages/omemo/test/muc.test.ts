// MUC OMEMO between two Lichen clients in a non-anonymous members-only room (as Conversations and
// Dino require), live and through the room's archive; a semi-anonymous room is refused.
import { randomBytes } from "node:crypto";
import {
  EncryptionRequiredError,
  handlePush,
  joinRoom,
  leaveRoom,
  xml,
  type Element,
} from "@lichen/engine";
import { openStore } from "@lichen/store";
import { startEjabberd, startProsody } from "@lichen/test-servers";
import { PERSISTENT_ROOM, roomConfigForm } from "@lichen/test-kit";
import { describe, expect, it } from "vitest";
import { FALLBACK_BODY, NS_OMEMO, OmemoError, omemo } from "../src/index.js";
import { online, openDevice, until, useServer, type Device } from "./helpers.js";

const T = 180_000;
const NS_MUC = "http://jabber.org/protocol/muc";

/** A muc#owner configuration form with these fields. */
const roomConfig = (fields: Record<string, string>): Element => roomConfigForm(xml, fields);

async function iqSet(d: Device, to: string, payload: Element): Promise<void> {
  const res = await d.omemo.request(xml("iq", { type: "set", to }, payload));
  if (res.attrs.type !== "result") throw new Error(`${to} refused: ${res.toString()}`);
}

/** Joins (creating it if needed) and waits for our own occupant presence. */
async function join(d: Device, room: string, nick: string): Promise<void> {
  const joined = new Promise<void>((resolve) =>
    d.session.on("room-joined", (r) => r === room && resolve()),
  );
  d.session.write((ctx) => joinRoom(ctx, room, nick));
  await joined;
}

describe.each([
  ["prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const)("OMEMO in a group chat on %s", (name, start) => {
  const env = useServer(start, ["alice", "bob", "carol"]);
  const devices = env.devices;
  const device = (user: string, resource: string, o: Parameters<typeof openDevice>[3] = {}) => {
    const d = openDevice(env.server, user, resource, o);
    devices.push(d);
    return online(d);
  };
  const roomName = (kind: string) =>
    `omemo-${kind}-${name}-${randomBytes(3).toString("hex")}@${env.server.mucDomain}`;
  /** An open non-anonymous room `kind`, owned by `owner`, `guest` joined; both see each other's JID. */
  const openRoomWith = async (owner: Device, guest: Device, kind: string) => {
    const room = roomName(kind);
    await join(owner, room, "alice");
    await iqSet(owner, room, roomConfig({ "muc#roomconfig_whois": "anyone" }));
    await join(guest, room, "bob");
    await until(() => owner.omemo.roomMembers(room).includes(guest.jid), "alice sees bob's JID");
    return room;
  };

  it(
    "non-anonymous members-only room: A → B live, B → A, A → B via room MAM catch-up",
    async () => {
      const alice = await device("alice", "phone");
      let bob = await device("bob", "laptop");
      const room = roomName("members");
      await join(alice, room, "alice");
      await iqSet(
        alice,
        room,
        roomConfig({
          ...PERSISTENT_ROOM,
          "muc#roomconfig_membersonly": "1",
          "muc#roomconfig_whois": "anyone",
        }),
      );
      await iqSet(
        alice,
        room,
        xml(
          "query",
          { xmlns: `${NS_MUC}#admin` },
          xml("item", { jid: bob.jid, affiliation: "member" }),
        ),
      );
      // A member without OMEMO (never online): reported, not in the way. (Prosody applies only
      // the first item of an admin set: one IQ each.)
      await iqSet(
        alice,
        room,
        xml(
          "query",
          { xmlns: `${NS_MUC}#admin` },
          xml("item", { jid: "carol@localhost", affiliation: "member" }),
        ),
      );
      expect(await alice.omemo.roomSupport(room)).toEqual({
        room,
        nonAnonymous: true,
        membersOnly: true,
      });
      await join(bob, room, "bob");
      await until(() => alice.omemo.roomMembers(room).includes(bob.jid), "alice sees bob's JID");
      await until(() => bob.omemo.roomMembers(room).includes(alice.jid), "bob sees alice's JID");

      // What the room reflects to bob is ciphertext with the fallback body.
      const wire: string[] = [];
      bob.session.on("stanza", (el) => {
        if (el.is("message") && el.getChild("encrypted", NS_OMEMO)) wire.push(el.toString());
      });
      const sent = await alice.omemo.sendToRoom(room, "hello room (prekey)");
      expect(sent.devices).toEqual([{ jid: bob.jid, deviceId: bob.omemo.deviceId! }]);
      expect(sent.noDevices).toEqual(["carol@localhost"]);
      await until(() => bob.messages(room).length === 1, "bob stores alice's room message");
      expect(bob.messages(room)).toEqual([
        { body: "hello room (prekey)", encrypted: 1, direction: "in" },
      ]);
      expect(wire[0]).toContain(`type="groupchat"`);
      expect(wire[0]).toContain(FALLBACK_BODY);
      expect(wire[0]).not.toContain("hello room");
      // Alice's own reflected copy is not decrypted again nor stored twice: her plaintext row stays.
      const reflected = () =>
        alice.store.sqlite
          .prepare("SELECT stanza_id FROM messages WHERE account_id = 'alice' AND chat_jid = ?")
          .get(room) as { stanza_id: string | null } | undefined;
      await until(() => !!reflected()?.stanza_id, "the room's reflection reaches alice");
      expect(alice.messages(room)).toEqual([
        { body: "hello room (prekey)", encrypted: 1, direction: "out" },
      ]);

      await bob.omemo.sendToRoom(room, "hi alice, from the room");
      await until(
        () => alice.messages(room).some((m) => m.body === "hi alice, from the room"),
        "alice decrypts bob's reply",
      );
      expect(alice.messages(room)[1]).toEqual({
        body: "hi alice, from the room",
        encrypted: 1,
        direction: "in",
      });

      // Bob goes away; alice encrypts for him as a member (not an occupant now); bob's next
      // join catches up from the room's archive and decrypts it there.
      const bobDb = bob.db;
      await bob.close();
      await until(() => !alice.omemo.roomMembers(room).includes(bob.jid), "bob left the room");
      const away = await alice.omemo.sendToRoom(room, "while you were away");
      expect(away.devices.map((d) => d.jid)).toEqual([bob.jid]);
      bob = openDevice(env.server, "bob", "laptop", { db: bobDb });
      devices.push(bob);
      const caughtUp = new Promise<void>((resolve) =>
        bob.session.on("room-mam-complete", (r) => r === room && resolve()),
      );
      await bob.session.connect();
      await caughtUp;
      expect(bob.messages(room)).toEqual([
        { body: "hello room (prekey)", encrypted: 1, direction: "in" },
        { body: "hi alice, from the room", encrypted: 1, direction: "out" },
        { body: "while you were away", encrypted: 1, direction: "in" },
      ]);
    },
    T,
  );

  it(
    "members-only room: the member lists are read once, and again after an affiliation change",
    async () => {
      const alice = await device("alice", "lists");
      const bob = await device("bob", "lists");
      const room = roomName("lists");
      await join(alice, room, "alice");
      await iqSet(
        alice,
        room,
        roomConfig({
          "muc#roomconfig_persistentroom": "1",
          "muc#roomconfig_membersonly": "1",
          "muc#roomconfig_whois": "anyone",
        }),
      );
      const affiliate = (jid: string, affiliation: string) =>
        iqSet(
          alice,
          room,
          xml("query", { xmlns: `${NS_MUC}#admin` }, xml("item", { jid, affiliation })),
        );
      await affiliate(bob.jid, "member");
      await join(bob, room, "bob");
      await until(() => alice.omemo.roomMembers(room).includes(bob.jid), "alice sees bob's JID");
      let listReads = 0;
      const request = alice.omemo.request.bind(alice.omemo);
      alice.omemo.request = (iq) => {
        if (iq.attrs.type === "get" && iq.getChild("query", `${NS_MUC}#admin`)) listReads++;
        return request(iq);
      };
      const readAt = () =>
        (
          alice.store.sqlite
            .prepare(
              "SELECT members_read_at AS t FROM chats WHERE account_id = 'alice' AND jid = ?",
            )
            .get(room) as { t: number | null }
        ).t;
      const cached = () =>
        alice.store.sqlite
          .prepare("SELECT jid, affiliation FROM room_members WHERE room_jid = ? ORDER BY jid")
          .all(room);

      await alice.omemo.sendToRoom(room, "one");
      expect(listReads).toBe(3); // member, admin, owner
      expect(cached()).toEqual([
        { jid: alice.jid, affiliation: "owner" },
        { jid: bob.jid, affiliation: "member" },
      ]);
      await alice.omemo.sendToRoom(room, "two");
      expect(listReads).toBe(3);

      // Carol, not in the room, becomes a member: the room tells its occupants (a message).
      await affiliate("carol@localhost", "member");
      await until(() => readAt() === null, "the announcement drops the cached lists");
      const third = await alice.omemo.sendToRoom(room, "three");
      expect(listReads).toBe(6);
      expect(third.noDevices).toEqual(["carol@localhost"]);
      // Bob, in the room, becomes an admin: his presence shows it.
      await affiliate(bob.jid, "admin");
      await until(() => readAt() === null, "bob's presence drops the cached lists");
      await alice.omemo.sendToRoom(room, "four");
      expect(listReads).toBe(9);
      expect(cached()).toEqual([
        { jid: alice.jid, affiliation: "owner" },
        { jid: bob.jid, affiliation: "admin" },
        { jid: "carol@localhost", affiliation: "member" },
      ]);
      await until(() => bob.messages(room).length === 4, "bob reads all four");
      expect(bob.messages(room).map((m) => m.body)).toEqual(["one", "two", "three", "four"]);
      // OMEMO on for the room: a plain groupchat message is refused, sendMessage encrypts.
      alice.omemo.setChatEncrypted(room, true);
      expect(() => alice.session.send(room, "in the clear?")).toThrow(EncryptionRequiredError);
      const fifth = await alice.omemo.sendMessage(room, "five");
      expect(fifth.omemo?.devices).toContainEqual({ jid: bob.jid, deviceId: bob.omemo.deviceId! });
      await until(() => bob.messages(room).length === 5, "bob reads the fifth");
      expect(bob.messages(room)[4]).toEqual({ body: "five", encrypted: 1, direction: "in" });
      expect(listReads).toBe(9);
      // Changes made while we are out of the room are not announced to us: a join drops them.
      expect(readAt()).not.toBeNull();
      // Left once the room confirms (its answer to a join sent before would end that join).
      const left = new Promise<void>((resolve) =>
        alice.session.on(
          "stanza",
          (el) => el.is("presence") && el.attrs.from === `${room}/alice` && resolve(),
        ),
      );
      alice.session.write((ctx) => leaveRoom(ctx, room));
      await left;
      await alice.session.idle();
      expect(readAt()).not.toBeNull();
      await join(alice, room, "alice");
      expect(readAt()).toBeNull();
    },
    T,
  );

  it(
    "the NSE decrypts a room message that arrived while the app was frozen",
    async () => {
      const alice = await device("alice", "desk");
      const bob = await device("bob", "phone");
      const room = await openRoomWith(alice, bob, "nse");
      await bob.session.suspend(); // frozen by the OS: TCP dropped, stream (and occupancy) kept
      await alice.omemo.sendToRoom(room, "room secret while frozen");
      const nseStore = openStore({ path: bob.db, role: "nse" });
      try {
        const r = await handlePush({
          store: nseStore,
          session: { ...bob.config, plugins: [omemo({ role: "nse" })] },
          lingerMs: 100,
          deadlineMs: 60_000,
        });
        expect(r.outcome).toBe("synced");
      } finally {
        nseStore.close();
      }
      expect(bob.messages(room)).toEqual([
        { body: "room secret while frozen", encrypted: 1, direction: "in" },
      ]);
    },
    T,
  );

  it(
    "private messages between occupants of a non-anonymous room are encrypted for the real JID's devices",
    async () => {
      const alice = await device("alice", "pm");
      const bob = await device("bob", "pm");
      const room = await openRoomWith(alice, bob, "pm");
      await until(() => bob.omemo.roomMembers(room).includes(alice.jid), "bob sees alice's JID");
      const wire: string[] = [];
      bob.session.on("stanza", (el) => {
        if (el.is("message") && el.getChild("encrypted", NS_OMEMO)) wire.push(el.toString());
      });

      // Through the chat setting, as the app sends: OMEMO on for the room → to room/nick encrypted.
      alice.omemo.setChatEncrypted(room, true);
      const sent = await alice.omemo.sendMessage(`${room}/bob`, "psst, bob");
      // (Only bob's devices and our own: not those of the room's other occupants.)
      expect(sent.omemo?.devices).toContainEqual({ jid: bob.jid, deviceId: bob.omemo.deviceId! });
      expect(sent.omemo?.devices.every((d) => d.jid === bob.jid || d.jid === alice.jid)).toBe(true);
      await until(() => bob.messages(room).length === 1, "bob stores the private message");
      expect(bob.messages(room)).toEqual([{ body: "psst, bob", encrypted: 1, direction: "in" }]);
      expect(wire[0]).toContain(`type="chat"`);
      expect(wire[0]).toContain(`from="${room}/alice"`);
      expect(wire[0]).toContain(FALLBACK_BODY);
      expect(wire[0]).not.toContain("psst");
      // The reply: bob knows alice only as room/alice; her real JID comes from the room.
      await bob.omemo.sendPrivate(`${room}/alice`, "psst back");
      await until(
        () => alice.messages(room).some((m) => m.body === "psst back"),
        "alice decrypts the reply",
      );
      expect(alice.messages(room)).toEqual([
        { body: "psst, bob", encrypted: 1, direction: "out" },
        { body: "psst back", encrypted: 1, direction: "in" },
      ]);
      const nobody = await alice.omemo
        .sendPrivate(`${room}/nobody`, "hello?")
        .catch((e: unknown) => e);
      expect(nobody).toBeInstanceOf(OmemoError);
      expect((nobody as OmemoError).code).toBe("unknown-occupant");
    },
    T,
  );

  it(
    "a semi-anonymous room: sending is refused; a message from a hidden occupant is a stored failure",
    async () => {
      const alice = await device("alice", "tablet");
      const bob = await device("bob", "desk");
      const room = roomName("anon");
      await join(alice, room, "alice");
      await iqSet(alice, room, roomConfig({ "muc#roomconfig_whois": "anyone" }));
      const alone = await alice.omemo.sendToRoom(room, "nobody here").catch((e: unknown) => e);
      expect((alone as OmemoError).code).toBe("no-devices"); // past the anonymity check
      // The room announces the change (status 173; Prosody after answering the form): the
      // next send asks the room again.
      const announced = new Promise<void>((resolve) =>
        alice.session.on("stanza", (el) => {
          const x =
            el.is("message") && el.attrs.from === room && el.getChild("x", `${NS_MUC}#user`);
          if (x && x.getChildren("status").some((st) => st.attrs.code === "173")) resolve();
        }),
      );
      await iqSet(alice, room, roomConfig({ "muc#roomconfig_whois": "moderators" }));
      await announced;
      await alice.session.idle(); // the announcement went through the plugin's prepare step
      const refused = await alice.omemo.sendToRoom(room, "secret").catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(OmemoError);
      expect((refused as OmemoError).code).toBe("room-anonymous");
      const privately = await alice.omemo
        .sendPrivate(`${room}/bob`, "secret")
        .catch((e: unknown) => e);
      expect((privately as OmemoError).code).toBe("room-anonymous");
      expect(alice.messages(room)).toEqual([]);

      // Bob (a participant) does not see alice's JID. An OMEMO message from her, claiming her
      // JID in its own muc#user element (an occupant's word, not the room's), is kept as a failure.
      await join(bob, room, "bob");
      await until(
        () =>
          bob.store.sqlite
            .prepare("SELECT 1 FROM room_occupants WHERE account_id = 'bob' AND nick = 'alice'")
            .get() !== undefined,
        "bob sees alice in the room",
      );
      alice.session.write((ctx) =>
        ctx.send(
          xml(
            "message",
            { to: room, type: "groupchat", id: "hidden-1" },
            xml("body", {}, FALLBACK_BODY),
            xml("x", { xmlns: `${NS_MUC}#user` }, xml("item", { jid: alice.jid })),
            xml(
              "encrypted",
              { xmlns: NS_OMEMO },
              xml(
                "header",
                { sid: String(alice.omemo.deviceId) },
                xml("key", { rid: String(bob.omemo.deviceId) }, "AAAA"),
                xml("iv", {}, "AAAAAAAAAAAAAAAA"),
              ),
              xml("payload", {}, "AAAA"),
            ),
          ),
        ),
      );
      await until(() => bob.messages(room).length === 1, "bob stores the failure");
      expect(bob.messages(room)[0]!.body).toMatch(
        /^could not decrypt \(OMEMO unknown-occupant\): the real JID of .*\/alice is unknown/,
      );
      expect(
        bob.store.sqlite
          .prepare(
            "SELECT row_key, error FROM quarantine WHERE table_name = 'omemo_message' AND row_key LIKE '%/hidden-1'",
          )
          .all(),
      ).toEqual([
        {
          row_key: `${room}/alice/hidden-1`,
          error: expect.stringContaining("could not decrypt: unknown-occupant") as string,
        },
      ]);
    },
    T,
  );
});
