// Issue 14: an NSE that must start a NEW stream (the server restarted: the hibernated session and
// our room occupancy are gone) while the account has joined rooms. It logs in, rejoins every room
// without MUC history, catches each room up from its own MAM mark, says "synced" only once every
// room answered, and shows the room message that caused the push (the newest one).
import { openStore, tables } from "@lichen/store";
import type { Element } from "@xmpp/xml";
import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { AppController, handlePush, joinRoom } from "../src/index.js";
import { SERVERS, until, useEngineEnv } from "./helpers.js";
import { next, roomOwner } from "./muc-helpers.js";

const T = 120_000;

describe.each(SERVERS)("NSE on a new stream with joined rooms on %s", (_kind, start) => {
  const env = useEngineEnv(start, { users: ["alice", "bob"], prefix: "lichen-mucnse-" });
  const bodies = (room: string) =>
    env.store.read((tx) =>
      tx
        .select({ body: tables.messages.body })
        .from(tables.messages)
        .where(and(eq(tables.messages.accountId, "alice"), eq(tables.messages.chatJid, room)))
        .all()
        .map((r) => r.body)
        .sort(),
    );
  const roomRows = () =>
    env.store.read((tx) =>
      tx
        .select({
          jid: tables.chats.jid,
          status: tables.chats.roomStatus,
          gap: tables.mamMarks.gapOpen,
        })
        .from(tables.chats)
        .innerJoin(
          tables.mamMarks,
          and(
            eq(tables.mamMarks.accountId, tables.chats.accountId),
            eq(tables.mamMarks.archiveJid, tables.chats.jid),
          ),
        )
        .where(and(eq(tables.chats.accountId, "alice"), eq(tables.chats.kind, "groupchat")))
        .all()
        .sort((a, b) => a.jid.localeCompare(b.jid)),
    );

  it(
    "after a server restart the NSE logs in, rejoins both rooms without history, catches each up from its mark, shows the push's room message",
    async () => {
      const tag = Math.random().toString(36).slice(2, 8);
      const roomA = `nsea-${tag}@${env.server.mucDomain}`;
      const roomB = `nseb-${tag}@${env.server.mucDomain}`;
      let bob = await roomOwner(env.server);
      const app = new AppController(env.store, env.config());
      try {
        await bob.create(roomA);
        await bob.create(roomB);
        await bob.say(roomA, "a-before");
        await bob.say(roomB, "b-before");
        await app.foreground();
        const session = app.session!;
        const caughtUp = Promise.all([
          next(session, "room-mam-complete", (r) => r === roomA),
          next(session, "room-mam-complete", (r) => r === roomB),
        ]);
        session.write((ctx) => {
          joinRoom(ctx, roomA, "alice");
          joinRoom(ctx, roomB, "alice");
        });
        await caughtUp;
        expect(bodies(roomA)).toEqual(["a-before"]);
        expect(bodies(roomB)).toEqual(["b-before"]);
        await app.background(); // hibernated on the server…
        await bob.stop();
        await env.server.restart(); // …and gone: the next connect is a new stream

        // bob back in his (persistent, archived) rooms, talking while alice is away.
        bob = await roomOwner(env.server);
        await bob.create(roomA);
        await bob.create(roomB);
        await bob.say(roomA, "a-missed");
        await bob.say(roomB, "b-missed");
        // The message the push is for comes last; server stamps may have whole-second precision,
        // so it goes out in the next second (else "newest" would be a tie).
        const second = Math.floor(Date.now() / 1000);
        await until(() => Math.floor(Date.now() / 1000) > second, "the next second");
        await bob.say(roomA, "alice: are you there?");

        // Room messages reaching us outside a MAM result would be a history flood (or live).
        const outsideMam: string[] = [];
        const nse = openStore({ path: env.store.path, role: "nse" });
        try {
          const r = await handlePush({
            store: nse,
            session: {
              ...env.config(),
              onStanza: (_ctx, stanza: Element) => {
                if (
                  stanza.name === "message" &&
                  stanza.attrs.type === "groupchat" &&
                  stanza.getChildText("body") !== null
                )
                  outsideMam.push(stanza.getChildText("body")!);
              },
            },
            deadlineMs: 60_000,
            lingerMs: 0,
          });
          expect(r.outcome).toBe("synced");
          expect(r.stream).toBe("new");
          // "synced" only once both rooms answered the join and closed their gap.
          expect(roomRows()).toEqual(
            [roomA, roomB].sort().map((jid) => ({ jid, status: "joined", gap: false })),
          );
          expect(bodies(roomA)).toEqual(["a-before", "a-missed", "alice: are you there?"]);
          expect(bodies(roomB)).toEqual(["b-before", "b-missed"]);
          expect(outsideMam).toEqual([]);
          expect(r.summary.messages).toBe(3);
          expect(r.notifications).toEqual([
            expect.objectContaining({
              kind: "alert",
              title: roomA,
              body: "bob: alice: are you there?",
              threadId: roomA,
              mention: true,
              count: 3,
            }),
          ]);
        } finally {
          nse.close();
        }
        // No occupant presence from us lingering as a ghost: the room lists alice once.
        const occupants = env.store.read((tx) =>
          tx
            .select({ nick: tables.roomOccupants.nick })
            .from(tables.roomOccupants)
            .where(
              and(
                eq(tables.roomOccupants.accountId, "alice"),
                eq(tables.roomOccupants.roomJid, roomA),
              ),
            )
            .all()
            .map((o) => o.nick)
            .sort(),
        );
        expect(occupants).toEqual(["alice", "bob"]);
      } finally {
        await app.close().catch(() => {});
        await bob.stop();
      }
    },
    T,
  );
});
