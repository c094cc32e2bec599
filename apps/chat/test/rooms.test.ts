// lichen-chat rooms, join, leave, send to a room and tail of a room, end to end: the BUILT CLI
// against real Prosody and ejabberd, bob (a plain client) owning the rooms.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEjabberd, startProsody, type XmppTestServer } from "@lichen/test-servers";
import { xml } from "@xmpp/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loginArgs, requireBuiltCli, runCli, startPeer, until } from "./helpers.js";
import { createRoom, sayInRoom } from "./rooms-peer.js";

const T = 180_000;

describe.each([
  ["Prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const)("lichen-chat group chats on %s", (_name, startServer) => {
  let server: XmppTestServer;
  let db: string;
  const cli = (...args: string[]) => runCli(db, args);

  beforeAll(async () => {
    requireBuiltCli();
    server = await startServer();
    await server.registerUser("alice", "alicepw");
    await server.registerUser("bob", "bobpw");
    db = join(mkdtempSync(join(tmpdir(), "lichen-chat-rooms-")), "alice.db");
  }, T);
  afterAll(async () => {
    await server?.stop();
  }, T);

  it(
    "join, rooms, send to the room, tail as room: nick: body, leave; a refused join is one clear error",
    async () => {
      const bob = await startPeer(server.c2sPort, "bob", "bobpw", { resource: "rooms" });
      const name = Math.random().toString(36).slice(2, 8);
      const room = `lounge-${name}@${server.mucDomain}`;
      const closed = `closed-${name}@${server.mucDomain}`;
      try {
        await createRoom(bob, room);
        await createRoom(bob, closed, { membersOnly: true });
        const login = await cli(...loginArgs("alice", server.c2sPort));
        expect(login.code, login.stderr).toBe(0);

        // "bob" is taken: the CLI says so and joins as bob_2.
        const joined = await cli("join", room, "--nick", "bob");
        expect(joined.code, joined.stderr).toBe(0);
        expect(joined.stderr).toContain("nick bob is taken");
        expect(joined.stdout.trim()).toBe(`joined ${room} as bob_2`);
        const rooms = JSON.parse((await cli("rooms", "--json")).stdout) as {
          jid: string;
          status: string;
          occupants: { nick: string }[];
        }[];
        expect(rooms).toEqual([
          expect.objectContaining({
            jid: room,
            status: "joined",
            nick: "bob_2",
            bookmarked: true,
            autojoin: true,
          }),
        ]);
        expect(rooms[0]!.occupants.map((o) => o.nick)).toEqual(["bob", "bob_2"]);

        // bob talks while alice's stream is hibernated; her send resumes it and stores his line.
        await sayInRoom(bob, room, "hello room");
        const sent = await cli("send", room, "hi", "all");
        expect(sent.code, sent.stderr).toBe(0);
        await until(
          () => bob.received.some((m) => m.from === `${room}/bob_2` && m.body === "hi all"),
          "bob sees alice's room message",
        );
        const tail = (await cli("tail", room)).stdout.trim().split("\n");
        // Both lines once, in either order: alice's line is stored as soon as the resume is
        // online, bob's arrives in the server's replay after <resumed/> and, without a delay
        // stamp, is timed at its arrival — the same second, either side of hers (seen once on
        // ejabberd in CI: hers first).
        expect(tail).toEqual(
          expect.arrayContaining([
            expect.stringMatching(new RegExp(`  ${room}: bob: hello room$`)),
            expect.stringMatching(new RegExp(`  → ${room}: hi all \\[`)),
          ]),
        );
        expect(tail).toHaveLength(2); // our reflected line is the same row

        const list = await cli("rooms");
        expect(list.stdout).toMatch(new RegExp(`${room}\\s+joined\\s+bob_2\\s+2`));

        // A members-only room refuses: exit 1 with the condition, not re-joined later.
        const refused = await cli("join", closed);
        expect(refused.code).toBe(1);
        expect(refused.stderr).toContain(`${closed} refused the join: registration-required`);

        const left = await cli("leave", room);
        expect(left.code, left.stderr).toBe(0);
        expect(left.stdout.trim()).toBe(`left ${room}`);
        const after = JSON.parse((await cli("rooms", "--json")).stdout) as Record<
          string,
          unknown
        >[];
        expect(after.find((r) => r.jid === room)).toMatchObject({
          status: "left",
          nick: null,
          autojoin: false,
          occupants: [],
        });
        expect(after.find((r) => r.jid === closed)).toMatchObject({ status: "error", nick: null });
        const again = await cli("leave", room);
        expect(again.code).toBe(1);
        expect(again.stderr).toContain(`not in ${room}`);
      } finally {
        await bob.stop();
      }
    },
    T,
  );

  it(
    "invitations: listed from the database, accept joins (the room's subject in rooms), decline goes through the room, a second answer is a clear error",
    async () => {
      await server.registerUser("dana", "danapw");
      const danaDb = join(db, "..", "dana.db");
      const dana = (...args: string[]) => runCli(danaDb, args);
      const bob = await startPeer(server.c2sPort, "bob", "bobpw", { resource: "inviter" });
      const name = Math.random().toString(36).slice(2, 8);
      const direct = `lunch-${name}@${server.mucDomain}`;
      const mediated = `board-${name}@${server.mucDomain}`;
      try {
        await createRoom(bob, direct);
        await createRoom(bob, mediated);
        await bob.xmpp.send(
          xml("message", { to: direct, type: "groupchat" }, xml("subject", {}, "Lunch plans")),
        );
        const login = await dana(...loginArgs("dana", server.c2sPort));
        expect(login.code, login.stderr).toBe(0);
        expect((await dana("invitations")).stdout.trim()).toBe("no invitations");

        // Both reach dana's hibernated stream; the main app woken in the background stores them.
        await bob.xmpp.send(
          xml(
            "message",
            { to: "dana@localhost" },
            xml("x", { xmlns: "jabber:x:conference", jid: direct, reason: "food" }),
          ),
        );
        await bob.xmpp.send(
          xml(
            "message",
            { to: mediated },
            xml(
              "x",
              { xmlns: "http://jabber.org/protocol/muc#user" },
              xml("invite", { to: "dana@localhost" }, xml("reason", {}, "quarterly")),
            ),
          ),
        );
        await until(async () => {
          const woke = await dana("background", "--deadline-ms", "20000");
          expect(woke.code, woke.stderr).toBe(0);
          return (await dana("invitations")).stdout.includes(mediated);
        }, "both invitations stored");
        const listed = JSON.parse((await dana("invitations", "--json")).stdout) as {
          room: string;
        }[];
        expect(listed.map((i) => i.room).sort()).toEqual([direct, mediated].sort());
        expect(listed.find((i) => i.room === direct)).toMatchObject({
          from: "bob@localhost",
          kind: "direct",
          reason: "food",
          hasPassword: false,
        });
        expect(listed.find((i) => i.room === mediated)).toMatchObject({
          kind: "mediated",
          reason: "quarterly",
        });
        const table = (await dana("invitations")).stdout;
        expect(table).toMatch(new RegExp(`${direct}\\s+bob@localhost\\s+direct\\s+\\S+\\s+food`));

        const accepted = await dana("invitations", "accept", direct, "--nick", "dee");
        expect(accepted.code, accepted.stderr).toBe(0);
        expect(accepted.stdout.trim()).toBe(`joined ${direct} as dee`);
        const rooms = await dana("rooms");
        expect(rooms.stdout).toMatch(new RegExp(`${direct}\\s+joined\\s+dee\\s+2\\s+Lunch plans`));
        expect(JSON.parse((await dana("rooms", "--json")).stdout)).toEqual([
          expect.objectContaining({ jid: direct, subject: "Lunch plans" }),
        ]);

        const declined = await dana("invitations", "decline", mediated, "--reason", "busy");
        expect(declined.code, declined.stderr).toBe(0);
        expect(declined.stdout.trim()).toBe(`declined ${mediated}`);
        // The room tells bob (XEP-0045 §7.8.2).
        await until(
          () =>
            bob.received.some(
              (m) =>
                m.from === mediated &&
                (m.stanza as { toString(): string }).toString().includes("busy"),
            ),
          "bob gets the decline through the room",
        );
        expect(JSON.parse((await dana("invitations", "--json")).stdout)).toEqual([]);
        const again = await dana("invitations", "accept", mediated);
        expect(again.code).toBe(1);
        expect(again.stderr).toContain(`no invitation to ${mediated}`);
      } finally {
        await bob.stop();
      }
    },
    T,
  );
});
