import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listRooms, openStore, type Store } from "@lichen/store";
import { xml } from "@xmpp/client";
import { afterAll, describe, expect, it } from "vitest";
import { DurableSession, ensureAccount, joinRoom, leaveRoom } from "../src/index.js";
import { startProsody, type XmppTestServer } from "@lichen/test-servers";
import { SERVERS, until, useEngineEnv } from "./helpers.js";
import { next, roomOwner } from "./muc-helpers.js";

const T = 180_000;
const NS_PRIVATE = "jabber:iq:private";
const NS_LEGACY_BOOKMARKS = "storage:bookmarks";
const NS_BOOKMARKS = "urn:xmpp:bookmarks:1";
const NS_PUBSUB = "http://jabber.org/protocol/pubsub";

type El = {
  attrs: Record<string, string>;
  getChild(n: string, ns?: string): El | undefined;
  getChildren(n: string): El[];
  getChildText(n: string): string | null;
  toString(): string;
};

const randomRoom = (server: XmppTestServer, prefix: string) =>
  `${prefix}-${Math.random().toString(36).slice(2, 8)}@${server.mucDomain}`;

/** Bob owns a new persistent room (the room the devices bookmark). */
async function ownedRoom(server: XmppTestServer, prefix: string) {
  const bob = await roomOwner(server);
  const room = randomRoom(server, prefix);
  await bob.create(room);
  return { bob, room };
}

/**
 * Another, plain client of `user`'s account: as an older client it reads and writes XEP-0048
 * private storage, as a XEP-0402 client it deletes PEP bookmarks.
 */
async function otherClient(server: XmppTestServer, user: string, resource: string) {
  const owner = await roomOwner(server, { user, resource });
  const { iqCaller } = owner.xmpp;
  return {
    ...owner,
    /** The account's features (disco#info on its bare JID). */
    accountFeatures: async () =>
      (
        (await iqCaller.get(
          xml("query", { xmlns: "http://jabber.org/protocol/disco#info" }),
          `${user}@localhost`,
        )) as El
      )
        .getChildren("feature")
        .map((f) => f.attrs.var),
    privateStorage: async () =>
      (
        (await iqCaller.get(
          xml("query", { xmlns: NS_PRIVATE }, xml("storage", { xmlns: NS_LEGACY_BOOKMARKS })),
        )) as El
      ).getChild("storage", NS_LEGACY_BOOKMARKS),
    writePrivateStorage: (...children: ReturnType<typeof xml>[]) =>
      iqCaller.set(
        xml(
          "query",
          { xmlns: NS_PRIVATE },
          xml("storage", { xmlns: NS_LEGACY_BOOKMARKS }, ...children),
        ),
      ),
    /** Deletes the room's PEP bookmark, as XEP-0402 §3.4 says (notify). */
    retractBookmark: (room: string) =>
      iqCaller.set(
        xml(
          "pubsub",
          { xmlns: NS_PUBSUB },
          xml("retract", { node: NS_BOOKMARKS, notify: "true" }, xml("item", { id: room })),
        ),
      ),
  };
}

