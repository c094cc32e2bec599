// Fencing by lock generation, and waits for the database that are bounded by the caller's
// deadline instead of blocking the event loop.
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  FencedOutError,
  ProcessLock,
  StoreLockTimeoutError,
  openStore,
  startAsNse,
  tables,
  type Store,
} from "../src/index.js";
import { useTempStores } from "./helpers.js";
import { Child, stopAll } from "./children.js";

const temp = useTempStores();

function open(role: "main" | "nse", clock?: () => number): Store {
  const s = openStore({
    path: path.join(temp.dir, "lichen.db"),
    role,
    ...(clock ? { clock } : {}),
  });
  return temp.track(s);
}

const addChat = (jid: string) => (tx: Parameters<Parameters<Store["write"]>[0]>[0]) =>
  tx.insert(tables.chats).values({ accountId: "acc1", jid, createdAt: 1 }).run();
const chats = (s: Store) =>
  s.read((tx) =>
    tx
      .select()
      .from(tables.chats)
      .all()
      .map((c) => c.jid),
  );

describe("fencing by lock generation", () => {
  it("a write under a fence commits while the generation is current and is refused, with nothing written, once another holder took the lock", async () => {
    let now = 1_000_000;
    const clock = () => now;
    const main = open("main", clock);
    main.write((tx) =>
      tx.insert(tables.accounts).values({ id: "acc1", jid: "a@b", createdAt: 1 }).run(),
    );
    const nse = open("nse", clock);
    const appLock = new ProcessLock(main, { key: "s", holder: "main:1", leaseMs: 2000 });
    const nseLock = new ProcessLock(nse, { key: "s", holder: "nse:2", leaseMs: 2000 });
    appLock.tryAcquire();
    const fence = appLock.fence()!;
    expect(fence).toEqual({ key: "s", holder: "main:1", generation: 1 });
    main.write(addChat("one@x"), { fence });
    await main.writeAsync(addChat("two@x"), { fence });

    // The app is "frozen": its lease runs out and the NSE takes the lock (generation 2).
    now += 5000;
    expect((await nseLock.tryAcquireAsync()).acquired).toBe(true);
    expect(nseLock.generation).toBe(2);

    // Thawed, the app still believes it holds generation 1: every fenced write is refused.
    let err: unknown;
    try {
      main.write(addChat("stale@x"), { fence });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FencedOutError);
    expect((err as FencedOutError).current).toEqual({ holder: "nse:2", generation: 2 });
    await expect(main.writeAsync(addChat("stale2@x"), { fence })).rejects.toBeInstanceOf(
      FencedOutError,
    );
    // Inside a larger transaction the refusal rolls back only what it guarded.
    main.write((tx) => {
      addChat("unfenced@x")(tx);
      expect(() => main.write(addChat("nested@x"), { fence })).toThrow(FencedOutError);
    });
    expect(chats(main).sort()).toEqual(["one@x", "two@x", "unfenced@x"]);

    // The renewal of the thawed holder reports the loss instead of extending anything.
    const lost: unknown[] = [];
    appLock.on("lost", (i) => lost.push(i));
    expect(appLock.renew()).toBe(false);
    expect(lost).toEqual([{ key: "s", holder: "main:1", generation: 1, newHolder: "nse:2" }]);
    expect(appLock.fence()).toBeNull();

    // The new holder's fence works; re-acquiring gives the app a new generation and acquisition.
    nse.write(addChat("nse@x"), { fence: nseLock.fence() });
    nseLock.release();
    const before = appLock.acquisitions;
    expect(appLock.tryAcquire().generation).toBe(3);
    expect(appLock.acquisitions).toBe(before + 1);
    main.write(addChat("again@x"), { fence: appLock.fence() });
    expect(() =>
      nse.write(addChat("nse2@x"), { fence: { ...fence, holder: "nse:2", generation: 2 } }),
    ).toThrow(FencedOutError);
    appLock.release();
  });
});

describe("waits for the database are bounded and asynchronous", () => {
  it("with another process stopped inside a transaction, writeAsync, tryAcquireAsync and startAsNse give up at the caller's deadline while the event loop keeps running", async () => {
    const main = open("main");
    main.write((tx) =>
      tx.insert(tables.accounts).values({ id: "acc1", jid: "a@b", createdAt: 1 }).run(),
    );
    const nse = open("nse");
    const stuck = new Child("stuck-writer.mjs", { db: path.join(temp.dir, "lichen.db") });
    try {
      await stuck.waitFor((l) => l.inTransaction === true, "stuck transaction");
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 10);
      try {
        const t0 = Date.now();
        await expect(
          nse.writeAsync(addChat("x@y"), { deadlineAt: Date.now() + 300 }),
        ).rejects.toBeInstanceOf(StoreLockTimeoutError);
        const waited = Date.now() - t0;
        expect(waited).toBeGreaterThanOrEqual(290);
        // Bounded by the deadline, not by maxWaitMs (20 s by default).
        expect(waited).toBeLessThan(5000);
        // The event loop ran while we waited (a synchronous wait would leave this at 0 or 1).
        expect(ticks).toBeGreaterThanOrEqual(5);

        const lock = new ProcessLock(nse, { key: "s", holder: "nse:9" });
        await expect(lock.tryAcquireAsync({ deadlineAt: Date.now() + 200 })).rejects.toBeInstanceOf(
          StoreLockTimeoutError,
        );
        expect(lock.generation).toBeNull();
        await expect(
          startAsNse(lock, { recheckDelayMs: 1, deadlineAt: Date.now() + 200 }),
        ).rejects.toBeInstanceOf(StoreLockTimeoutError);
      } finally {
        clearInterval(ticker);
      }
    } finally {
      await stopAll([stuck]);
    }
    // Once the stopped process is gone, everything works again and nothing half-written exists.
    nse.write(addChat("after@x"));
    expect(chats(nse)).toEqual(["after@x"]);
  });
});
