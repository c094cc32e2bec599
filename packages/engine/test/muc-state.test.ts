import { listRooms, tables } from "@lichen/store";
import { xml } from "@xmpp/client";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { joinRoom } from "../src/index.js";
import { SERVERS, useEngineEnv } from "./helpers.js";
import { next, roomOwner } from "./muc-helpers.js";

const T = 180_000;

describe.each(SERVERS)("group chat state on %s", (_kind, start) => {
  const env = useEngineEnv(start, { users: ["alice", "bob"], prefix: "lichen-mucstate-" });
  const room = (name: string) => listRooms(env.store, "alice").find((r) => r.jid === name);

  it(
    "nick conflict retried, occupants and subject kept, kick and ban end the occupancy, a refused join stops",
    async () => {
      const lounge = `state-${Math.random().toString(36).slice(2, 8)}@${env.server.mucDomain}`;
      const bob = await roomOwner(env.server);
      const alice = env.session();
      try {
        await bob.create(lounge);
        await alice.connect();

        // "bob" is taken: the join retries as bob_2 and succeeds.
        const conflict = next(alice, "room-nick-conflict");
        const joined = next(alice, "room-joined");
        alice.write((ctx) => joinRoom(ctx, lounge, "bob"));
        expect((await conflict)[0]).toEqual({ room: lounge, tried: "bob", next: "bob_2" });
        await joined;
        let r = room(lounge)!;
        expect(r.status).toBe("joined");
        expect(r.nick).toBe("bob_2");
        expect(r.occupants.map((o) => [o.nick, o.affiliation, o.role])).toEqual([
          ["bob", "owner", "moderator"],
          ["bob_2", "none", "participant"],
        ]);

        // Subject: stored, not a message.
        // (the room sends its empty subject on join first)
        const subject = next(alice, "room-subject", (e) => e.subject !== null);
        await bob.subject(lounge, "today: lichens");
        expect((await subject)[0]).toEqual({ room: lounge, subject: "today: lichens" });
        expect(room(lounge)!.subject).toBe("today: lichens");

        // A groupchat-typed message from a contact (not a room) is not a room message.
        const forged = `forged-${Math.random()}`;
        await bob.xmpp.send(
          xml(
            "message",
            { to: "alice@localhost", type: "groupchat", id: "f1" },
            xml("body", {}, forged),
            xml("stanza-id", { xmlns: "urn:xmpp:sid:0", id: "x1", by: lounge }),
          ),
        );
        await alice.syncBarrier();
        const genuine = next(alice, "message-stored", (m) => m.body === "genuine");
        await bob.xmpp.send(
          xml("message", { to: lounge, type: "groupchat", id: "g1" }, xml("body", {}, "genuine")),
        );
        expect((await genuine)[0].stanzaId).toBeTruthy();
        const stored = env.store.read((tx) =>
          tx.select().from(tables.messages).where(eq(tables.messages.accountId, "alice")).all(),
        );
        expect(stored.map((m) => m.body)).not.toContain(forged);
        expect(stored.filter((m) => m.body === "genuine")).toHaveLength(1);

        // Kicked: status, reason, no occupants, and no rejoin on the next stream.
        const kicked = next(alice, "room-left");
        await bob.kick(lounge, "bob_2");
        expect((await kicked)[0]).toMatchObject({ room: lounge, reason: "kicked" });
        r = room(lounge)!;
        expect([r.status, r.nick, r.occupants]).toEqual(["kicked", null, []]);

        // Join again, then banned (301) while inside.
        const back = next(alice, "room-joined");
        alice.write((ctx) => joinRoom(ctx, lounge, "alice"));
        await back;
        const banned = next(alice, "room-left");
        await bob.ban(lounge, "alice@localhost");
        expect((await banned)[0]).toMatchObject({ room: lounge, reason: "banned" });
        expect(room(lounge)!.status).toBe("banned");

        // A join the room refuses: one clear error, the room is not re-joined.
        const refused = next(alice, "room-error");
        alice.write((ctx) => joinRoom(ctx, lounge, "alice"));
        expect((await refused)[0]).toEqual({ room: lounge, condition: "forbidden" });
        r = room(lounge)!;
        expect([r.status, r.statusDetail, r.nick]).toEqual(["error", "forbidden", null]);

        // A new stream re-joins nothing: no remembered nick, nothing to send.
        await alice.close();
        const again = env.session();
        let rejoined = 0;
        again.on("room-joined", () => rejoined++);
        expect(await again.connect()).toBe("new");
        await again.syncBarrier();
        expect(rejoined).toBe(0);
        expect(room(lounge)!.status).toBe("error");

        // Destroyed while inside: the reason is kept.
        const doomed = `doomed-${Math.random().toString(36).slice(2, 8)}@${env.server.mucDomain}`;
        await bob.create(doomed);
        const inDoomed = next(again, "room-joined");
        again.write((ctx) => joinRoom(ctx, doomed, "alice"));
        await inDoomed;
        const destroyed = next(again, "room-left");
        await bob.destroy(doomed);
        expect((await destroyed)[0]).toMatchObject({
          room: doomed,
          reason: "destroyed",
          detail: "closing down",
        });
        expect(room(doomed)!.status).toBe("destroyed");
        await again.close();
      } finally {
        await alice.close().catch(() => {});
        await bob.stop();
      }
    },
    T,
  );
});