describe.each(SERVERS)("XEP-0402 bookmarks across devices on %s", (kind, start) => {
  const env = useEngineEnv(start, {
    users: ["alice", "bob", "carol", "dave"],
    prefix: "lichen-mucbm-",
  });
  const stores: Store[] = [];
  afterAll(() => stores.forEach((s) => s.close()));
  /** Another device of `user`: its own database, its own resource. */
  const device = (user: string, resource: string) => {
    const store = openStore({
      path: join(mkdtempSync(join(tmpdir(), "lichen-mucbm-")), "db"),
      role: "main",
    });
    stores.push(store);
    ensureAccount(store, { id: user, jid: `${user}@localhost`, resource });
    return { store, session: new DurableSession({ store, ...env.config(user), resource }) };
  };
  const roomName = (p: string) => randomRoom(env.server, p);
  /** Alice's phone (env.session) and another device of hers; `connect()` connects both. */
  const phoneAndTablet = (tabletResource: string) => {
    const phone = env.session();
    const tablet = device("alice", tabletResource);
    const connect = async () => {
      await phone.connect();
      await tablet.session.connect();
      await tablet.session.syncBarrier();
    };
    return { phone, tablet, connect };
  };

  it(
    "a join on one device is bookmarked and auto-joined by the other, live and after a restart",
    async () => {
      const { bob, room: live } = await ownedRoom(env.server, "live");
      const later = roomName("later");
      await bob.create(later);
      const { phone, tablet, connect } = phoneAndTablet("tablet");
      try {
        await connect();

        // The phone joins: its bookmark (autojoin) reaches the tablet by PEP, which joins too.
        const tabletJoined = next(tablet.session, "room-joined", (r) => r === live);
        phone.write((ctx) => joinRoom(ctx, live, "alice"));
        await tabletJoined;
        const onTablet = listRooms(tablet.store, "alice").find((r) => r.jid === live)!;
        expect(onTablet).toMatchObject({ bookmarked: true, autojoin: true, status: "joined" });

        // The tablet is away (new stream next time) while the phone joins another room.
        await tablet.session.close();
        const published = next(phone, "bookmarks", (b) => b.some((x) => x.room === later));
        phone.write((ctx) => joinRoom(ctx, later, "alice"));
        await published; // our own PEP notification: the server has the bookmark
        const restarted = new DurableSession({
          store: tablet.store,
          ...env.config(),
          resource: "tablet",
        });
        const joinedAfterRestart: string[] = [];
        restarted.on("room-joined", (r) => joinedAfterRestart.push(r));
        expect(await restarted.connect()).toBe("new");
        await until(
          () => joinedAfterRestart.includes(later) && joinedAfterRestart.includes(live),
          "the restarted tablet is in both rooms",
        );
        // Each room joined once: the remembered one by rejoin, the new one by its bookmark.
        expect(joinedAfterRestart.sort()).toEqual([later, live].sort());

        // Leaving turns autojoin off in the bookmark: the other device sees it.
        const off = next(restarted, "bookmarks", (b) =>
          b.some((x) => x.room === later && !x.autojoin),
        );
        phone.write((ctx) => leaveRoom(ctx, later));
        const tabletLeft = next(restarted, "room-left", (e) => e.room === later);
        await off;
        // XEP-0402 1.2 §4: autojoin turned off elsewhere → this device leaves the room too.
        expect((await tabletLeft)[0]).toMatchObject({ reason: "left" });
        expect(listRooms(tablet.store, "alice").find((r) => r.jid === later)).toMatchObject({
          autojoin: false,
          status: "left",
        });
        await restarted.close();
      } finally {
        await phone.close().catch(() => {});
        await tablet.session.close().catch(() => {});
        await bob.stop();
      }
    },
    T,
  );

  it(
    "another device's join refused for itself (a room still being created answers item-not-found) does not make this one leave",
    async () => {
      const fresh = roomName("fresh"); // nobody made it: the phone's join creates it
      const { phone, tablet, connect } = phoneAndTablet("tablet2");
      try {
        await connect();
        // Prosody keeps a new room locked until its owner configures it: the tablet's bookmark
        // join is refused (item-not-found); ejabberd lets it in.
        const tabletDone = Promise.race([
          next(tablet.session, "room-joined", (r) => r === fresh).then(() => "joined"),
          next(tablet.session, "room-error", (e) => e.room === fresh).then(([e]) => e.condition),
        ]);
        const phoneJoined = next(phone, "room-joined", (r) => r === fresh);
        phone.write((ctx) => joinRoom(ctx, fresh, "alice"));
        await phoneJoined;
        const outcome = await tabletDone;
        expect(["joined", "item-not-found"]).toContain(outcome);
        await tablet.session.syncBarrier();
        await phone.syncBarrier();
        expect(listRooms(env.store, "alice").find((r) => r.jid === fresh)).toMatchObject({
          status: "joined",
          autojoin: true,
        });
      } finally {
        await phone.close().catch(() => {});
        await tablet.session.close().catch(() => {});
      }
    },
    T,
  );

  it(
    "a bookmark retracted on another device: the room is left, unbookmarked and not joined again after a restart",
    async () => {
      const { bob, room } = await ownedRoom(env.server, "retract");
      const leftSeenByBob = new Promise<void>((resolve) =>
        bob.xmpp.on("stanza", (st: { attrs: Record<string, string> }) => {
          if (st.attrs.from === `${room}/alice` && st.attrs.type === "unavailable") resolve();
        }),
      );
      const phone = env.session();
      const other = await otherClient(env.server, "alice", "other");
      const inPrivateStorage = async () => String(await other.privateStorage()).includes(room);
      try {
        await phone.connect();
        const published = next(phone, "bookmarks", (b) => b.some((x) => x.room === room));
        const joined = next(phone, "room-joined", (r) => r === room);
        phone.write((ctx) => joinRoom(ctx, room, "alice"));
        await Promise.all([joined, published]);
        await until(inPrivateStorage, "the join in XEP-0048 private storage (no #compat)");

        // Another client of alice's deletes the bookmark, as XEP-0402 §3.4 says (notify).
        const left = next(phone, "room-left", (e) => e.room === room);
        // The node tells other devices about retractions (ejabberd: once we configured it).
        await until(async () => {
          const form = (await other.xmpp.iqCaller.get(
            xml(
              "pubsub",
              { xmlns: "http://jabber.org/protocol/pubsub#owner" },
              xml("configure", { node: NS_BOOKMARKS }),
            ),
          )) as { toString(): string };
          return /var="pubsub#notify_retract"[^]*?<value>(1|true)<\/value>/.test(form.toString());
        }, "the bookmarks node notifies retractions");
        await other.retractBookmark(room);
        if (kind === "ejabberd") {
          // Measured: ejabberd 23.01 sends no retract notification to the account's other
          // resources, with notify='true' and with pubsub#notify_retract=1 alike. The item is
          // gone on the server; this device learns nothing and stays (README: group chats).
          await phone.syncBarrier();
          expect(listRooms(env.store, "alice").find((r) => r.jid === room)).toMatchObject({
            bookmarked: true,
            status: "joined",
          });
          return;
        }
        expect((await left)[0]).toMatchObject({
          reason: "left",
          detail: "bookmark removed on another device",
        });
        await leftSeenByBob; // the unavailable presence reached the room
        expect(listRooms(env.store, "alice").find((r) => r.jid === room)).toMatchObject({
          bookmarked: false,
          autojoin: false,
          status: "left",
          nick: null,
        });
        // Leaving did not publish the deleted bookmark again.
        const items = (await other.xmpp.iqCaller.get(
          xml("pubsub", { xmlns: NS_PUBSUB }, xml("items", { node: NS_BOOKMARKS })),
        )) as { getChild(n: string): { getChildren(n: string): { attrs: { id?: string } }[] } };
        expect(
          items
            .getChild("items")
            .getChildren("item")
            .map((i) => i.attrs.id),
        ).not.toContain(room);
        // No #compat here: the retraction reaches XEP-0048 private storage too.
        await until(async () => !(await inPrivateStorage()), "the room gone from private storage");

        // A new stream (restart) does not join it again.
        await phone.close();
        const restarted = new DurableSession({ store: env.store, ...env.config() });
        const rejoined: string[] = [];
        restarted.on("room-joined", (r) => rejoined.push(r));
        expect(await restarted.connect()).toBe("new");
        await restarted.syncBarrier(); // behind the bookmarks fetch and any join's answer
        expect(rejoined).not.toContain(room);
        expect(listRooms(env.store, "alice").find((r) => r.jid === room)?.status).toBe("left");
        await restarted.close();
      } finally {
        await phone.close().catch(() => {});
        await other.stop();
        await bob.stop();
      }
    },
    T,
  );

  it(
    "without #compat, joins and leaves are written to XEP-0048 private storage too (other clients' entries kept); a device with no PEP bookmarks joins from it",
    async () => {
      const { bob, room } = await ownedRoom(env.server, "legacy-write");
      const foreign = roomName("foreign");
      // An older client of dave's: reads and writes private storage only.
      const old = await otherClient(env.server, "dave", "old");
      const privateStorage = old.privateStorage;
      let lastStorage = "";
      const conferenceOf = async (jid: string) =>
        (await privateStorage())?.getChildren("conference").find((c) => c.attrs.jid === jid);
      try {
        // Precondition: neither test server mirrors XEP-0048 itself (Prosody runs without
        // mod_bookmarks; ejabberd 23.01 advertises only urn:xmpp:bookmarks-conversion:0).
        expect(await old.accountFeatures()).not.toContain("urn:xmpp:bookmarks:1#compat");
        await old.writePrivateStorage(
          xml(
            "conference",
            { jid: foreign, autojoin: "false", name: "Foreign" },
            xml("password", {}, "secret"),
          ),
          xml("url", { name: "Site", url: "https://example.org/" }),
        );
        const phone = device("dave", "phone");
        await phone.session.connect();
        const joined = next(phone.session, "room-joined", (r) => r === room);
        phone.session.write((ctx) => joinRoom(ctx, room, "dave"));
        await joined;
        const written = await until(
          async () =>
            (await conferenceOf(room))?.attrs.autojoin === "true" && (await conferenceOf(room)),
          "the join in private storage",
        );
        expect(written.getChildText("nick")).toBe("dave");
        // The old client's entries are kept as they were.
        const kept = await conferenceOf(foreign);
        expect(kept?.attrs).toMatchObject({ autojoin: "false", name: "Foreign" });
        expect(kept?.getChildText("password")).toBe("secret");
        expect((await privateStorage())?.getChild("url")?.attrs.url).toBe("https://example.org/");

        phone.session.write((ctx) => leaveRoom(ctx, room));
        await until(
          async () => {
            lastStorage = String(await privateStorage());
            return (await conferenceOf(room))?.attrs.autojoin === "false";
          },
          () => `the leave in private storage: ${lastStorage}`,
        );
        phone.session.write((ctx) => joinRoom(ctx, room, "dave"));
        await until(
          async () => (await conferenceOf(room))?.attrs.autojoin === "true",
          "the second join in private storage",
        );
        await phone.session.close();

        // The PEP bookmarks are gone (a server that keeps none): private storage still has it.
        await old.xmpp.iqCaller
          .set(
            xml(
              "pubsub",
              { xmlns: "http://jabber.org/protocol/pubsub#owner" },
              xml("delete", { node: NS_BOOKMARKS }),
            ),
          )
          .catch(() => {});
        const tablet = device("dave", "tablet");
        const tabletJoined: string[] = [];
        tablet.session.on("room-joined", (r) => tabletJoined.push(r));
        await tablet.session.connect();
        await until(() => tabletJoined.includes(room), "the new device joins from private storage");
        await tablet.session.syncBarrier();
        expect(tabletJoined).not.toContain(foreign); // autojoin false
        await tablet.session.close();
      } finally {
        await old.stop();
        await bob.stop();
      }
    },
    T,
  );

  it(
    "XEP-0048 private storage is read when there are no PEP bookmarks",
    async () => {
      const { bob, room: old } = await ownedRoom(env.server, "legacy");
      // An older client of carol's wrote her bookmarks to private storage only.
      const oldClient = await otherClient(env.server, "carol", "old");
      await oldClient.writePrivateStorage(
        xml("conference", { jid: old, autojoin: "true", name: "Old" }, xml("nick", {}, "caro")),
      );
      await oldClient.stop();
      const carol = device("carol", "phone");
      try {
        const joined = next(carol.session, "room-joined", (r) => r === old);
        await carol.session.connect();
        await joined;
        expect(listRooms(carol.store, "carol").find((r) => r.jid === old)).toMatchObject({
          nick: "caro",
          bookmarked: true,
          autojoin: true,
        });
      } finally {
        await carol.session.close().catch(() => {});
        await bob.stop();
      }
    },
    T,
  );
});

