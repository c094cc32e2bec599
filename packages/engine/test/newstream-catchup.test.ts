// Issue 17: a new stream's catch-up moves each missed message once. Before, the server's offline
// delivery (on initial presence, XEP-0160) and the MAM catch-up (XEP-0313) both carried every
// message. Now the first MAM page goes before initial presence (Prosody 0.12 then skips the
// offline broadcast) and, where the server advertises XEP-0013 (ejabberd), the offline node's
// disco#info query suppresses the flood and a purge empties the store. A message sent while the
// catch-up runs is still stored (no window where it is neither delivered nor fetched).
import { randomUUID } from "node:crypto";
import { loadAccountState, saveAccountState } from "@lichen/store";
import xml, { type Element } from "@xmpp/xml";
import { describe, expect, it } from "vitest";
import { DurableSession } from "../src/index.js";
import { SERVERS, startPeer, until, useCountingLink, useEngineEnv } from "./helpers.js";

const T = 120_000;
const N = 10;

describe.each(SERVERS)("new stream catch-up on %s", (kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-newstream-" });
  const counting = useCountingLink(env); // alice through a relay that counts the bytes
  const { config, stored } = counting;

  it(
    `${N} messages missed while the stream expired arrive once (MAM), not also as offline delivery`,
    async () => {
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const prefix = `ns-${randomUUID().slice(0, 8)}-`;
      try {
        // A first login (features discovered), then background.
        const first = new DurableSession({ store: env.store, ...config() });
        expect(await first.connect(20_000)).toBe("new");
        await until(() => {
          const f = env.store.read((tx) => loadAccountState(tx, "alice")).features;
          return f.server.length > 0 && f.account.length > 0;
        }, "disco#info of server and account handled");
        await first.suspend();
        for (let i = 0; i < N; i++) await bob.send("alice@localhost", `${prefix}${i}`);
        await bob.barrier();
        // The stream expired meanwhile (as after the server's resumption timeout): a new stream.
        env.store.write((tx) => {
          const st = loadAccountState(tx, "alice");
          st.sm.streamId = null;
          saveAccountState(tx, "alice", st);
        });
        const session = new DurableSession({ store: env.store, ...config() });
        const direct: string[] = [];
        let archived = 0;
        session.on("stanza", (el: Element) => {
          if (el.name !== "message") return;
          if (el.getChild("result", "urn:xmpp:mam:2")) {
            if (el.toString().includes(prefix)) archived++;
          } else if (el.getChildText("body")?.startsWith(prefix)) direct.push(el.toString());
        });
        counting.link.resetBytes();
        let complete = false;
        session.on("mam-complete", () => (complete = true));
        expect(await session.connect(20_000)).toBe("new");
        await until(() => complete, "the MAM catch-up complete", 30_000);
        await until(() => stored(prefix) === N, `all ${N} stored`, 30_000);
        // Live delivery works after the catch-up: one more message arrives directly.
        await bob.send("alice@localhost", `${prefix}live`);
        await until(() => stored(prefix) === N + 1, "the live message stored", 20_000);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          session.syncBarrier(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error("no sync answer in 20 s")), 20_000);
          }),
        ]).finally(() => clearTimeout(timer));
        console.log(
          `newstream ${kind}: ${archived} via MAM, ${direct.length} direct (incl. the live one), ` +
            `${counting.link.bytes.down} B down, ${counting.link.bytes.up} B up`,
        );
        await session.suspend();
        expect(archived).toBe(N);
        expect(direct.filter((d) => !d.includes(`${prefix}live`))).toEqual([]);
        expect(stored(prefix)).toBe(N + 1);
      } finally {
        await bob.stop();
      }
    },
    T,
  );

  it(
    "a message first fetched by the catch-up gets its receipt, once (it arrived before our presence)",
    async () => {
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const id = `rr-${randomUUID()}`;
      try {
        const first = new DurableSession({ store: env.store, ...config() });
        await first.connect(20_000);
        await first.syncBarrier();
        await first.close(); // logged out: the next connect is a new stream with a catch-up
        await bob.xmpp.send(
          xml(
            "message",
            { to: "alice@localhost", type: "chat", id },
            xml("body", {}, `${id}-body`),
            xml("request", { xmlns: "urn:xmpp:receipts" }),
          ),
        );
        await bob.barrier();
        env.store.write((tx) => {
          const st = loadAccountState(tx, "alice");
          st.mam.gapOpen = true; // as after a stream that could not be resumed
          saveAccountState(tx, "alice", st);
        });
        const session = new DurableSession({ store: env.store, ...config() });
        let complete = false;
        session.on("mam-complete", () => (complete = true));
        expect(await session.connect(20_000)).toBe("new");
        await until(() => complete, "the MAM catch-up complete", 30_000);
        const receipts = () =>
          bob.received.filter(
            (m) => (m.stanza as Element).getChild("received", "urn:xmpp:receipts")?.attrs.id === id,
          ).length;
        await until(() => receipts() > 0 || undefined, "the receipt at bob", 20_000);
        await session.syncBarrier();
        await bob.barrier();
        expect(stored(`${id}-body`)).toBe(1);
        expect(receipts()).toBe(1);
        await session.suspend();
      } finally {
        await bob.stop();
      }
    },
    T,
  );
});
