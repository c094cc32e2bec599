import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listRooms, openStore, type Store } from "@lichen/store";
import { xml } from "@xmpp/client";
import { afterAll, describe, expect, it } from "vitest";
import { DurableSession, ensureAccount, joinRoom, leaveRoom } from "../src/index.js";
import { SERVERS, until, useEngineEnv } from "./helpers.js";
import { next, roomOwner } from "./muc-helpers.js";

const T = 180_000;

describe.each(SERVERS)("XEP-0402 bookmarks across devices on %s", (_kind, start) => {
  const env = useEngineEnv(start, { users: ["alice", "bob", "carol"], prefix: "lichen-mucbm-" });
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
  const roomName = (p: string) =>
    `${p}-${Math.random().toString(36).slice(2, 8)}@${env.server.mucDomain}`;

  it(
    "a join on one device is bookmarked and auto-joined by the other, live and after a restart",
    async () => {
      const bob = await roomOwner(env.server);
      const live = roomName("live");
      const later = roomName("later");
      await bob.create(live);
      await bob.create(later);
      const phone = env.session();
      const tablet = device("alice", "tablet");
      try {
        await phone.connect();
        await tablet.session.connect();
        await tablet.session.syncBarrier();

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
        await off;
        expect(listRooms(tablet.store, "alice").find((r) => r.jid === later)!.autojoin).toBe(false);
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
    "XEP-0048 private storage is read when there are no PEP bookmarks",
    async () => {
      const bob = await roomOwner(env.server);
      const old = roomName("legacy");
      await bob.create(old);
      // An older client of carol's wrote her bookmarks to private storage only.
      const oldClient = await roomOwner(env.server, { user: "carol", resource: "old" });
      await oldClient.xmpp.iqCaller.set(
        xml(
          "query",
          { xmlns: "jabber:iq:private" },
          xml(
            "storage",
            { xmlns: "storage:bookmarks" },
            xml("conference", { jid: old, autojoin: "true", name: "Old" }, xml("nick", {}, "caro")),
          ),
        ),
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
