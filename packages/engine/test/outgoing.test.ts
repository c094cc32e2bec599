import { loadAccountState, saveAccountState, tables } from "@lichen/store";
import { streamManagementEnabled } from "@lichen/test-servers";
import { client, xml } from "@xmpp/client";
import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { AppController, type DurableSession } from "../src/index.js";
import { SERVERS, startPeer, until, useEngineEnv } from "./helpers.js";

const T = 180_000;

describe.each(SERVERS)("own messages on %s", (_kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-outgoing-" });
  const rows = (originId: string) =>
    env.store.read((tx) =>
      tx.select().from(tables.messages).where(eq(tables.messages.originId, originId)).all(),
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
        const caughtUp = new Promise((r) => again.once("mam-complete", r));
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