describe("XEP-0402 bookmarks with #compat (Prosody with mod_bookmarks, Debian's default)", () => {
  const env = useEngineEnv((o) => startProsody({ ...o, bookmarks: true }), {
    users: ["alice", "bob"],
    prefix: "lichen-mucbm-compat-",
  });

  it(
    "the account advertises #compat; a join reaches XEP-0048-only clients through the server, a retraction elsewhere leaves the room",
    async () => {
      const { bob, room } = await ownedRoom(env.server, "compat");
      const old = await otherClient(env.server, "alice", "old");
      const phone = env.session();
      try {
        expect(await old.accountFeatures()).toContain("urn:xmpp:bookmarks:1#compat");
        await phone.connect();
        const published = next(phone, "bookmarks", (b) => b.some((x) => x.room === room));
        const joined = next(phone, "room-joined", (r) => r === room);
        phone.write((ctx) => joinRoom(ctx, room, "alice"));
        await Promise.all([published, joined]);
        // With #compat we write PEP only; the server's bridge mirrors it into private storage.
        await until(
          async () => String(await old.privateStorage()).includes(room),
          "the join in private storage (mirrored by mod_bookmarks)",
        );

        const left = next(phone, "room-left", (e) => e.room === room);
        await old.retractBookmark(room);
        expect((await left)[0]).toMatchObject({ detail: "bookmark removed on another device" });
        expect(listRooms(env.store, "alice").find((r) => r.jid === room)).toMatchObject({
          bookmarked: false,
          status: "left",
        });
      } finally {
        await phone.close().catch(() => {});
        await old.stop();
        await bob.stop();
      }
    },
    T,
  );
});
