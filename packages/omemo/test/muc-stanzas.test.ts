// Who wrote an encrypted groupchat message, decided before any decryption: the prepare step on
// hand-made stanzas (no server: the session never connects).
import { joinRoom, startRoomMamCatchup, xml, type Element } from "@lichen/engine";
import type { XmppTestServer } from "@lichen/test-servers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NS_OMEMO } from "../src/index.js";
import { openDevice, type Device } from "./helpers.js";

const ROOM = "team@conference.localhost";
const NS_MUC_USER = "http://jabber.org/protocol/muc#user";

describe("encrypted groupchat messages: the author's real JID", () => {
  let alice: Device;
  let ownDeviceId: number;
  beforeAll(() => {
    alice = openDevice({ c2sPort: 1 } as XmppTestServer, "alice", "phone");
    ownDeviceId = alice.omemo.ensureIdentity().deviceId;
    alice.session.write((ctx) => joinRoom(ctx, ROOM, "alice", { bookmark: false }));
    const now = Date.now();
    alice.store.sqlite
      .prepare(
        "INSERT INTO room_occupants (account_id, room_jid, nick, real_jid, updated_at) VALUES ('alice', ?, 'carol', 'carol@localhost/pc', ?), ('alice', ?, 'ghost', NULL, ?)",
      )
      .run(ROOM, now, ROOM, now);
    // Listed devices of carol and dave: a message from another device id names the JID it was
    // attributed to in its failure ("device … is not in <jid>'s device list").
    alice.store.sqlite
      .prepare(
        "INSERT INTO omemo_device_lists (account_id, jid, device_id, active, updated_at) VALUES ('alice', 'carol@localhost', 1, 1, ?), ('alice', 'dave@localhost', 1, 1, ?)",
      )
      .run(now, now);
  });
  afterAll(() => alice.close());

  const encrypted = () =>
    xml(
      "encrypted",
      { xmlns: NS_OMEMO },
      xml(
        "header",
        { sid: "777" },
        xml("key", { rid: String(ownDeviceId) }, "AAAA"),
        xml("iv", {}, "AAAAAAAAAAAAAAAA"),
      ),
      xml("payload", {}, "AAAA"),
    );
  const groupchat = (from: string, id: string, ...extra: Element[]) =>
    xml(
      "message",
      { from, to: "alice@localhost/phone", type: "groupchat", id },
      encrypted(),
      ...extra,
    );
  const roomResult = (queryid: string, inner: Element) =>
    xml(
      "message",
      { from: ROOM, to: "alice@localhost/phone" },
      xml(
        "result",
        { xmlns: "urn:xmpp:mam:2", queryid, id: `arch-${inner.attrs.id}` },
        xml("forwarded", { xmlns: "urn:xmpp:forward:0" }, inner),
      ),
    );
  const bodyOf = async (stanza: Element) => {
    const prepared = await alice.omemo.prepare(stanza, alice.session);
    if (!prepared) return null;
    const s = prepared.stanza!;
    const inner =
      s.getChild("result", "urn:xmpp:mam:2")?.getChild("forwarded")?.getChild("message") ?? s;
    return inner.getChildText("body");
  };

  it("live: the occupant list maps the nick; an occupant's own muc#user item is not believed", async () => {
    expect(await bodyOf(groupchat(`${ROOM}/carol`, "m1"))).toMatch(
      /unknown-device\): device 777 is not in carol@localhost's device list/,
    );
    const forged = xml("x", { xmlns: NS_MUC_USER }, xml("item", { jid: "dave@localhost" }));
    expect(await bodyOf(groupchat(`${ROOM}/ghost`, "m2", forged))).toMatch(
      /unknown-occupant\): the real JID of team@conference.localhost\/ghost is unknown \(the room hides it\)/,
    );
    expect(await bodyOf(groupchat(`${ROOM}/gone`, "m3"))).toMatch(
      /unknown-occupant\).*\/gone is unknown \(not an occupant now\)/,
    );
  });

  it("from a room we are not in, or from a room's bare JID: not handled", async () => {
    expect(await bodyOf(groupchat("other@conference.localhost/carol", "m4"))).toBeNull();
    expect(await alice.omemo.prepare(groupchat(ROOM, "m5"), alice.session)).toBeNull();
  });

  it("room archive: only our running catch-up's results; the archived muc#user item names the author", async () => {
    alice.session.write((ctx) => startRoomMamCatchup(ctx, ROOM));
    const queryId = (
      alice.store.sqlite.prepare("SELECT handler FROM iq_handlers").all() as { handler: string }[]
    )
      .map((r) => JSON.parse(r.handler) as { name: string; bound: { queryId?: string } })
      .find((h) => h.name === "lichen.mam.room-page")!.bound.queryId!;
    const archived = (id: string) =>
      groupchat(
        `${ROOM}/someone`,
        id,
        xml("x", { xmlns: NS_MUC_USER }, xml("item", { jid: "dave@localhost/tab" })),
      );
    expect(await bodyOf(roomResult(queryId, archived("m6")))).toMatch(
      /device 777 is not in dave@localhost's device list/,
    );
    // Archive ids are unique per archive only (ejabberd's are timestamps): our own archive's
    // message with the same id is another message.
    alice.store.sqlite
      .prepare(
        "INSERT INTO messages (account_id, chat_jid, direction, from_jid, type, archive_id, stanza_id, body, delivery_state, sent_at, stored_at) VALUES ('alice', 'bob@localhost', 'in', 'bob@localhost', 'chat', 'arch-m8', 'arch-m8', 'hi', 'received', 1, 1)",
      )
      .run();
    expect(await bodyOf(roomResult(queryId, archived("m8")))).toMatch(/could not decrypt/);
    // A result for a query we never sent (a forgery): nothing decrypted, the engine drops it.
    expect(
      await alice.omemo.prepare(roomResult("not-ours", archived("m7")), alice.session),
    ).toBeNull();
  });
});
