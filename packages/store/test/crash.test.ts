import path from "node:path";
import { prng as rng } from "@lichen/test-kit";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadAccountState, openStore, tables } from "../src/index.js";
import { Child, stopAll, type Line } from "./children.js";
import { tempDir } from "./helpers.js";

const SEED = Number(process.env.LICHEN_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const WRITERS = 3;
const ROWS = 30;
const LEASE_MS = 200;
// Aim for 800 write transactions (committed or killed) and 100 kills; on a slow machine stop at the
// time budget, but never accept fewer than 500 transactions and 50 kills.
const TARGET_ITERATIONS = 800;
const TARGET_KILLS = 100;
const MIN_ITERATIONS = 500;
const MIN_KILLS = 50;
const BUDGET_MS = 45_000;

let dir: string;
let cleanup: () => void;
const children = new Set<Child>();
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(async () => {
  await stopAll(children);
  children.clear();
  cleanup();
});

describe("crash safety", () => {
  it(`SIGKILL at random points inside write transactions leaves no partial state (seed ${SEED})`, async () => {
    try {
      const db = path.join(dir, "crash.db");
      const main = openStore({ path: db, role: "main" });
      main.write((tx) => {
        for (let w = 0; w < WRITERS; w++) {
          tx.insert(tables.accounts)
            .values({ id: `w${w}`, jid: `w${w}@example.org`, createdAt: tx.now })
            .run();
          tx.insert(tables.chats)
            .values({ accountId: `w${w}`, jid: "peer@example.org", createdAt: tx.now })
            .run();
        }
      });
      main.close();

      const random = rng(SEED);
      const stats = {
        spawned: 0,
        kills: 0,
        killedMidTx: 0,
        selfKills: 0,
        started: 0,
        committed: 0,
      };
      const ready = new Array<number>(WRITERS).fill(0);
      const deadline = Date.now() + BUDGET_MS;
      // Past the budget, a loaded machine (several test files at once) keeps going until the
      // minimums are met, up to a hard stop well inside the test's timeout.
      const hardStop = Date.now() + 100_000;
      const done = () =>
        (stats.started >= TARGET_ITERATIONS && stats.kills + stats.selfKills >= TARGET_KILLS) ||
        (Date.now() > deadline &&
          stats.started >= MIN_ITERATIONS &&
          stats.kills + stats.selfKills >= MIN_KILLS) ||
        Date.now() > hardStop;

      const runSlot = async (w: number) => {
        while (!done()) {
          const child = new Child("crash-writer.mjs", {
            db,
            writer: w,
            seed: (SEED + stats.spawned * 7919) >>> 0,
            selfKill: 0.02,
            rows: ROWS,
            leaseMs: LEASE_MS,
          });
          stats.spawned++;
          children.add(child);
          const readyOrExit = await Promise.race([
            child
              .waitFor((l) => l.ready === true, "lock acquired", 30_000)
              .then(() => "ready" as const),
            child.exited.then(() => "exit" as const),
          ]);
          if (readyOrExit === "ready") ready[w]!++;
          // Kill at a random instant: after a random number (1..15) of transactions has started
          // (so progress does not depend on how loaded the machine is), plus 0..3 ms — unless it
          // kills itself first.
          const target = 1 + Math.floor(random() * 15);
          const delay = random() * 3;
          let startedHere = 0;
          let timer: NodeJS.Timeout | undefined;
          child
            .waitFor((l) => typeof l.s === "number" && ++startedHere >= target, "progress", 60_000)
            .then(() => (timer = setTimeout(() => child.kill("SIGKILL"), delay)))
            .catch(() => {}); // it died first (self-kill): nothing to do
          const exit = await child.exited;
          clearTimeout(timer);
          children.delete(child);
          const last: Line | undefined = child.lines[child.lines.length - 1];
          stats.started += child.lines.filter((l) => typeof l.s === "number").length;
          stats.committed += child.lines.filter((l) => typeof l.c === "number").length;
          if (exit.signal !== "SIGKILL") {
            throw new Error(
              `writer ${w} exited by itself ${JSON.stringify(exit)}: ${child.stderr.slice(-2000)}`,
            );
          }
          if (child.lines.some((l) => l.selfKill !== undefined)) stats.selfKills++;
          else stats.kills++;
          if (last && (typeof last.s === "number" || last.selfKill !== undefined))
            stats.killedMidTx++;
        }
      };
      await Promise.all(Array.from({ length: WRITERS }, (_, w) => runSlot(w)));
      console.log(`crash safety (seed ${SEED}):`, JSON.stringify(stats));

      expect(stats.started).toBeGreaterThanOrEqual(MIN_ITERATIONS);
      expect(stats.kills + stats.selfKills).toBeGreaterThanOrEqual(MIN_KILLS);
      expect(stats.killedMidTx).toBeGreaterThan(0);

      const check = openStore({ path: db, role: "main" });
      try {
        expect(check.sqlite.pragma("integrity_check", { simple: true })).toBe("ok");
        expect(check.sqlite.pragma("foreign_key_check")).toEqual([]);
        expect(check.sqlite.prepare("SELECT count(*) FROM quarantine").pluck().get()).toBe(0);
        let total = 0;
        for (let w = 0; w < WRITERS; w++) {
          const id = `w${w}`;
          const state = check.read((tx) => loadAccountState(tx, id));
          const h = state.sm.inboundH;
          total += h;
          const q = (sql: string) => check.sqlite.prepare(sql).pluck().get(id);
          expect(q("SELECT count(*) FROM messages WHERE account_id = ?"), `messages of ${id}`).toBe(
            h * ROWS,
          );
          expect(
            q("SELECT count(*) FROM outbound_queue WHERE account_id = ?"),
            `queue of ${id}`,
          ).toBe(h);
          expect(q("SELECT coalesce(max(seq), 0) FROM outbound_queue WHERE account_id = ?")).toBe(
            h,
          );
          expect(q("SELECT unread_count FROM chats WHERE account_id = ?")).toBe(h);
          expect(state.sm.outboundSent).toBe(h);
          // Every incarnation that got "ready" took the lease over from a killed holder: one
          // generation step each.
          const lock = check.sqlite
            .prepare("SELECT generation FROM process_locks WHERE key = ?")
            .pluck()
            .get(`crash-${w}`);
          expect(lock, `lock generation of writer ${w}`).toBe(ready[w]);
        }
        expect(total).toBeGreaterThan(0);
        expect(total).toBeLessThanOrEqual(stats.started);
        expect(total).toBeGreaterThanOrEqual(stats.committed);
      } finally {
        check.close();
      }
    } catch (e) {
      (e as Error).message =
        `[seed ${SEED}; rerun with LICHEN_TEST_SEED=${SEED}] ${(e as Error).message}`;
      throw e;
    }
  }, 150_000);
});
