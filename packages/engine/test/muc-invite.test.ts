import { tables } from "@lichen/store";
import { xml } from "@xmpp/client";
import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import {
  acceptInvitation,
  declineInvitation,
  joinRoom,
  selfPingRooms,
  type RoomInvitation,
} from "../src/index.js";
import { SERVERS, until, useEngineEnv } from "./helpers.js";
import { NS_MUC, next, roomOwner } from "./muc-helpers.js";

const T = 120_000;

describe.each(SERVERS)("room invitations and self-ping on %s", (_kind, start) => {
  const env = useEngineEnv(start, { users: ["alice", "bob"], prefix: "lichen-mucinv-" });
  const invitations = () =>
    env.store.read((tx) =>
      tx
        .select()
        .from(tables.roomInvitations)
        .where(eq(tables.roomInvitations.accountId, "alice"))
        .all(),
    );

  it(
    "direct and mediated invitations stored until accepted or declined, a forged one ignored; self-ping re-joins a room that lost us",
    async () => {
      const name = Math.random().toString(36).slice(2, 8);
      const direct = `direct-${name}@${env.server.mucDomain}`;
      const mediated = `mediated-${name}@${env.server.mucDomain}`;
      const bob = await roomOwner(env.server);
      const alice = env.session();
      const seen: RoomInvitation[] = [];
      alice.on("room-invitation", (i) => seen.push(i));
      try {
        await bob.create(direct);
        await bob.create(mediated);
        await alice.connect();

        // A forged mediated invitation (from bob, not from a room) is not stored.
        await bob.xmpp.send(
          xml(
            "message",
            { to: "alice@localhost" },
            xml("x", { xmlns: `${NS_MUC}#user` }, xml("invite", { from: "bob@localhost" })),
          ),
        );
        // XEP-0249 direct invitation.
        const gotDirect = next(alice, "room-invitation", (i) => i.room === direct);
        await bob.xmpp.send(
          xml(
            "message",
            { to: "alice@localhost" },
            xml("x", { xmlns: "jabber:x:conference", jid: direct, reason: "come" }),
          ),
        );
        expect((await gotDirect)[0]).toEqual({
          room: direct,
          from: "bob@localhost",
          kind: "direct",
          reason: "come",
          password: null,
        });
        // Mediated: through the room, which names bob.
        const gotMediated = next(alice, "room-invitation", (i) => i.room === mediated);
        await bob.xmpp.send(
          xml(
            "message",
            { to: mediated },
            xml(
              "x",
              { xmlns: `${NS_MUC}#user` },
              xml("invite", { to: "alice@localhost" }, xml("reason", {}, "join us")),
            ),
          ),
        );
        // The inviter as the room names it (Prosody hides bob's JID in a semi-anonymous room).
        expect((await gotMediated)[0]).toMatchObject({
          room: mediated,
          kind: "mediated",
          reason: "join us",
        });
        await alice.syncBarrier();
        expect(seen.map((i) => i.room).sort()).toEqual([direct, mediated].sort());
        expect(
          invitations()
            .map((i) => i.roomJid)
            .sort(),
        ).toEqual([direct, mediated].sort());

        const joined = next(alice, "room-joined", (r) => r === direct);
        expect(alice.write((ctx) => acceptInvitation(ctx, direct, "alice"))).toBe(true);
        await joined;
        // The decline reaches bob through the room (Prosody names him room/bob: sent there;
        // ejabberd names his real JID: delivered to his available resource).
        await bob.xmpp.send(xml("presence"));
        const declineAtBob = new Promise<void>((resolve) =>
          bob.xmpp.on("stanza", (s: { attrs: Record<string, string>; toString(): string }) => {
            if (s.attrs.from === mediated && s.toString().includes("<decline")) resolve();
          }),
        );
        expect(alice.write((ctx) => declineInvitation(ctx, mediated, "busy"))).toBe(true);
        await declineAtBob;
        expect(invitations()).toEqual([]);

        // Silent removal: our row says joined as "ghost", but the room has no such occupant of
        // ours. The self-ping's error makes us join again.
        const ghostRoom = mediated;
        alice.write((ctx) => {
          joinRoom(ctx, ghostRoom, "ghost");
        });
        await next(alice, "room-joined", (r) => r === ghostRoom);
        const gone = next(alice, "room-left", (e) => e.room === ghostRoom);
        alice.write((ctx) =>
          ctx.send(xml("presence", { to: `${ghostRoom}/ghost`, type: "unavailable" })),
        );
        await gone;
        // We missed that: the row still says joined (what a silent removal leaves behind).
        alice.write((ctx) =>
          ctx.tx
            .update(tables.chats)
            .set({ nick: "ghost", roomStatus: "joined" })
            .where(and(eq(tables.chats.accountId, "alice"), eq(tables.chats.jid, ghostRoom)))
            .run(),
        );
        const rejoining = next(alice, "room-rejoining");
        const back = next(alice, "room-joined", (r) => r === ghostRoom);
        // Only the ghost room is out of sync; the other answers the ping and stays as it is.
        alice.write((ctx) => selfPingRooms(ctx));
        expect((await rejoining)[0]).toBe(ghostRoom);
        await back;
        const row = env.store.read((tx) =>
          tx
            .select()
            .from(tables.chats)
            .where(and(eq(tables.chats.accountId, "alice"), eq(tables.chats.jid, ghostRoom)))
            .get(),
        )!;
        expect([row.roomStatus, row.nick]).toEqual(["joined", "ghost"]);
      } finally {
        await alice.close().catch(() => {});
        await bob.stop();
      }
    },
    T,
  );

  it(
    "online and idle: a room silent for idleMs (injected clock) is self-pinged; the one that lost us is joined again, the other stays",
    async () => {
      const name = Math.random().toString(36).slice(2, 8);
      const lost = `lost-${name}@${env.server.mucDomain}`;
      const kept = `kept-${name}@${env.server.mucDomain}`;
      const bob = await roomOwner(env.server);
      let now = 1_000_000;
      const alice = env.session({ roomSelfPing: { idleMs: 60_000, checkMs: 20, now: () => now } });
      const rejoining: string[] = [];
      alice.on("room-rejoining", (r) => rejoining.push(r));
      try {
        await bob.create(lost);
        await bob.create(kept);
        await alice.connect();
        const joined = Promise.all([
          next(alice, "room-joined", (r) => r === lost),
          next(alice, "room-joined", (r) => r === kept),
        ]);
        alice.write((ctx) => {
          joinRoom(ctx, lost, "ghost");
          joinRoom(ctx, kept, "alice");
        });
        await joined;
        // The room lets us go without our noticing: our row still says joined.
        const gone = next(alice, "room-left", (e) => e.room === lost);
        alice.write((ctx) =>
          ctx.send(xml("presence", { to: `${lost}/ghost`, type: "unavailable" })),
        );
        await gone;
        alice.write((ctx) =>
          ctx.tx
            .update(tables.chats)
            .set({ nick: "ghost", roomStatus: "joined" })
            .where(and(eq(tables.chats.accountId, "alice"), eq(tables.chats.jid, lost)))
            .run(),
        );
        expect(rejoining).toEqual([]); // the clock stood still: no ping, no rejoin
        const back = next(alice, "room-joined", (r) => r === lost);
        // No resume, no new stream: only idle time passing (each poll, one idle period more).
        await until(() => {
          now += 60_000;
          return rejoining.length > 0;
        }, "the idle self-ping found the lost room");
        await back;
        expect(rejoining).toEqual([lost]);
        const rows = env.store.read((tx) =>
          tx
            .select({
              jid: tables.chats.jid,
              nick: tables.chats.nick,
              status: tables.chats.roomStatus,
            })
            .from(tables.chats)
            .where(eq(tables.chats.accountId, "alice"))
            .all()
            .filter((r) => r.jid === lost || r.jid === kept)
            .sort((a, b) => a.jid.localeCompare(b.jid)),
        );
        expect(rows).toEqual(
          [
            { jid: kept, nick: "alice", status: "joined" },
            { jid: lost, nick: "ghost", status: "joined" },
          ].sort((a, b) => a.jid.localeCompare(b.jid)),
        );
      } finally {
        await alice.close().catch(() => {});
        await bob.stop();
      }
    },
    T,
  );
});
