// Issue 10 in one process, on both servers: a session whose lock was taken by another holder stops
// at once (its writes are fenced out), and the main app takes the lock back and resumes — nothing
// lost, nothing stored twice. And the defence in depth for h: a stored counter this session did
// not write is never trusted for a resume (gap + new stream + MAM).
import { ProcessLock, loadAccountState, saveAccountState, type Store } from "@lichen/store";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppController, SESSION_LOCK_KEY, SessionLockError } from "../src/index.js";
import { SERVERS, startPeer, until, useEngineEnv } from "./helpers.js";
import { openStore } from "@lichen/store";

const T = 120_000;

describe.each(SERVERS)("fencing by lock generation on %s", (_kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-fencing-" });
  let other: Store; // another process's connection to the same file
  beforeAll(() => {
    other = openStore({ path: env.db, role: "nse" });
  });
  afterAll(() => other?.close());

  const stored = (body: string) =>
    (
      other.sqlite.prepare("SELECT count(*) AS n FROM messages WHERE body = ?").get(body) as {
        n: number;
      }
    ).n;

  it(
    "a session whose lock was taken stops handling at once (its write is refused, nothing counted), and the app re-takes the lock and resumes: every message stored once",
    async () => {
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const app = new AppController(env.store, env.config(), {
        reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
      });
      const lost: unknown[] = [];
      app.on("session-lost", (i) => lost.push(i));
      try {
        expect(await app.foreground()).toBeTruthy();
        const session = app.session!;
        await bob.send("alice@localhost", "fence-before");
        await until(() => stored("fence-before") === 1 || undefined, "first message stored");
        const hBefore = other.read((tx) => loadAccountState(tx, "alice")).sm.inboundH;

        // Another process takes the lock as if the app had been frozen past its lease (no renewal
        // can run between these two statements: both are synchronous here).
        const generation = app.lock.generation!;
        other.sqlite
          .prepare("UPDATE process_locks SET lease_expires_at = 0 WHERE key = ?")
          .run(SESSION_LOCK_KEY);
        const thief = new ProcessLock(other, { key: SESSION_LOCK_KEY, holder: "nse:thief" });
        expect(thief.tryAcquire()).toMatchObject({ acquired: true, generation: generation + 1 });
        const offline = new Promise<void>((r) => session.once("offline", () => r()));

        // The next stanza's transaction is refused: not stored, h unchanged, the socket dropped.
        await bob.send("alice@localhost", "fence-during");
        await offline;
        expect(lost).toEqual([expect.objectContaining({ holder: "nse:thief" })]);
        expect(stored("fence-during")).toBe(0);
        expect(other.read((tx) => loadAccountState(tx, "alice")).sm.inboundH).toBe(hBefore);
        expect(session.online).toBe(false);
        // Nothing of this session may be written while another process holds the lock.
        expect(() => session.sendMessage("bob@localhost", "must-not-queue")).toThrow(
          SessionLockError,
        );
        await expect(session.connect()).rejects.toBeInstanceOf(SessionLockError);

        // The thief goes away; the app takes the lock back by itself (reconnect loop) and resumes:
        // the server replays what the refused transaction did not acknowledge.
        thief.release();
        await until(() => session.online || undefined, "the app back online", 30_000);
        expect(app.lock.generation).toBeGreaterThan(generation + 1);
        await bob.send("alice@localhost", "fence-after");
        await until(
          () => (stored("fence-during") === 1 && stored("fence-after") === 1) || undefined,
          "the refused message replayed and stored",
        );
        await session.idle();
        for (const b of ["fence-before", "fence-during", "fence-after"]) expect(stored(b)).toBe(1);
        expect(stored("must-not-queue")).toBe(0);
      } finally {
        await app.close();
        await bob.stop();
      }
    },
    T,
  );

  it(
    "a takeover between the app's lock check and its connect is retried, not taken as a permanent failure",
    async () => {
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const app = new AppController(env.store, env.config(), {
        reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
      });
      const failures: { permanent: boolean; error: unknown }[] = [];
      app.on("reconnect-failed", (e: { permanent: boolean; error: unknown }) => failures.push(e));
      const thief = new ProcessLock(other, { key: SESSION_LOCK_KEY, holder: "nse:thief2" });
      const steal = () => {
        other.sqlite
          .prepare("UPDATE process_locks SET lease_expires_at = 0 WHERE key = ?")
          .run(SESSION_LOCK_KEY);
        expect(thief.tryAcquire().acquired).toBe(true);
      };
      try {
        await app.foreground();
        const session = app.session!;
        steal(); // the app is fenced out at its next write...
        let stolenAgain = false;
        app.lock.on("acquired", () => {
          // ...and when it has taken the lock back, it is taken again before its connect()
          // writes anything: that connect fails with FencedOutError.
          if (stolenAgain) return;
          stolenAgain = true;
          steal();
          setTimeout(() => thief.release(), 300);
        });
        const offline = new Promise<void>((r) => session.once("offline", () => r()));
        await bob.send("alice@localhost", "retry-1");
        await offline;
        thief.release();
        await until(() => stolenAgain || undefined, "the second takeover");
        await until(() => stored("retry-1") === 1 || undefined, "the app back online", 30_000);
        expect(session.online).toBe(true);
        expect(failures.filter((f) => f.permanent)).toEqual([]);
      } finally {
        thief.release();
        await app.close();
        await bob.stop();
      }
    },
    T,
  );

  it(
    "a stored h this session did not commit is never used for a resume: gap opened, new stream, MAM fetches what the server may drop",
    async () => {
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const app = new AppController(env.store, env.config(), {
        reconnect: { initialDelayMs: 100, maxDelayMs: 500 },
      });
      const continuity: unknown[] = [];
      try {
        await app.foreground();
        const session = app.session!;
        session.on("continuity-lost", (e) => continuity.push(e));
        await bob.send("alice@localhost", "h-before");
        await until(() => stored("h-before") === 1 || undefined, "first message stored");
        await session.idle();
        // A writer that bypassed the fence (a bug, an old build) inflates the stored counter.
        const fence = app.lock.fence()!;
        env.store.write(
          (tx) => {
            const st = loadAccountState(tx, "alice");
            st.sm.inboundH += 7;
            saveAccountState(tx, "alice", st);
          },
          { fence },
        );
        const online = new Promise((r) => session.once("online", r));
        await bob.send("alice@localhost", "h-after");
        expect(await online).toBe("new");
        await until(
          () => stored("h-after") === 1 || undefined,
          "the message stored via a new stream",
        );
        expect(continuity).toEqual([expect.objectContaining({ expected: expect.any(Number) })]);
        await until(
          () => !other.read((tx) => loadAccountState(tx, "alice")).mam.gapOpen || undefined,
          "the MAM catch-up closing the gap",
        );
        await session.idle();
        expect(stored("h-before")).toBe(1);
        expect(stored("h-after")).toBe(1);
      } finally {
        await app.close();
        await bob.stop();
      }
    },
    T,
  );
});
