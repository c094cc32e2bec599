// A flood of messages while the app is frozen: one push's NSE stores them all and shows ONE
// notification (the newest message, "+N more", count), its JSON result stays small whatever the
// flood, and the next push finds nothing left (synced at once, silent). Before, the result held
// one alert per stored message (4,700 alerts in one JSON document).
//
// Sizes: 2,000 on Prosody — more than its stream-management queue keeps for a hibernated session
// (smacks_max_queue_size, 500), so the session is gone and the NSE logs in and pages the archive
// (MAM) — and 1,000 on ejabberd, which keeps them all for the resume but takes ~30 ms per message
// to route them into the hibernated session on a loaded 2-core CI machine (a minute for 2,000).
import { openStore, type Store } from "@lichen/store";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppController, handlePush, MAX_SUMMARY_CHATS } from "../src/index.js";
import { SERVERS, startPeer, useEngineEnv } from "./helpers.js";

const T = 300_000;
const FLOOD: Record<string, number> = { prosody: 2000, ejabberd: 1000 };

describe.each(SERVERS)("a flood while frozen on %s", (kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-flood-" });
  let nseStore: Store;
  beforeAll(() => {
    nseStore = openStore({ path: env.db, role: "nse" });
  });
  afterAll(() => nseStore?.close());
  const stored = () =>
    (
      nseStore.sqlite
        .prepare("SELECT count(*) AS n FROM messages WHERE body LIKE 'flood-%'")
        .get() as { n: number }
    ).n;

  it(
    "one push stores the whole flood with one bounded notification; the next push has nothing left",
    async () => {
      const n = FLOOD[kind]!;
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const app = new AppController(env.store, env.config());
      try {
        await app.foreground();
        await app.background(); // frozen: the stream is kept for resumption
        for (let i = 0; i < n; i++) await bob.send("alice@localhost", `flood-${i}`);
        // Everything routed before the push: the server answers bob's ping after his messages.
        // A ping may time out (30 s) while the server still works through the flood: ask again.
        for (let attempt = 1; ; attempt++) {
          try {
            await bob.barrier();
            break;
          } catch (err) {
            if (attempt >= 5) throw err;
          }
        }

        const r1 = await handlePush({
          store: nseStore,
          session: env.config(),
          lingerMs: 100,
          deadlineMs: 25_000,
        });
        const figures = { outcome: r1.outcome, stream: r1.stream, mam: r1.mamCatchup };
        console.log(`flood ${kind} ${n}: ${JSON.stringify(figures)}`);
        expect(r1.outcome).toBe("synced");
        expect(stored()).toBe(n);
        expect(r1.notifications).toEqual([
          expect.objectContaining({
            kind: "alert",
            title: "bob@localhost",
            threadId: "bob@localhost",
            body: `flood-${n - 1}`,
            subtitle: `+${n - 1} more`,
            count: n,
          }),
        ]);
        expect(r1.summary).toMatchObject({ messages: n, moreChats: 0 });
        expect(r1.summary.chats.length).toBeLessThanOrEqual(MAX_SUMMARY_CHATS);
        expect(r1.accounts).toEqual([
          expect.objectContaining({ accountId: "alice", outcome: "synced", messages: n }),
        ]);
        // Bounded output: a few hundred bytes, not one alert per message.
        expect(JSON.stringify(r1).length).toBeLessThan(2048);

        // The next push: nothing left to fetch, synced, silent.
        const r2 = await handlePush({
          store: nseStore,
          session: env.config(),
          lingerMs: 100,
          deadlineMs: 25_000,
        });
        expect(r2.outcome).toBe("synced");
        expect(r2.notifications).toEqual([{ kind: "silent", reason: "no-new-messages" }]);
        expect(r2.accounts[0]).toMatchObject({ outcome: "synced", messages: 0, mamCatchup: false });
        expect(stored()).toBe(n);
      } finally {
        await app.close();
        await bob.stop();
      }
    },
    T,
  );
});
