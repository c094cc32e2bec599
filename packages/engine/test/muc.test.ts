import { tables } from "@lichen/store";
import { PERSISTENT_ROOM, roomConfigForm } from "@lichen/test-kit";
import { streamManagementEnabled, type XmppTestServer } from "@lichen/test-servers";
import { client, xml } from "@xmpp/client";
import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { joinRoom } from "../src/index.js";
import { MAM_PAGE } from "../src/mam.js";
import { SERVERS, until, useEngineEnv } from "./helpers.js";

const T = 180_000;
const NS_MUC = "http://jabber.org/protocol/muc";

interface Stanza {
  is(n: string): boolean;
  attrs: Record<string, string>;
  getChild(n: string, ns?: string): Stanza | undefined;
  getChildren(n: string): Stanza[];
}

/** bob, a plain client, creates a persistent archived room and talks in it. */
async function roomOwner(server: XmppTestServer, room: string) {
  const xmpp = client({
    service: `xmpp://127.0.0.1:${server.c2sPort}`,
    domain: "localhost",
    username: "bob",
    password: "bobpw",
    resource: "desk",
  });
  xmpp.on("error", () => {});
  xmpp.reconnect.stop();
  const selfPresence = new Promise<Stanza>((resolve) =>
    xmpp.on("stanza", (s: Stanza) => {
      const x = s.is("presence") ? s.getChild("x", `${NS_MUC}#user`) : undefined;
      if (x?.getChildren("status").some((st) => st.attrs.code === "110")) resolve(s);
    }),
  );
  await xmpp.start();
  await streamManagementEnabled(xmpp);
  await xmpp.send(xml("presence", { to: `${room}/bob` }, xml("x", { xmlns: NS_MUC })));
  await selfPresence;
  // Instant room, persistent, archived (a no-op where it already is).
  await xmpp.iqCaller.set(roomConfigForm(xml, PERSISTENT_ROOM), room);
  let n = 0;
  // The room reflects each groupchat message to its sender once it has handled (and archived) it.
  const echoed = new Set<string>();
  xmpp.on("stanza", (s: Stanza) => {
    if (s.is("message") && s.attrs.type === "groupchat" && s.attrs.id) echoed.add(s.attrs.id);
  });
  return {
    /** Resolves once the room reflected the message: a MAM query after it will find it. */
    say: async (body: string) => {
      const id = `g${n++}`;
      await xmpp.send(xml("message", { to: room, type: "groupchat", id }, xml("body", {}, body)));
      await until(() => echoed.has(id) || undefined, `the room reflects ${body}`);
    },
    stop: () => xmpp.stop().catch(() => {}),
  };
}

describe.each(SERVERS)("group chat catch-up with a per-room MAM mark on %s", (_kind, start) => {
  const env = useEngineEnv(start, { users: ["alice", "bob"], prefix: "lichen-muc-" });

  const session = () => env.session();
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
  const mark = (room: string) =>
    env.store.read((tx) =>
      tx
        .select()
        .from(tables.mamMarks)
        .where(and(eq(tables.mamMarks.accountId, "alice"), eq(tables.mamMarks.archiveJid, room)))
        .get(),
    );

  it(
    "join fetches the room's archive, live messages move the mark, a rejoin fetches exactly the gap",
    async () => {
      const room = `lounge-${Math.random().toString(36).slice(2, 8)}@${env.server.mucDomain}`;
      const bob = await roomOwner(env.server, room);
      try {
        for (const b of ["m1", "m2", "m3"]) await bob.say(b);

        const alice = session();
        await alice.connect();
        const caughtUp = new Promise((r) => alice.once("room-mam-complete", r));
        alice.write((ctx) => joinRoom(ctx, room, "alice"));
        expect(await caughtUp).toBe(room);
        expect(bodies(room)).toEqual(["m1", "m2", "m3"]);
        const first = mark(room)!;
        expect(first.gapOpen).toBe(false);
        expect(first.lastArchiveId).toBeTruthy();

        // Live: stored once, and the room's stanza-id becomes the mark.
        await bob.say("m4");
        await until(() => bodies(room).includes("m4"), "live m4");
        await until(() => mark(room)!.lastArchiveId !== first.lastArchiveId, "mark advanced");
        const liveMark = mark(room)!.lastArchiveId;
        const m4 = env.store.read((tx) =>
          tx.select().from(tables.messages).where(eq(tables.messages.body, "m4")).get(),
        )!;
        expect(m4.stanzaId).toBe(liveMark);
        expect(m4.stanzaIdBy).toBe(room);

        // Logged out (stream closed, room left by the server); bob talks on.
        await alice.close();
        for (const b of ["m5", "m6"]) await bob.say(b);

        // A new stream re-joins the remembered room and fetches only what came after the mark.
        const again = session();
        const caughtUp2 = new Promise((r) => again.once("room-mam-complete", r));
        const archived: string[] = [];
        again.on("stanza", (s: Stanza & { getChildText(n: string): string | null }) => {
          const fwd = s
            .getChild("result", "urn:xmpp:mam:2")
            ?.getChild("forwarded", "urn:xmpp:forward:0");
          const body = (fwd?.getChild("message") as typeof s | undefined)?.getChildText("body");
          if (s.attrs.from === room && body) archived.push(body);
        });
        expect(await again.connect()).toBe("new");
        await caughtUp2;
        const all = env.store.read((tx) =>
          tx.select().from(tables.messages).where(eq(tables.messages.chatJid, room)).all(),
        );
        expect(all.map((m) => m.body).sort()).toEqual(["m1", "m2", "m3", "m4", "m5", "m6"]);
        // Only m5 and m6 travelled: the query started after the room's mark.
        expect(archived.sort()).toEqual(["m5", "m6"]);
        expect(mark(room)!.gapOpen).toBe(false);
        await again.close();
      } finally {
        await bob.stop();
      }
    },
    T,
  );

  it(
    "a room empty at the join: after a restart every message since is fetched, not just the newest page",
    async () => {
      const room = `empty-${Math.random().toString(36).slice(2, 8)}@${env.server.mucDomain}`;
      const bob = await roomOwner(env.server, room);
      try {
        const alice = session();
        await alice.connect();
        const first = new Promise<void>((r) =>
          alice.on("room-mam-complete", (done) => done === room && r()),
        );
        alice.write((ctx) => joinRoom(ctx, room, "alice"));
        await first;
        expect(mark(room)!.lastArchiveId).toBeNull(); // nothing to continue from but the time
        await alice.close();
        const n = MAM_PAGE + 10; // more than one page
        for (let i = 0; i < n; i++) await bob.say(`e${i}`);
        const again = session();
        // (the first test's room is re-joined too: wait for this one)
        const caughtUp = new Promise<void>((r) =>
          again.on("room-mam-complete", (done) => done === room && r()),
        );
        expect(await again.connect()).toBe("new");
        await caughtUp;
        expect(bodies(room)).toHaveLength(n);
        await again.close();
      } finally {
        await bob.stop();
      }
    },
    T,
  );
});
