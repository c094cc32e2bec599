// End-to-end, issue 10: the main app is frozen (SIGSTOP, socket and all) while it holds the session
// and messages are in flight; its lease runs out, an NSE takes the session over and syncs, and the
// app is thawed (SIGCONT) while the NSE runs, after it exited, or after it was SIGKILLed. Every
// message the peer sent must end up stored exactly once, with no server-side complaint about
// XEP-0198 counters. And a process frozen inside a write transaction must not stall the NSE past
// its deadline.
//
// The BUILT lichen-chat runs as real processes against real Prosody and ejabberd; "bob" is a plain
// xmpp.js client. Timing jitter comes from a seeded PRNG: the seed is printed on failure and
// LICHEN_SEED=<seed> replays the same choices (the processes' own timing still varies).
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEjabberd, startProsody, type XmppTestServer } from "@lichen/test-servers";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  AppProcess,
  ChatDbProbe,
  CliProcess,
  counterComplaints,
  prng,
  requireBuiltCli,
  runCli,
  signal,
  sleep,
  startPeer,
  testSeed,
  until,
} from "./helpers.js";

/** Rounds of freeze → NSE → thaw per variant (LICHEN_FREEZE_ROUNDS overrides). */
const ROUNDS = Number(process.env.LICHEN_FREEZE_ROUNDS ?? 3);
/** The NSE's deadline in the freeze rounds: with bob sending all the time it never gets quiet. */
const NSE_DEADLINE_MS = 3500;
const HOLD_WRITE = join(import.meta.dirname, "fixtures", "hold-write.mjs");
/** The session lock's lease of AppController and handlePush (default 2 s). */
const LEASE_MS = 2000;

type Variant = "a" | "b" | "c";
const VARIANTS: [Variant, string][] = [
  ["a", "(a) thawed while the NSE still runs"],
  ["b", "(b) thawed after the NSE exited"],
  ["c", "(c) thawed after the NSE was SIGKILLed mid-run"],
];

/** Everything this file starts, killed by PID after each test. */
const started = new Set<{ kill(): void }>();
function track<T extends { kill(): void }>(p: T): T {
  started.add(p);
  return p;
}
afterEach(() => {
  for (const p of started) p.kill();
  started.clear();
});

