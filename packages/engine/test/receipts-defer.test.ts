// Issue 17: receipts configurable in the NSE. By default the NSE stores a message's receipt
// request instead of answering it (receipts: "defer"), so a push on a slow link spends its bytes
// on the messages; the main app sends the deferred receipt once it is online — exactly once,
// even across further foreground/background cycles.
import { randomUUID } from "node:crypto";
import { openStore, type Store } from "@lichen/store";
import xml from "@xmpp/xml";
import type { Element } from "@xmpp/xml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppController, handlePush } from "../src/index.js";
import { SERVERS, startPeer, until, useEngineEnv } from "./helpers.js";

const T = 120_000;

describe.each(SERVERS)("deferred receipts on %s", (_kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-receipts-" });
  let nseStore: Store;
  beforeAll(() => {
    nseStore = openStore({ path: env.db, role: "nse" });
  });
  afterAll(() => nseStore?.close());

  it(
    "the NSE sends no receipt; the main app sends it afterwards, exactly once",
    async () => {
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const receiptsFor = (id: string) =>
        bob.received.filter(
          (m) => (m.stanza as Element).getChild("received", "urn:xmpp:receipts")?.attrs.id === id,
        ).length;
      try {
        const app = new AppController(env.store, env.config(), { reconnect: false });
        await app.foreground();
        await app.background();
        const id = randomUUID();
        await bob.xmpp.send(
          xml(
            "message",
            { to: "alice@localhost", type: "chat", id },
            xml("body", {}, `defer-${id}`),
            xml("request", { xmlns: "urn:xmpp:receipts" }),
          ),
        );
        await bob.barrier();
        const r = await handlePush({ store: nseStore, session: env.config(), lingerMs: 0 });
        expect(r.outcome).toBe("synced");
        expect(r.notifications.some((n) => n.kind === "alert" && n.body === `defer-${id}`)).toBe(
          true,
        );
        // The NSE drained its acks before leaving: whatever it sent has been routed to bob, and
        // bob's ping round trip comes after it.
        await bob.barrier();
        expect(receiptsFor(id)).toBe(0);
        const deferred = env.store.sqlite
          .prepare("SELECT count(*) AS n FROM deferred_receipts WHERE message_id = ?")
          .get(id) as { n: number };
        expect(deferred.n).toBe(1);

        // The main app comes to the foreground: the receipt goes out.
        await app.foreground();
        await until(() => receiptsFor(id) === 1, "bob gets the deferred receipt", 20_000);
        await app.background();
        await app.foreground(); // again: nothing is sent twice
        await app.close();
        await bob.barrier();
        expect(receiptsFor(id)).toBe(1);
        expect(
          (
            env.store.sqlite.prepare("SELECT count(*) AS n FROM deferred_receipts").get() as {
              n: number;
            }
          ).n,
        ).toBe(0);
      } finally {
        await bob.stop();
      }
    },
    T,
  );
});
