import { openStore, tables, type Store } from "@lichen/store";
import { startFlakyLink, type FlakyLink } from "@lichen/test-servers";
import { eq } from "drizzle-orm";

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AppController,
  handlePush,
  startNse,
  type NseOptions,
  type NseResult,
} from "../src/index.js";
import { SERVERS, startPeer, until, useEngineEnv } from "./helpers.js";

const T = 180_000;

describe.each(SERVERS)("process modes on %s", (_kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-modes-" });
  let nseStore: Store; // the NSE's own connection to the same file, as another process has
  beforeAll(() => {
    nseStore = openStore({ path: env.db, role: "nse" });
  });
  afterAll(() => nseStore?.close());

  it(
    "NSE resumes the main app's stream, stores the message once and returns its notification",
    async () => {
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const app = new AppController(env.store, env.config());
      try {
        expect(await app.foreground()).toBe("new");
        await app.background(); // frozen: TCP dropped, stream kept for resumption

        // Refused while the main app holds the lock.
        const app2 = new AppController(env.store, env.config());
        await app2.foreground();
        const refused = await handlePush({ store: nseStore, session: env.config(), lingerMs: 100 });
        expect(refused.outcome).toBe("main-running");
        expect(refused.notifications).toEqual([{ kind: "silent", reason: "main-app-running" }]);
        await app2.background();

        await bob.send("alice@localhost", "hello-while-frozen");
        const r = await handlePush({
          store: nseStore,
          session: env.config(),
          lingerMs: 100,
          deadlineMs: 20_000,
        });
        expect(r.outcome).toBe("synced");
        expect(r.notifications).toEqual([
          expect.objectContaining({
            kind: "alert",
            title: "bob@localhost",
            body: "hello-while-frozen",
            threadId: "bob@localhost",
          }),
        ]);
        const rows = nseStore.sqlite
          .prepare("SELECT count(*) AS n FROM messages WHERE body = 'hello-while-frozen'")
          .get() as { n: number };
        expect(rows.n).toBe(1);

        // A push with nothing new is silent.
        const quiet = await handlePush({ store: nseStore, session: env.config(), lingerMs: 100 });
        expect(quiet.notifications).toEqual([{ kind: "silent", reason: "no-new-messages" }]);
      } finally {
        await app.close();
        await bob.stop();
      }
    },
    T,
  );

  it(
    "main app has priority: a running NSE yields on disconnect-all and main resumes its stream",
    async () => {
      // afterSync keeps the NSE connected until the main app comes.
      const nse = handlePush({
        store: nseStore,
        session: env.config(),
        afterSync: () => new Promise<void>(() => {}),
        deadlineMs: 60_000,
        lingerMs: 100,
      });
      const app = new AppController(env.store, env.config());
      try {
        // Wait until the NSE holds the lock.
        const deadline = Date.now() + 30_000;
        while (!app.lock.heldByOther()) {
          if (Date.now() > deadline) throw new Error("NSE never took the lock");
          await new Promise((r) => setTimeout(r, 20));
        }
        const t0 = Date.now();
        expect(await app.foreground()).toBe("resumed"); // the NSE left the stream resumable
        const waited = Date.now() - t0;
        const r = await nse;
        expect(r.outcome).toBe("yielded");
        expect(waited).toBeLessThan(10_000); // bounded (lease is 2 s); figures are in the benchmark
      } finally {
        await app.close();
      }
    },
    T,
  );

  const stored = (body: string) =>
    (
      nseStore.sqlite.prepare("SELECT count(*) AS n FROM messages WHERE body = ?").get(body) as {
        n: number;
      }
    ).n;

  /** Alice's pending local notifications (the delayed "could not synchronize" warning). */
  const warnings = () =>
    env.store.read((tx) =>
      tx
        .select()
        .from(tables.pendingNotifications)
        .where(eq(tables.pendingNotifications.accountId, "alice"))
        .all(),
    );

  /** bob, and a link the test can cut between the NSE and the server; `push` runs the NSE over it. */
  async function overFlakyLink(
    run: (t: {
      bob: Awaited<ReturnType<typeof startPeer>>;
      link: FlakyLink;
      push: (o: Omit<NseOptions, "store" | "session">) => Promise<NseResult>;
      session: NseOptions["session"];
    }) => Promise<void>,
  ): Promise<void> {
    const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
    const link = await startFlakyLink({ port: env.server.c2sPort });
    const session = { ...env.config(), service: `xmpp://127.0.0.1:${link.port}` };
    try {
      await run({
        bob,
        link,
        session,
        push: (o) => handlePush({ store: nseStore, session, ...o }),
      });
    } finally {
      await link.close();
      await bob.stop();
    }
  }

  it(
    "linger: a second push handed to the running NSE is synced over the same connection, each push with its own notification",
    () =>
      overFlakyLink(async ({ bob, link, session }) => {
        await bob.send("alice@localhost", "linger-first");
        let rounds = 0;
        let online = 0;
        const run = startNse({
          store: nseStore,
          session,
          // afterSync runs at the end of each push's round: how the test knows the NSE lingers.
          afterSync: (s) => {
            if (rounds++ === 0) s.on("online", () => online++);
          },
          // Long enough that the second push always lands inside it on a loaded machine.
          lingerMs: 8000,
          deadlineMs: 60_000,
        });
        await until(() => rounds === 1 || undefined, "the first push synced");
        expect(link.accepted).toBe(1);
        const second = run.push("push-2");
        // Sent after the hand-over: stored in the second push's round, so it is its notification.
        await bob.send("alice@localhost", "linger-second");
        const r2 = await second;
        const r1 = await run.result;
        expect(r1.outcome).toBe("synced");
        expect(r1.notifications).toEqual([
          expect.objectContaining({ kind: "alert", title: "bob@localhost", body: "linger-first" }),
        ]);
        expect(r2).toMatchObject({ pushId: "push-2", via: "api", outcome: "synced" });
        expect(r2!.notifications).toEqual([
          expect.objectContaining({ kind: "alert", title: "bob@localhost", body: "linger-second" }),
        ]);
        expect(r1.further).toEqual([r2]);
        expect(rounds).toBe(2);
        // One TCP connection and one resume for both pushes.
        expect(link.accepted).toBe(1);
        expect(online).toBe(0);
        expect(stored("linger-first")).toBe(1);
        expect(stored("linger-second")).toBe(1);
        // The run is over: a further push is refused, to be handled by a new NSE.
        expect(await run.push("push-3")).toBeNull();
      }),
    T,
  );

  it(
    "onNotificationReady: each push's notification is handed over when its round is done, before the linger; a message in the linger with no push comes as `late`",
    () =>
      overFlakyLink(async ({ bob, session }) => {
        await bob.send("alice@localhost", "early-first");
        const ready: { pushId: string; body: string | undefined }[] = [];
        let ended = false;
        const run = startNse({
          store: nseStore,
          session,
          onNotificationReady: (r) => {
            const n = r.notifications[0];
            ready.push({ pushId: r.pushId, body: n?.kind === "alert" ? n.body : undefined });
          },
          // Long enough that everything below lands inside it on a loaded machine.
          lingerMs: 8000,
          deadlineMs: 60_000,
        });
        void run.result.then(() => (ended = true));
        await until(() => ready.length === 1 || undefined, "the first push's notification");
        expect(ready).toEqual([{ pushId: "first", body: "early-first" }]);
        expect(ended).toBe(false); // handed over while the run lingers
        // A further push resolves when its round is done, not when the next push or the end comes.
        const second = run.push("push-2");
        const r2 = await second;
        expect(ended).toBe(false);
        expect(r2).toMatchObject({ pushId: "push-2", outcome: "synced" });
        expect(r2!.notifications).toEqual([{ kind: "silent", reason: "no-new-messages" }]);
        // Stored in the linger with no push of its own (the live stream gets no push): it
        // cannot change a handed-over notification, so the run reports it as `late`.
        await bob.send("alice@localhost", "early-late");
        await until(() => stored("early-late") === 1 || undefined, "the late message stored");
        const r1 = await run.result;
        expect(r1.outcome).toBe("synced");
        expect(r1.notifications).toEqual([
          expect.objectContaining({ kind: "alert", body: "early-first" }),
        ]);
        expect(r1.further).toEqual([r2]);
        expect(r1.late).toEqual(expect.objectContaining({ kind: "alert", body: "early-late" }));
        expect(ready).toHaveLength(1);
      }),
    T,
  );

  it(
    "the network drops mid-sync: the NSE resumes when it is back and only then calls it synced",
    () =>
      overFlakyLink(async ({ bob, link, push }) => {
        await bob.send("alice@localhost", "nse-before-cut");
        // afterSync holds the NSE connected until the link is cut; after the cut (whether the
        // first sync had finished or not) the resumed sync must end it.
        let cut = false;
        const nse = push({
          afterSync: () => (cut ? undefined : new Promise<void>(() => {})),
          deadlineMs: 30_000,
          lingerMs: 100,
        });
        await until(() => stored("nse-before-cut") === 1 || undefined, "first message stored");
        cut = true;
        link.cut();
        await bob.send("alice@localhost", "nse-during-cut");
        await until(() => link.refused >= 1 || undefined, "a reconnect attempt on the cut link");
        link.restore();
        const r = await nse;
        expect(r.outcome).toBe("synced");
        // One notification for the push: the newest message, standing for both (none counted
        // twice across the resume).
        expect(r.notifications).toEqual([
          expect.objectContaining({ kind: "alert", body: "nse-during-cut", count: 2 }),
        ]);
        expect(r.summary).toMatchObject({ messages: 2, chats: [{ count: 2 }] });
        expect(stored("nse-before-cut")).toBe(1);
        expect(stored("nse-during-cut")).toBe(1);
      }),
    T,
  );

  it(
    "no network when the push arrives: the NSE keeps trying until the link is back, then syncs",
    () =>
      overFlakyLink(async ({ bob, link, push }) => {
        await bob.send("alice@localhost", "nse-no-network-yet");
        link.cut();
        const nse = push({
          deadlineMs: 30_000,
          lingerMs: 100,
        });
        await until(() => link.refused >= 2 || undefined, "the NSE retries on the cut link");
        link.restore();
        const r = await nse;
        expect(r.outcome).toBe("synced");
        expect(
          r.notifications.filter((n) => n.kind === "alert" && n.body === "nse-no-network-yet"),
        ).toHaveLength(1);
      }),
    T,
  );

  it(
    "the network drops mid-sync and stays down: outcome deadline with the delayed warning, not synced",
    () =>
      overFlakyLink(async ({ bob, link, push }) => {
        await bob.send("alice@localhost", "nse-cut-for-good");
        // Without the cut, afterSync would end after 3 s, before the 5 s deadline.
        const nse = push({
          afterSync: () => new Promise<void>((r) => setTimeout(r, 3000)),
          deadlineMs: 5000,
          lingerMs: 100,
          syncWarningDelayMs: 120_000,
        });
        await until(() => stored("nse-cut-for-good") === 1 || undefined, "message stored");
        link.cut();
        const r = await nse;
        expect(r.outcome).toBe("deadline");
        expect(link.refused).toBeGreaterThanOrEqual(1); // it did try again
        expect(warnings().map((w) => JSON.parse(w.content) as { title: string })).toEqual([
          expect.objectContaining({ title: "Could not synchronize" }),
        ]);
        // Back on the network, the next push syncs and cancels the warning.
        const ok = await handlePush({ store: nseStore, session: env.config(), lingerMs: 100 });
        expect(ok.outcome).toBe("synced");
        expect(env.store.read((tx) => tx.select().from(tables.pendingNotifications).all())).toEqual(
          [],
        );
      }),
    T,
  );

  it(
    "an unfinished sync at the deadline leaves a delayed warning and a background-task request; a later sync cancels the warning",
    async () => {
      // afterSync longer than the deadline: the NSE cannot finish in time.
      const r = await handlePush({
        store: nseStore,
        session: env.config(),
        afterSync: () => new Promise<void>((r) => setTimeout(r, 60_000)),
        deadlineMs: 1500,
        lingerMs: 100,
        syncWarningDelayMs: 120_000,
      });
      expect(r.outcome).toBe("deadline");
      const [w] = warnings();
      expect(JSON.parse(w!.content)).toMatchObject({
        kind: "alert",
        title: "Could not synchronize",
      });
      expect(w!.deliverAt).toBeGreaterThan(Date.now() + 60_000); // delayed, not shown yet
      const requests = env.store.read((tx) =>
        tx
          .select()
          .from(tables.syncErrors)
          .where(eq(tables.syncErrors.code, "background-task-requested"))
          .all(),
      );
      expect(requests.length).toBeGreaterThanOrEqual(1);

      const ok = await handlePush({ store: nseStore, session: env.config(), lingerMs: 100 });
      expect(ok.outcome).toBe("synced");
      expect(warnings()).toEqual([]);
    },
    T,
  );
});
