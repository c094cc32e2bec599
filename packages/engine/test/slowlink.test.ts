// Issue 17: at 32 kbit/s with a 200 ms round trip, a push must deliver what the server queued for
// the frozen app. The main app logs in through the slow link (leaving the server's login answers
// unacknowledged, replayed first on the resume), goes to background, bob sends 20 messages, and
// the NSE resumes through the same slow link: it may call the account "synced" only once all 20
// are stored. A second case with stanzas larger than 2 KB (OMEMO-sized), which take more than
// half a second each to cross the line.
import { randomUUID } from "node:crypto";
import { openStore, type Store } from "@lichen/store";
import { startFlakyLink, type FlakyLink } from "@lichen/test-servers";
import xml from "@xmpp/xml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppController, handlePush } from "../src/index.js";
import { SERVERS, startPeer, useEngineEnv } from "./helpers.js";

const T = 180_000;
/** 32 kbit/s each way. */
const BYTES_PER_SECOND = 4000;
/** One way: 200 ms round trip. */
const DELAY_MS = 100;
const COUNT = 20;

describe.each(SERVERS)("NSE over a 32 kbit/s link with 200 ms RTT on %s", (_kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-slowlink-" });
  let nseStore: Store; // the NSE's own connection to the same file, as another process has
  let link: FlakyLink;
  beforeAll(async () => {
    nseStore = openStore({ path: env.db, role: "nse" });
    link = await startFlakyLink({
      port: env.server.c2sPort,
      bytesPerSecond: BYTES_PER_SECOND,
      delayMs: DELAY_MS,
    });
  });
  afterAll(async () => {
    nseStore?.close();
    await link?.close();
  });
  const slowConfig = () => ({ ...env.config(), service: `xmpp://127.0.0.1:${link.port}` });

  const storedWithPrefix = (prefix: string) =>
    (
      nseStore.sqlite
        .prepare("SELECT count(*) AS n FROM messages WHERE account_id = 'alice' AND body LIKE ?")
        .get(`${prefix}%`) as { n: number }
    ).n;

  /**
   * Alice's app logs in (or resumes) through the slow link and goes to background; bob sends
   * COUNT messages of `bodyBytes` (origin-id and receipt request, as a chat client does) while
   * she is away; then one push. Returns what the NSE reported and stored.
   */
  async function queuedThenPush(bodyBytes: number) {
    const prefix = `slow-${bodyBytes}-${randomUUID().slice(0, 8)}-`;
    const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
    const app = new AppController(env.store, slowConfig(), { reconnect: false });
    try {
      await app.foreground();
      await app.background(); // frozen: TCP dropped, the stream kept for resumption
      for (let i = 0; i < COUNT; i++) {
        const head = `${prefix}${String(i).padStart(2, "0")} `;
        const body = head + "x".repeat(Math.max(0, bodyBytes - head.length));
        await bob.xmpp.send(
          xml(
            "message",
            { to: "alice@localhost", type: "chat", id: randomUUID() },
            xml("body", {}, body),
            xml("origin-id", { xmlns: "urn:xmpp:sid:0", id: randomUUID() }),
            xml("request", { xmlns: "urn:xmpp:receipts" }),
          ),
        );
      }
      await bob.barrier(); // the server has routed all of them to alice's (hibernated) session
      link.resetBytes();
      const t0 = Date.now();
      const r = await handlePush({
        store: nseStore,
        session: slowConfig(),
        deadlineMs: 25_000,
        lingerMs: 100,
      });
      const figures = {
        outcome: r.outcome,
        stored: storedWithPrefix(prefix),
        alerts: r.notifications.filter((n) => n.kind === "alert").length,
        ms: Date.now() - t0,
        bytes: link.bytes,
      };
      console.log(`slowlink ${_kind} ${bodyBytes}-byte bodies: ${JSON.stringify(figures)}`);
      return figures;
    } finally {
      await app.close();
      await bob.stop();
    }
  }

  it(
    "resume after a login through the link: 20 messages of ~100 bytes, all stored before 'synced'",
    async () => {
      const f = await queuedThenPush(100);
      // Both together, so a failure shows what was stored when the NSE said "synced".
      expect({ outcome: f.outcome, stored: f.stored }).toEqual({
        outcome: "synced",
        stored: COUNT,
      });
    },
    T,
  );

  it(
    "20 messages of 2 KB (each takes over half a second to cross): all stored before 'synced'",
    async () => {
      const f = await queuedThenPush(2048);
      expect({ outcome: f.outcome, stored: f.stored }).toEqual({
        outcome: "synced",
        stored: COUNT,
      });
    },
    T,
  );
});
