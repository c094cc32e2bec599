import { loadAccountState, saveAccountState, tables } from "@lichen/store";
import { startFlakyLink, streamManagementEnabled } from "@lichen/test-servers";
import { client, xml } from "@xmpp/client";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { AppController, MessageQueuedError, type DurableSession } from "../src/index.js";
import { SERVERS, startPeer, until, useEngineEnv } from "./helpers.js";

const T = 180_000;

describe.each(SERVERS)("own messages on %s", (_kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-outgoing-" });
  const rows = (originId: string) =>
    env.store.read((tx) =>
      tx.select().from(tables.messages).where(eq(tables.messages.originId, originId)).all(),
    );

  it(
    "send() tells what became of a message: acked on this connection, or queued (offline, or the connection ended first) and sent later — message-sent once the server has it",
    async () => {
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const link = await startFlakyLink({ port: env.server.c2sPort });
      const app = new AppController(
        env.store,
        { ...env.config(), service: `xmpp://127.0.0.1:${link.port}` },
        { reconnect: false },
      );
      try {
        await app.foreground();
        const s = app.session!;
        const sentEvents: string[] = [];
        s.on("message-sent", (e: { originId: string }) => sentEvents.push(e.originId));

        // Online: acked resolves once the server acknowledged it, and the row says sent.
        const online = s.send("bob@localhost", "send-online");
        await online.acked;
        expect(rows(online.originId)[0]!.deliveryState).toBe("sent");
        expect(sentEvents).toEqual([online.originId]);

        // Many in flight at once share one set of listeners (not three each: Node warned of a
        // listener leak past ten), and each resolves with its own <a/>.
        const events = ["acked", "offline", "session-lost"] as const;
        const listeners = () => events.map((e) => s.listenerCount(e));
        const before = listeners();
        const burst = Array.from({ length: 40 }, (_, i) => s.send("bob@localhost", `burst-${i}`));
        expect(listeners()).toEqual(before);
        await Promise.all(burst.map((b) => b.acked));
        for (const b of burst) expect(rows(b.originId)[0]!.deliveryState).toBe("sent");

        // The connection ends before the ack: rejected as queued, never lost.
        link.cut();
        await until(() => !s.online || undefined, "offline after the cut");
        const offline = s.send("bob@localhost", "send-offline");
        const err = await offline.acked.catch((e: unknown) => e);
        expect(err).toBeInstanceOf(MessageQueuedError);
        expect(err).toMatchObject({ reason: "offline", originId: offline.originId });
        expect(rows(offline.originId)[0]!.deliveryState).toBe("pending");

        link.restore();
        await app.background();
        await app.foreground();
        expect(app.session).toBe(s); // one session across background/foreground: listeners stay
        await until(() => sentEvents.includes(offline.originId) || undefined, "message-sent later");
        expect(rows(offline.originId)[0]!.deliveryState).toBe("sent");
        await until(
          () => bob.received.some((m) => m.body === "send-offline") || undefined,
          "bob gets the queued message",
        );

        // Written, then the connection ends before the server's <a/> can come back.
        const inFlight = s.send("bob@localhost", "send-in-flight");
        const alsoInFlight = [
          s.send("bob@localhost", "in-flight-2"),
          s.send("bob@localhost", "in-flight-3"),
        ];
        link.cut();
        const err2 = await inFlight.acked.catch((e: unknown) => e);
        expect(err2).toMatchObject({ name: "MessageQueuedError", reason: "connection-ended" });
        for (const m of alsoInFlight)
          expect(await m.acked.catch((e: unknown) => e)).toMatchObject({
            reason: "connection-ended",
            originId: m.originId,
          });
        link.restore();
        await app.background();
        await app.foreground();
        await until(
          () => bob.received.some((m) => m.body === "send-in-flight") || undefined,
          "bob gets the message that was in flight",
        );
        await until(
          () => rows(inFlight.originId)[0]!.deliveryState === "sent" || undefined,
          "marked sent",
        );
        expect(sentEvents.filter((id) => id === inFlight.originId)).toHaveLength(1);
      } finally {
        await app.close();
        await bob.stop();
        await link.close();
      }
    },
    T,
  );

  it(
    "acked → sent, with a chat row; MAM and carbon copies never make a second row, they add the archive id",
    async () => {
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const app = new AppController(env.store, env.config());
      const sessions: DurableSession[] = [];
      app.on("session", (s: DurableSession) => sessions.push(s));
      try {
        await app.foreground();
        expect(sessions).toEqual([app.session]); // announced before connect
        const s = app.session!;
        const acked = new Promise((r) => s.once("acked", r));
        const originId = s.sendMessage("bob@localhost", "from the phone");
        expect(rows(originId)[0]!.deliveryState).toBe("pending");
        await acked;
        await until(() => rows(originId)[0]!.deliveryState === "sent", "sent after <a/>");
        const chat = env.store.read((tx) =>
          tx.select().from(tables.chats).where(eq(tables.chats.jid, "bob@localhost")).get(),
        );
        expect(chat?.lastActivityAt).toBeGreaterThan(0);

        // Another resource of alice sends: its carbon arrives here and is stored once, as ours.
        const desk = client({
          service: `xmpp://127.0.0.1:${env.server.c2sPort}`,
          domain: "localhost",
          username: "alice",
          password: "alicepw",
          resource: "desk",
        });
        desk.on("error", () => {});
        desk.reconnect.stop();
        await desk.start();
        await streamManagementEnabled(desk);
        await desk.send(
          xml(
            "message",
            { to: "bob@localhost", type: "chat", id: "desk-1" },
            xml("body", {}, "from the desk"),
            xml("origin-id", { xmlns: "urn:xmpp:sid:0", id: "desk-1" }),
          ),
        );
        await until(() => rows("desk-1").length === 1, "carbon of the desk's message");
        await desk.stop();
        expect(rows("desk-1")[0]).toMatchObject({ direction: "out", fromJid: "alice@localhost" });

        // Logged out, and the catch-up mark lost (as after a long gap): the MAM catch-up brings
        // both messages back from the archive.
        await s.close();
        env.store.write((tx) => {
          const st = loadAccountState(tx, "alice");
          st.mam.lastStanzaId = null;
          saveAccountState(tx, "alice", st);
        });
        const again = env.session();
        const copies: string[] = [];
        again.on("stanza", (st: { toString(): string }) => {
          const text = st.toString();
          if (text.includes("urn:xmpp:mam:2") && text.includes("<forwarded")) copies.push(text);
        });
        const caughtUp = new Promise<void>((r) => again.once("mam-complete", () => r()));
        expect(await again.connect()).toBe("new");
        await caughtUp;
        expect(copies.filter((c) => c.includes(originId) || c.includes("desk-1"))).toHaveLength(2);
        for (const id of [originId, "desk-1"]) {
          const r = rows(id);
          expect(r).toHaveLength(1);
          expect(r[0]!.stanzaIdBy).toBe("alice@localhost"); // the archive's id was attached
          expect(r[0]!.stanzaId).toBeTruthy();
        }
        await again.close();
      } finally {
        await app.close();
        await bob.stop();
      }
    },
    T,
  );
});
