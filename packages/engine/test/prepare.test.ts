import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore, tables, type Store } from "@lichen/store";
import { startProsody, type XmppTestServer } from "@lichen/test-servers";
import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DurableSession, ensureAccount } from "../src/index.js";
import { startPeer, until } from "./helpers.js";

const T = 120_000;

describe("prepare step (async work before the stanza transaction)", () => {
  let server: XmppTestServer;
  let db: string;
  let store: Store;
  let other: Store;
  beforeAll(async () => {
    server = await startProsody();
    await server.registerUser("alice", "alicepw");
    await server.registerUser("bob", "bobpw");
    db = join(mkdtempSync(join(tmpdir(), "lichen-prepare-")), "l.db");
    store = openStore({ path: db, role: "main" });
    ensureAccount(store, { id: "alice", jid: "alice@localhost" });
    other = openStore({ path: db, role: "nse" }); // another connection, as another process would
    store.write((tx) =>
      tx
        .insert(tables.chats)
        .values({ accountId: "alice", jid: "bob@localhost", name: "v1", createdAt: 1 })
        .run(),
    );
  }, T);
  afterAll(async () => {
    store?.close();
    other?.close();
    await server?.stop();
  }, T);

  it(
    "re-runs prepare when what it read changed before the transaction, and applies fresh data once",
    async () => {
      const chatName = (s: Store) =>
        s.read(
          (tx) =>
            tx
              .select({ name: tables.chats.name })
              .from(tables.chats)
              .where(
                and(eq(tables.chats.accountId, "alice"), eq(tables.chats.jid, "bob@localhost")),
              )
              .get()?.name ?? null,
        );
      let prepares = 0;
      const applied: unknown[] = [];
      const session = new DurableSession({
        store,
        accountId: "alice",
        service: `xmpp://127.0.0.1:${server.c2sPort}`,
        domain: "localhost",
        username: "alice",
        password: "alicepw",
        resource: "phone",
        prepare: async (stanza, s) => {
          if (!stanza.getChild("body")) return { data: null };
          prepares++;
          const seen = chatName(s);
          await new Promise((r) => setTimeout(r, 5)); // async work (e.g. decryption)
          // Another process changes what we read, once, between prepare and apply.
          if (prepares === 1)
            other.write((tx) => tx.update(tables.chats).set({ name: "v2" }).run());
          return { data: { seen }, stillValid: (tx) => chatName(tx.store) === seen };
        },
        onStanza: (_ctx, stanza, prepared) => {
          if (stanza.getChild("body")) applied.push(prepared);
        },
      });
      await session.connect();
      const bob = await startPeer(server.c2sPort, "bob", "bobpw");
      try {
        await bob.send("alice@localhost", "needs-prepare");
        await until(() => applied.length === 1, "stanza applied");
        expect(prepares).toBe(2);
        expect(applied).toEqual([{ seen: "v2" }]);
        const n = store.sqlite
          .prepare("SELECT count(*) AS n FROM messages WHERE body = 'needs-prepare'")
          .get() as { n: number };
        expect(n.n).toBe(1);
      } finally {
        await bob.stop();
        await session.close();
      }
    },
    T,
  );
});
