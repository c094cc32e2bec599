import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadAccountState, openStore, type Store } from "@lichen/store";
import {
  startEjabberd,
  startProsody,
  streamManagementEnabled,
  type XmppTestServer,
} from "@lichen/test-servers";
import { client, xml } from "@xmpp/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DurableSession, ensureAccount } from "../src/index.js";
import { startPeer, until } from "./helpers.js";

const T = 120_000;

describe.each([
  ["prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const)("protocol on %s", (_kind, start) => {
  let server: XmppTestServer;
  let store: Store;
  const opts = () => ({
    store,
    accountId: "alice",
    service: `xmpp://127.0.0.1:${server.c2sPort}`,
    domain: "localhost",
    username: "alice",
    password: "alicepw",
    resource: "phone",
  });

  beforeAll(async () => {
    server = await start();
    await server.registerUser("alice", "alicepw");
    await server.registerUser("bob", "bobpw");
    store = openStore({
      path: join(mkdtempSync(join(tmpdir(), "lichen-proto-")), "l.db"),
      role: "main",
    });
    ensureAccount(store, { id: "alice", jid: "alice@localhost", resource: "phone" });
  }, T);
  afterAll(async () => {
    store?.close();
    await server?.stop();
  }, T);

  it(
    "new stream: disco features stored, versioned roster fetched (unchanged next time), carbons copy messages from another resource, CSI persisted",
    async () => {
      // Give alice a roster entry from another client first.
      const desk = client({
        service: `xmpp://127.0.0.1:${server.c2sPort}`,
        domain: "localhost",
        username: "alice",
        password: "alicepw",
        resource: "desk",
      });
      desk.on("error", () => {});
      desk.reconnect.stop();
      await desk.start();
      await streamManagementEnabled(desk);
      await desk.iqCaller.request(
        xml(
          "iq",
          { type: "set" },
          xml(
            "query",
            { xmlns: "jabber:iq:roster" },
            xml("item", { jid: "bob@localhost", name: "Bob" }),
          ),
        ),
      );

      const s1 = new DurableSession(opts());
      const rosters: {
        unchanged: boolean;
        version: string | null;
        items?: { jid: string; name: string | null }[];
      }[] = [];
      s1.on("roster", (r) => rosters.push(r));
      const carbons: boolean[] = [];
      s1.on("carbons", (ok: boolean) => carbons.push(ok));
      expect(await s1.connect()).toBe("new");
      await until(() => rosters.length > 0 && carbons.length > 0, "roster and carbons answers");
      expect(rosters[0]!.unchanged).toBe(false);
      expect(rosters[0]!.items).toEqual([
        expect.objectContaining({ jid: "bob@localhost", name: "Bob" }),
      ]);
      expect(carbons).toEqual([true]);
      const st = store.read((tx) => loadAccountState(tx, "alice"));
      expect(st.features.server).toContain("urn:xmpp:carbons:2");
      expect(st.features.account).toContain("urn:xmpp:mam:2");
      expect(st.rosterVersion).not.toBeNull();

      // Carbons: alice's other resource writes to bob; the copy is stored as outgoing.
      await desk.send(
        xml(
          "message",
          { to: "bob@localhost", type: "chat", id: "c1" },
          xml("body", {}, "sent-from-desk"),
        ),
      );
      await until(
        () =>
          (
            store.sqlite
              .prepare("SELECT direction FROM messages WHERE body = 'sent-from-desk'")
              .get() as { direction: string } | undefined
          )?.direction === "out",
        "carbon copy stored as outgoing",
      );

      s1.setCsi("inactive");
      expect(store.read((tx) => loadAccountState(tx, "alice")).csi).toBe("inactive");
      await s1.close(); // logout: the next login is a new stream

      const s2 = new DurableSession(opts());
      const rosters2: { unchanged: boolean }[] = [];
      s2.on("roster", (r) => rosters2.push(r));
      expect(await s2.connect()).toBe("new");
      await until(() => rosters2.length > 0, "second roster answer");
      // XEP-0237 with an unchanged roster: Prosody answers empty; ejabberd may resend the items.
      expect(store.read((tx) => loadAccountState(tx, "alice")).rosterVersion).toBe(
        st.rosterVersion,
      );
      await s2.close();
      await desk.stop();
    },
    T,
  );

  it(
    "XEP-0184: a receipt request is answered and a receipt marks the outgoing message received",
    async () => {
      const bob = await startPeer(server.c2sPort, "bob", "bobpw");
      const s = new DurableSession(opts());
      await s.connect();
      try {
        await bob.xmpp.send(
          xml(
            "message",
            { to: "alice@localhost", type: "chat", id: "r1" },
            xml("body", {}, "with-receipt"),
            xml("request", { xmlns: "urn:xmpp:receipts" }),
          ),
        );
        await until(
          () =>
            bob.received.some((m) =>
              (m.stanza as { getChild(n: string, ns: string): unknown }).getChild(
                "received",
                "urn:xmpp:receipts",
              ),
            ),
          "receipt at bob",
        );
        const originId = s.sendMessage("bob@localhost", "please-ack");
        const got = await until(
          () => bob.received.find((m) => m.body === "please-ack"),
          "bob got message",
        );
        await bob.xmpp.send(
          xml(
            "message",
            { to: got.from },
            xml("received", { xmlns: "urn:xmpp:receipts", id: originId }),
          ),
        );
        await until(
          () =>
            (
              store.sqlite
                .prepare("SELECT delivery_state AS d FROM messages WHERE origin_id = ?")
                .get(originId) as { d: string } | undefined
            )?.d === "received",
          "delivery state received",
        );
      } finally {
        await s.close();
        await bob.stop();
      }
    },
    T,
  );
});