/** Bob sends numbered messages (`<prefix>-<round>-<n>`) every 10–30 ms until stopped. */
class Sender {
  readonly sent: { body: string; round: number }[] = [];
  round = 0;
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(
    peer: Awaited<ReturnType<typeof startPeer>>,
    to: string,
    prefix: string,
    rng: ReturnType<typeof prng>,
  ) {
    this.loop = (async () => {
      for (let n = 0; !this.stopped; n++) {
        const body = `${prefix}-${this.round}-${n}`;
        await peer.send(to, body);
        this.sent.push({ body, round: this.round });
        await sleep(rng.between(10, 30));
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  kill(): void {
    this.stopped = true;
  }
}

interface RoundLog {
  round: number;
  /** Who held the session lock when the app was frozen (the app should: "main:<pid>-…"). */
  lockBeforeFreeze: string;
  /** How often the app had to be thawed again because it was frozen inside a transaction. */
  refreezes: number;
  sentBeforeFreeze: number;
  frozenMs: number;
  hAtFreeze: number | null;
  nse: string;
  nseWallMs: number | null;
  thawAfterNseMs: number | null;
  backOnlineMs: number | null;
  hAfterThaw: number | null;
  appSaid: string;
}

describe.each([
  ["Prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const)("frozen processes on %s (issue 10)", (serverName, startServer) => {
  let server: XmppTestServer;
  let dir: string;

  beforeAll(async () => {
    requireBuiltCli();
    server = await startServer();
    await server.registerUser("bob", "bobpw");
    for (const v of ["a", "b", "c", "t"]) await server.registerUser(`alice${v}`, "alicepw");
    dir = mkdtempSync(join(tmpdir(), "lichen-freeze-"));
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
  }, 60_000);

  const login = async (user: string) => {
    const db = join(dir, `${user}.db`);
    const r = await runCli(db, [
      "login",
      "--jid",
      `${user}@localhost`,
      "--password",
      "alicepw",
      "--service",
      `xmpp://127.0.0.1:${server.c2sPort}`,
      "--resource",
      "phone",
    ]);
    expect(r.code, r.stderr).toBe(0);
    return db;
  };

  it.each(VARIANTS)(
    "main app frozen past its lease, NSE takes over, app %s: every message stored exactly once, no counter complaints",
    async (variant, title) => {
      const seed = testSeed();
      const rng = prng(seed);
      const user = `alice${variant}`;
      const jid = `${user}@localhost`;
      const logStart = (await server.logText()).length;
      const db = await login(user);
      const alice = new ChatDbProbe(db);
      // LICHEN_FREEZE_VERBOSE=1: the app and the NSEs log JSON to stderr (kept in files in `dir`).
      const verbose = process.env.LICHEN_FREEZE_VERBOSE === "1" ? ["--verbose"] : [];
      const app = track(new AppProcess(db, ["--json", ...verbose]));
      const rounds: RoundLog[] = [];
      const problems: string[] = [];
      const nseResults: { round: number; code: number | null; signal: string | null }[] = [];
      const prefix = `m${seed.toString(36)}${variant}`;
      const lockIsMainsOf = (pid: number) => {
        const l = alice.lock();
        return !!l && l.holder.startsWith(`main:${pid}-`) && l.leaseExpiresAt > Date.now();
      };
      /** Waits until the thawed app is back online (told /fg if it says it is in the background). */
      const backOnline = async (mark: number, idAtThaw: number) => {
        let toldFg = false;
        await until(
          () => {
            if (!app.child.pid || app.child.exitCode !== null || app.child.signalCode !== null)
              throw new Error(`the app exited after the thaw; stderr: ${app.stderr.slice(mark)}`);
            const since = app.stderr.slice(mark);
            if (/failed for good/.test(since))
              throw new Error(`the thawed app gave up reconnecting: ${since.trim()}`);
            if (!toldFg && /\bbackground\b/i.test(since)) {
              app.line("/fg");
              toldFg = true;
            }
            return (
              /online (again|as)/.test(since) ||
              (lockIsMainsOf(app.child.pid) && alice.maxId() > idAtThaw)
            );
          },
          () =>
            `the thawed app back online (seed ${seed}); its stderr since the thaw: ${app.stderr.slice(mark)}`,
          30_000,
        );
      };

      await until(() => app.stderr.includes("online as"), `app online; ${app.stderr}`);
      const peer = await startPeer(server.c2sPort, "bob", "bobpw", { resource: `desk-${variant}` });
      track({ kill: () => void peer.stop() });
      const sender = track(new Sender(peer, jid, prefix, prng(seed ^ 0x9e3779b9)));
      const started0 = Date.now();
      try {
        for (let round = 1; round <= ROUNDS; round++) {
          sender.round = round;
          try {
            // The app is live: it stores what bob sends now.
            const idBefore = alice.maxId();
            await until(
              () => alice.maxId() >= idBefore + 5,
              () =>
                `the app storing bob's messages before round ${round} (seed ${seed}); app stderr: ${app.stderr.slice(-1500)}`,
            );
            await sleep(rng.between(100, 600)); // more in flight
            const sentBeforeFreeze = sender.sent.length;
            const lockBeforeFreeze = alice.lock();
            // Frozen between two transactions: a writer frozen inside one is the other test's case
            // (here it would only stall the NSE). Thawed for a moment and frozen again until so.
            let refreezes = 0;
            for (;;) {
              signal(app.child, "SIGSTOP");
              await sleep(20);
              if (!alice.writeLocked()) break;
              if (++refreezes > 100)
                throw new Error(`the app was frozen inside a write transaction 100 times`);
              signal(app.child, "SIGCONT");
              await sleep(rng.between(1, 30));
            }
            const frozenAt = Date.now();
            const hAtFreeze = alice.inboundH();
            // Frozen past its lease (at least a lease long, and the lock row says it ran out), then
            // a push wakes the NSE.
            await sleep(LEASE_MS + 200);
            await until(
              () => {
                const l = alice.lock();
                return !l || l.leaseExpiresAt <= Date.now();
              },
              `the frozen app's lease to run out (seed ${seed})`,
              10_000,
            );
            await sleep(rng.between(0, 400));
            const idAtNse = alice.maxId();
            const nse = track(
              new CliProcess(db, [
                ...verbose,
                "nse",
                "--deadline-ms",
                String(NSE_DEADLINE_MS),
                "--linger-ms",
                // (a): the NSE ends its sync as soon as the server answered its ping behind the
                // replay (about a second here); a long linger keeps the process alive, holding
                // the lock (connected or lingering), for a thaw "while it runs".
                variant === "a" ? "3000" : "300",
              ]),
            );
            // The NSE holds the session and has stored some of what the server replayed to it.
            await until(
              () =>
                !nse.running ||
                (alice.lock()?.holder.startsWith("nse:") && alice.maxId() > idAtNse),
              () => `the NSE taking over (seed ${seed}); nse stderr: ${nse.stderr.slice(-1500)}`,
              15_000,
            );
            if (!nse.running) {
              await nse.exited;
              throw new Error(
                `the NSE ended before it stored anything (seed ${seed}): stdout ${nse.stdout} stderr ${nse.stderr}`,
              );
            }
            let thawAfterNseMs: number | null = null;
            if (variant === "a") {
              await sleep(rng.between(100, 1500));
              if (!nse.running) throw new Error(`the NSE ended before the thaw (seed ${seed})`);
            } else if (variant === "b") {
              await nse.wait(NSE_DEADLINE_MS + 15_000);
              // Seconds later, while the server queues bob's messages for the suspended stream.
              await sleep(rng.between(1500, 3500));
              thawAfterNseMs = Date.now() - nse.exitedAt!;
            } else {
              await sleep(rng.between(0, 1000));
              signal(nse.child, "SIGKILL");
              await nse.wait(10_000);
              await sleep(rng.between(200, 2500));
              thawAfterNseMs = Date.now() - nse.exitedAt!;
            }
            const mark = app.stderr.length;
            const idAtThaw = alice.maxId();
            signal(app.child, "SIGCONT");
            const thawedAt = Date.now();
            const frozenMs = thawedAt - frozenAt;
            const result = await nse.wait(NSE_DEADLINE_MS + 15_000);
            nseResults.push({ round, code: result.code, signal: result.signal });
            let nseSummary = result.signal ? `killed (${result.signal})` : `exit ${result.code}`;
            if (result.code === 0) {
              try {
                nseSummary += ` ${(JSON.parse(nse.stdout) as { outcome: string }).outcome}`;
              } catch {
                nseSummary += ` (unparsable stdout: ${nse.stdout.slice(0, 200)})`;
              }
            } else if (!result.signal) nseSummary += ` ${nse.stderr.trim().slice(0, 300)}`;
            if (verbose.length) writeFileSync(join(dir, `${user}.nse-${round}.log`), nse.stderr);
            let backOnlineMs: number | null = null;
            try {
              await backOnline(mark, idAtThaw);
              backOnlineMs = Date.now() - thawedAt;
            } catch (err) {
              problems.push(`round ${round}: ${(err as Error).message}`);
              // Still measure what was lost: do what a user would, background and foreground it.
              const again = app.stderr.length;
              app.line("/bg");
              app.line("/fg");
              await until(
                () => /online as/.test(app.stderr.slice(again)),
                () =>
                  `the app online after /bg + /fg (seed ${seed}); stderr: ${app.stderr.slice(again)}`,
                30_000,
              );
            } finally {
              rounds.push({
                round,
                refreezes,
                lockBeforeFreeze: lockBeforeFreeze
                  ? `${lockBeforeFreeze.holder.split("-")[0]}${lockBeforeFreeze.leaseExpiresAt > frozenAt ? "" : " (lease expired)"}`
                  : "none",
                sentBeforeFreeze,
                frozenMs,
                hAtFreeze,
                nse: nseSummary,
                nseWallMs: nse.exitedAt ? nse.exitedAt - nse.startedAt : null,
                thawAfterNseMs,
                backOnlineMs,
                hAfterThaw: alice.inboundH(),
                appSaid: app.stderr.slice(mark).trim().split("\n").join(" | ").slice(0, 400),
              });
            }
          } catch (err) {
            // The scenario broke down (e.g. the NSE got nothing done): report it with the rest.
            problems.push(`round ${round}: ${(err as Error).message}`);
            signal(app.child, "SIGCONT");
            break;
          }
        }
      } finally {
        await sender.stop();
      }
      // The server routed everything bob sent (if not, counting would blame the app wrongly).
      await peer.barrier().catch((err: unknown) => {
        problems.push(`bob's ping barrier failed (${String(err)}): counts may be unreliable`);
      });

      // Bounded wait until every message is stored (stops early when nothing changes for 10 s).
      const sent = sender.sent;
      let lastMissing = Infinity;
      let lastChange = Date.now();
      const waitStart = Date.now();
      for (;;) {
        const counts = alice.counts(prefix);
        const missing = sent.filter((s) => !counts.has(s.body)).length;
        if (missing === 0) break;
        if (missing < lastMissing) {
          lastMissing = missing;
          lastChange = Date.now();
        }
        if (Date.now() - lastChange > 10_000 || Date.now() - waitStart > 60_000) break;
        await sleep(100);
      }
      const waitedMs = Date.now() - waitStart;
      await peer.stop();
      // Stop the app so nothing is written while we count.
      app.line("/quit");
      const quit = await Promise.race([app.exited, sleep(10_000).then(() => "timeout" as const)]);
      app.kill();

      const counts = alice.counts(prefix);
      const missing = sent.filter((s) => !counts.has(s.body));
      const duplicated = sent.filter((s) => (counts.get(s.body) ?? 0) > 1);
      const unknown = [...counts.keys()].filter((b) => !sent.some((s) => s.body === b));
      const byRound = (xs: { round: number }[]) => {
        const n = new Map<number, number>();
        for (const x of xs) n.set(x.round, (n.get(x.round) ?? 0) + 1);
        return [...n].map(([r, k]) => `round ${r}: ${k}`).join(", ");
      };
      const integrity = alice.integrity();
      const log = (await server.logText()).slice(logStart);
      const complaints = counterComplaints(log);
      alice.close();
      const appLog = join(dir, `${user}.app-stderr.log`);
      writeFileSync(appLog, app.stderr);

      const report = [
        `${serverName} ${title}: seed ${seed} (replay with LICHEN_SEED=${seed})`,
        `sent ${sent.length} in ${Math.round((Date.now() - started0) / 1000)} s; stored ${counts.size} distinct; missing ${missing.length} (${byRound(missing)}); duplicated ${duplicated.length} (${byRound(duplicated)}); unknown ${unknown.length}; final wait ${waitedMs} ms; app /quit: ${quit}`,
        `missing: ${missing
          .slice(0, 40)
          .map((m) => m.body)
          .join(" ")}`,
        `duplicated: ${duplicated
          .slice(0, 20)
          .map((m) => `${m.body}×${counts.get(m.body)}`)
          .join(" ")}`,
        ...rounds.map((r) => `  ${JSON.stringify(r)}`),
        `server counter complaints (${complaints.length}): ${complaints.slice(0, 6).join("\n    ")}`,
        `integrity_check: ${integrity}`,
        `app stderr (tail; all of it in ${appLog}): ${app.stderr.slice(-1500)}`,
      ].join("\n");
      console.log(report);

      if (missing.length) problems.push(`${missing.length} messages never stored`);
      if (duplicated.length) problems.push(`${duplicated.length} messages stored more than once`);
      if (unknown.length) problems.push(`${unknown.length} stored messages bob never sent`);
      if (complaints.length) problems.push(`${complaints.length} server counter complaints`);
      if (integrity !== "ok") problems.push(`integrity_check: ${integrity}`);
      const badNse = nseResults.filter((r) => !r.signal && r.code !== 0);
      if (badNse.length)
        problems.push(`NSE failed in round(s) ${badNse.map((r) => r.round).join(", ")}`);
      expect(problems, report).toEqual([]);
      expect(sent.length).toBeGreaterThan(100 * ROUNDS); // the scenario really ran
    },
    180_000,
  );

  it("a process frozen inside a write transaction cannot stall the NSE: it reports deadline in time", async () => {
    const db = await login("alicet");
    // Control: without the frozen writer the same NSE is done well within its deadline.
    const t0 = Date.now();
    const control = await runCli(db, ["nse", "--deadline-ms", "3000", "--linger-ms", "0"], 15_000);
    const controlMs = Date.now() - t0;
    expect(control.code, control.stderr).toBe(0);
    expect(controlMs, `the control NSE took ${controlMs} ms`).toBeLessThanOrEqual(5000);
    const holder = track(new CliProcess(db, [db], { script: HOLD_WRITE }));
    await until(
      () => holder.stdout.includes("holding") || !holder.running,
      `the holder to begin its transaction; ${holder.stderr}`,
      15_000,
    );
    expect(holder.running, holder.stderr).toBe(true);
    signal(holder.child, "SIGSTOP"); // frozen inside the transaction
    const deadlineMs = 3000;
    const nse = track(
      new CliProcess(db, ["nse", "--deadline-ms", String(deadlineMs), "--linger-ms", "0"]),
    );
    // Bounded: the current NSE would wait for the frozen writer forever.
    const res = await Promise.race([nse.exited, sleep(12_000).then(() => null)]);
    const wallMs = (nse.exitedAt ?? Date.now()) - nse.startedAt;
    nse.kill();
    holder.kill();
    const report = `${serverName}: nse --deadline-ms ${deadlineMs} (${controlMs} ms without the frozen writer) with a writer frozen in BEGIN IMMEDIATE: ${
      res
        ? `exited (${res.code ?? res.signal}) after ${wallMs} ms`
        : `still running after ${wallMs} ms (killed)`
    }; stdout: ${nse.stdout.slice(0, 500)}; stderr: ${nse.stderr.slice(-500)}`;
    console.log(report);
    expect(res, report).not.toBeNull();
    expect(wallMs, report).toBeLessThanOrEqual(deadlineMs + 2000);
    expect(res!.code, report).toBe(0);
    const out = JSON.parse(nse.stdout) as {
      outcome: string;
      notifications: { kind: string; title?: string }[];
    };
    expect(out.outcome, report).toBe("deadline");
    // It could not write the DB, so it returns its "could not synchronize" warning directly.
    expect(out.notifications, report).toEqual([
      expect.objectContaining({ kind: "alert", title: "Could not synchronize" }),
    ]);
  }, 60_000);
});
