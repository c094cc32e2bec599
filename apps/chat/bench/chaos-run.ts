// The seeded chaos driver of issue 10, shared by test/chaos.test.ts (CI size) and the `chaos`
// benchmark (a longer run): against one real server (Prosody or ejabberd, with a short resume
// timeout), the BUILT lichen-chat runs as real processes for alice — the main app (`app --json
// --to bob`) and NSEs (`nse`) — while bob, a plain xmpp.js client, sends numbered messages with
// unique origin-ids and alice's app sends numbered lines typed on its stdin. A seeded schedule
// SIGKILLs the app, freezes it (SIGSTOP/SIGCONT) past its lease, overlaps freezes with NSE runs
// (thawed while the NSE runs, after it ended, after it was SIGKILLed, or killed and started
// fresh while it runs), starts the app fresh while an NSE runs, keeps the app away (killed, or
// frozen after an NSE took the stream over) past the server's resume timeout, SIGKILLs NSEs
// mid-run and runs several NSEs in a row. At the end bob stops, the app runs in the foreground
// until everything is stored and delivered (waits on facts, bounded), and the run is judged:
// every inbound message stored exactly once, every committed outbound message received by bob
// exactly once after dedupe by origin-id, nothing received that alice never committed,
// `PRAGMA integrity_check` ok, no XEP-0198 counter complaint in the server log.
//
// The seed fixes the schedule (event kinds, durations, variants) and the message pacing; the
// processes' own timing still varies. Sleeps only shape the schedule; every wait for a fact is
// bounded. Every process started here is killed by PID in `finally`.
import { appendFileSync, copyFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  startEjabberd,
  startProsody,
  startTestPeer,
  type TestPeer,
  type XmppTestServer,
} from "@lichen/test-servers";
import { xml } from "@xmpp/client";
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
  until,
} from "./harness.js";

export type ChaosServer = "prosody" | "ejabberd";

export interface ChaosOptions {
  server: ChaosServer;
  seed: number;
  /** Messages each way to aim for (bob → alice sent, alice → bob committed). */
  messages: number;
  /** The server's resume timeout (Prosody smacks_hibernation_time, ejabberd resume_timeout). */
  resumeTimeoutSeconds?: number;
  /** Cap on the chaos phase (then the run ends with what was reached). Default 10 min. */
  maxChaosMs?: number;
  /** `--verbose` JSON logs of the app and the NSEs, kept in files in `dir`. */
  verbose?: boolean;
  /** Progress lines (the timeline as it happens). */
  log?: (line: string) => void;
}

export interface ChaosResult {
  server: ChaosServer;
  seed: number;
  /** inbound sent + outbound committed */
  messages_total: number;
  /** inbound never stored + committed outbound never received by bob */
  lost: number;
  /** inbound stored more than once (raw rows) + outbound received more than once after dedupe by origin-id + outbound rows of one typed line */
  duplicated: number;
  /** SIGKILLs (app and NSE) */
  kills: number;
  /** SIGSTOPs of the app (each thawed or killed later) */
  freezes: number;
  /** an NSE run overlapping a frozen app or a fresh app start */
  overlaps: number;
  /** app away (killed or frozen after a takeover) past the server's resume timeout */
  outages: number;
  inbound: { sent: number; stored: number; lost: number; duplicated: number; unknown: number };
  outbound: {
    typed: number;
    committed: number;
    received: number;
    lost: number;
    duplicated: number;
    /** bob received an origin-id (with our body prefix) that alice never committed */
    uncommitted: number;
    /** rows of alice's own messages table sharing one typed line */
    duplicateRows: number;
  };
  nseRuns: number;
  nseOutcomes: Record<string, number>;
  /** NSE runs that exited non-zero without being killed (stderr in `dir`) */
  nseFailures: number;
  /** NSE runs (not killed) that exited more than 3 s after their 6 s deadline */
  nseOverruns: number;
  appRestarts: number;
  /** Things that went wrong in the scenario itself (an app that never came back online, ...). */
  problems: string[];
  complaints: string[];
  integrity: string;
  chaosMs: number;
  durationMs: number;
  /** Where the timeline, the processes' stderr and (on failure) the server log are kept. */
  dir: string;
  /** A human-readable summary with the seed. */
  report: string;
}

/** The session lock's lease of AppController and handlePush (default 2 s). */
const LEASE_MS = 2000;
const NSE_DEADLINE_MS = 6000;
/** An NSE's exit this long after its deadline counts as an overrun (start-up, grace, exit). */
const NSE_OVERRUN_GRACE_MS = 3000;
const NS_SID = "urn:xmpp:sid:0";
/** The app says it is in the background (then it is told /fg). */
const BACKGROUND = /^background: |in the background: /m;

type Rng = ReturnType<typeof prng>;

/** Bob: numbered messages with unique origin-ids every 60–110 ms until `target` or stopped. */
class BobSender {
  readonly sent: string[] = [];
  error: unknown = null;
  /** Times the server dropped bob's stream and he resumed it (XEP-0198, nothing lost). */
  resumes = 0;
  private down = false;
  private stopped = false;
  private closed = false;
  private readonly reconnect: { start(): void; stop(): void };
  readonly loop: Promise<void>;

  constructor(peer: TestPeer, to: string, prefix: string, target: number, rng: Rng) {
    // Bob is the instrument, not the subject: when ejabberd, stalled by load, ends his stream
    // ("Timed out waiting for stream acknowledgement"), he reconnects and RESUMES it, so what he
    // sent is acked or resent by xmpp.js and what was sent to him is replayed exactly. Anything
    // else — a new session, stanzas xmpp.js gives up on, no resumption within the window — makes
    // his counts unreliable: the run is then a broken scenario, not a verdict on alice.
    const sm = (
      peer.xmpp as unknown as {
        streamManagement: { on(e: "resumed" | "fail", f: () => void): void };
      }
    ).streamManagement;
    peer.xmpp.on("disconnect", () => {
      if (this.closed) return;
      this.down = true;
      setTimeout(() => {
        if (this.down) this.error ??= new Error("bob's stream dropped and was not resumed in 15 s");
      }, 15_000).unref();
    });
    sm.on("resumed", () => {
      this.down = false;
      this.resumes++;
    });
    sm.on("fail", () => {
      this.error ??= new Error(
        "bob's stream could not be resumed: xmpp.js failed his unacked stanzas",
      );
    });
    peer.xmpp.on("online", () => {
      if (this.down)
        this.error ??= new Error("bob got a new session instead of resuming his stream");
    });
    this.reconnect = (
      peer.xmpp as unknown as { reconnect: { start(): void; stop(): void } }
    ).reconnect;
    this.reconnect.start();
    this.loop = (async () => {
      for (let n = 0; !this.stopped && n < target && !this.error; n++) {
        while (this.down && !this.error && !this.stopped) await sleep(50);
        if (this.error || this.stopped) return;
        const body = `${prefix}-${n}`;
        const id = `${body}-${rng.int(1e9).toString(36)}`;
        try {
          await peer.xmpp.send(
            xml(
              "message",
              { to, type: "chat", id },
              xml("body", {}, body),
              xml("origin-id", { xmlns: NS_SID, id }),
            ),
          );
        } catch (err) {
          this.error = err;
          return;
        }
        this.sent.push(body);
        await sleep(rng.between(60, 110));
      }
    })();
  }

  /**
   * A ping round trip to the server after everything else: what was sent to bob before it has
   * reached him. Retried while his stream is being resumed (a stalled ejabberd drops it again
   * after its 60 s ack timeout; see the README), up to four times 90 s.
   */
  async barrier(peer: TestPeer): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await peer.xmpp.iqCaller.request(
          xml("iq", { type: "get", to: "localhost" }, xml("ping", { xmlns: "urn:xmpp:ping" })),
          90_000,
        );
        return;
      } catch (err) {
        if (this.error || attempt === 4) {
          this.error ??= new Error(`bob's ping barrier failed: ${String(err)}`);
          return;
        }
      }
    }
  }

  /** Stops sending; his stream is still resumed if the server drops it (until close()). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  close(): void {
    this.closed = true;
    this.reconnect.stop();
  }
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosResult> {
  requireBuiltCli();
  const t0 = Date.now();
  const seed = opts.seed >>> 0;
  const H = opts.resumeTimeoutSeconds ?? 5;
  const maxChaosMs = opts.maxChaosMs ?? 600_000;
  const verbose = opts.verbose ? ["--verbose"] : [];
  const dir = mkdtempSync(join(tmpdir(), `lichen-chaos-${opts.server}-`));
  const timeline = join(dir, "timeline.log");
  const rng = prng(seed);
  const tag = `${opts.server[0]}${seed.toString(36)}`;
  const inPrefix = `i${tag}`;
  const outPrefix = `o${tag}`;
  const say = (line: string) => {
    const l = `+${((Date.now() - t0) / 1000).toFixed(1)}s ${line}`;
    appendFileSync(timeline, l + "\n");
    opts.log?.(`[${opts.server} ${seed}] ${l}`);
  };

  const counts = { kills: 0, freezes: 0, overlaps: 0, outages: 0, nseRuns: 0, appRestarts: 0 };
  const nseOutcomes: Record<string, number> = {};
  let nseFailures = 0;
  let nseOverruns = 0;
  const problems: string[] = [];
  const procs = new Set<{ kill(): void }>();

  let server: XmppTestServer | undefined;
  let peer: TestPeer | undefined;
  let alice: ChatDbProbe | undefined;
  let app: AppProcess | null = null;
  let appIndex = 0;
  let frozen = false;
  let nseIndex = 0;
  let chaosMs = 0;
  try {
    server =
      opts.server === "prosody"
        ? await startProsody({ smacksHibernationSeconds: H })
        : await startEjabberd({ resumeTimeoutSeconds: H });
    await server.registerUser("alice", "alicepw");
    await server.registerUser("bob", "bobpw");
    const srv = server;
    const db = join(dir, "alice.db");
    const login = await runCli(db, [
      "login",
      "--jid",
      "alice@localhost",
      "--password",
      "alicepw",
      "--service",
      `xmpp://127.0.0.1:${srv.c2sPort}`,
      "--resource",
      "phone",
    ]);
    if (login.code !== 0) throw new Error(`alice's login failed: ${login.stderr}`);
    alice = new ChatDbProbe(db);
    const adb = alice;
    say(
      `${opts.server} on 127.0.0.1:${srv.c2sPort}, resume timeout ${H} s; target ${opts.messages} each way; dir ${dir}`,
    );

    // ---- process helpers -------------------------------------------------------------------
    const saveAppLog = (a: AppProcess, i: number) =>
      writeFileSync(join(dir, `app-${i}.stderr.log`), a.stderr);
    const startApp = (why: string) => {
      if (app) saveAppLog(app, appIndex);
      appIndex++;
      if (appIndex > 1) counts.appRestarts++;
      const a = new AppProcess(db, ["--json", "--to", "bob@localhost", ...verbose]);
      procs.add(a);
      app = a;
      frozen = false;
      say(`app #${appIndex} started (pid ${a.child.pid}; ${why})`);
      return a;
    };
    const killApp = (why: string) => {
      const a = app;
      if (!a) return;
      if (a.running) {
        signal(a.child, "SIGKILL");
        counts.kills++;
      }
      frozen = false;
      say(`app #${appIndex} SIGKILLed (${why})`);
    };
    /** The app process now (a function: closures reassign it). */
    const currentApp = (): AppProcess => app!;
    const lockIsMainsOf = (pid: number | undefined) => {
      const l = adb.lock();
      return !!pid && !!l && l.holder.startsWith(`main:${pid}-`) && l.leaseExpiresAt > Date.now();
    };
    /** Freezes the app between two write transactions (`anywhere`: wherever it is). */
    const freezeApp = async (anywhere = false) => {
      const a = app!;
      let refreezes = 0;
      for (;;) {
        signal(a.child, "SIGSTOP");
        await sleep(20);
        if (anywhere || !adb.writeLocked()) break;
        if (++refreezes > 100) break; // frozen inside a transaction after all: so be it
        signal(a.child, "SIGCONT");
        await sleep(rng.between(1, 30));
      }
      frozen = true;
      counts.freezes++;
      say(`app #${appIndex} frozen${refreezes ? ` (re-frozen ${refreezes}×)` : ""}`);
      return Date.now();
    };
    const thawApp = (why: string) => {
      if (!app || !frozen) return;
      signal(app.child, "SIGCONT");
      frozen = false;
      say(`app #${appIndex} thawed (${why})`);
    };
    /** Waits until the app holds the session again and works (bounded); recovers if not. */
    const appOnline = async (mark: number, idAtMark: number, what: string): Promise<void> => {
      const a = app!;
      let toldFg = false;
      let probed = false;
      const started = Date.now();
      const ok = await until(
        () => {
          if (!a.running) return "exited";
          const since = a.stderr.slice(mark);
          if (/failed for good/.test(since)) return "gave-up";
          if (!toldFg && BACKGROUND.test(since)) {
            a.line("/fg");
            toldFg = true;
          }
          // A thawed app whose connection survived prints nothing, and once both sides have sent
          // everything no new row shows it works: type one more line (counted like the others,
          // so bob must receive it), whose commit does.
          if (!probed && Date.now() - started > 5_000 && lockIsMainsOf(a.child.pid)) {
            a.line(`${outPrefix}-${typed}`);
            typed++;
            probed = true;
          }
          return (
            (/online (again|as)/.test(since) ||
              (lockIsMainsOf(a.child.pid) && adb.maxId() > idAtMark)) &&
            "online"
          );
        },
        "",
        30_000,
      ).catch(() => "timeout");
      if (ok === "online") return;
      const tail = a.stderr.slice(mark).trim().split("\n").slice(-6).join(" | ");
      if (ok === "exited") {
        const code = await a.exited;
        // An app that cannot take the session (e.g. a frozen writer) exits with a message: a user
        // opens it again. Counted, not a failure of the run.
        say(`app #${appIndex} exited (${code}) ${what}: ${tail}`);
        startApp(`after app #${appIndex} exited`);
        return appOnline(app!.stderr.length, adb.maxId(), `${what} (restarted)`);
      }
      problems.push(`app #${appIndex} not back online ${what} (${ok}): ${tail}`);
      say(`PROBLEM app #${appIndex} not back online ${what} (${ok}); killing and restarting`);
      killApp("not back online");
      startApp("recovery");
      await until(
        () => app!.stderr.includes("online as") || !app!.running,
        "the recovered app online",
        30_000,
      ).catch(() => problems.push(`app #${appIndex} not online after a restart`));
    };
    const startNse = (why: string, lingerMs: number) => {
      nseIndex++;
      counts.nseRuns++;
      const n = new CliProcess(db, [
        ...verbose,
        "nse",
        "--deadline-ms",
        String(NSE_DEADLINE_MS),
        "--linger-ms",
        String(lingerMs),
      ]);
      procs.add(n);
      say(`nse #${nseIndex} started (pid ${n.pid}; ${why}; linger ${lingerMs} ms)`);
      return { n, i: nseIndex };
    };
    const finishNse = async (
      { n, i }: { n: CliProcess; i: number },
      killedByUs = false,
    ): Promise<string> => {
      const r = await n.wait(NSE_DEADLINE_MS + 15_000).catch((err: unknown) => {
        problems.push(`nse #${i}: ${(err as Error).message.slice(0, 300)}`);
        return { code: null, signal: "SIGKILL" as const };
      });
      let outcome: string;
      if (r.signal) outcome = killedByUs ? "killed" : `signal ${r.signal}`;
      else if (r.code === 0) {
        try {
          const j = JSON.parse(n.stdout) as { outcome: string; stream: string | null };
          outcome = `${j.outcome}${j.stream ? `/${j.stream}` : ""}`;
        } catch {
          outcome = "unparsable";
        }
      } else {
        outcome = `exit ${r.code}`;
        nseFailures++;
        problems.push(`nse #${i} failed (exit ${r.code}): ${n.stderr.trim().slice(-300)}`);
      }
      nseOutcomes[outcome.split("/")[0]!] = (nseOutcomes[outcome.split("/")[0]!] ?? 0) + 1;
      writeFileSync(join(dir, `nse-${i}.stderr.log`), n.stderr);
      writeFileSync(join(dir, `nse-${i}.stdout.json`), n.stdout);
      const wallMs = (n.exitedAt ?? Date.now()) - n.startedAt;
      say(`nse #${i} ended: ${outcome} after ${wallMs} ms`);
      // Issue 10: waits are bounded by the deadline (plus a short grace and process start-up).
      if (!killedByUs && wallMs > NSE_DEADLINE_MS + NSE_OVERRUN_GRACE_MS) {
        nseOverruns++;
        problems.push(
          `nse #${i} ran ${wallMs} ms with --deadline-ms ${NSE_DEADLINE_MS} (${outcome}); stderr in ${join(dir, `nse-${i}.stderr.log`)}`,
        );
      }
      return outcome;
    };
    const killNse = ({ n, i }: { n: CliProcess; i: number }) => {
      if (n.running) {
        signal(n.child, "SIGKILL");
        counts.kills++;
        say(`nse #${i} SIGKILLed`);
      }
    };
    /** The NSE took the session (it holds the lock), or it ended. */
    const nseTookOver = ({ n }: { n: CliProcess }) =>
      until(() => !n.running || adb.lock()?.holder.startsWith(`nse:${n.pid}-`), "", 15_000).catch(
        () => undefined,
      );
    /** A frozen (or killed) app's lease ran out (bounded). */
    const leaseOut = async () => {
      await sleep(LEASE_MS + 200);
      await until(
        () => {
          const l = adb.lock();
          return !l || l.leaseExpiresAt <= Date.now();
        },
        "",
        10_000,
      ).catch(() => say("the frozen app's lease did not run out (frozen in a transaction?)"));
    };
    const past = () => (H + 1.5) * 1000 + rng.between(0, 2500);

    // ---- start: the app online, bob connected ----------------------------------------------
    const a0 = startApp("initial");
    await until(
      () => a0.stderr.includes("online as"),
      () => `app online: ${a0.stderr}`,
      30_000,
    );
    peer = await startTestPeer(srv.c2sPort, "bob", "bobpw", { resource: "desk" });
    const bob = new BobSender(
      peer,
      "alice@localhost",
      inPrefix,
      opts.messages,
      prng(seed ^ 0x9e3779b9),
    );
    procs.add({ kill: () => void bob.stop() });

    // Alice types numbered lines into whichever app runs and is not frozen.
    let typed = 0;
    let typing = true;
    const typeRng = prng(seed ^ 0x85ebca6b);
    const committedOut = () => adb.rows("out", outPrefix).size;
    const typer = (async () => {
      while (typing) {
        const a = currentApp();
        if (a.running && !frozen) {
          a.line(`${outPrefix}-${typed}`);
          typed++;
        }
        await sleep(typeRng.between(15, 30));
        if (typed % 50 === 0 && committedOut() >= opts.messages) break;
      }
    })();

    // ---- the schedule ----------------------------------------------------------------------
    const chaosStart = Date.now();
    const kinds: [string, number][] = [
      ["kill", 3],
      ["freeze", 2],
      ["freeze-nse", 5],
      ["fresh-during-nse", 2],
      ["outage-kill", 1],
      ["outage-freeze", 1],
      ["nse-kill", 2],
      ["nse-chain", 2],
      ["nse-while-live", 1],
    ];
    const totalWeight = kinds.reduce((s, [, w]) => s + w, 0);
    const pick = () => {
      let x = rng.int(totalWeight);
      for (const [k, w] of kinds) if ((x -= w) < 0) return k;
      return kinds[0]![0];
    };
    let events = 0;
    while (
      (bob.sent.length < opts.messages || committedOut() < opts.messages) &&
      Date.now() - chaosStart < maxChaosMs
    ) {
      if (bob.error) throw new Error(`bob could not send: ${String(bob.error)}`);
      // Live: the app holds the session and works for a while.
      await sleep(rng.between(200, 1500));
      const kind = pick();
      events++;
      const a = currentApp();
      if (!a.running) {
        startApp("it had exited");
        await appOnline(app!.stderr.length, adb.maxId(), "after a restart");
        continue;
      }
      say(
        `event ${events}: ${kind} (bob sent ${bob.sent.length}, alice committed ${committedOut()})`,
      );
      const mark = () => app!.stderr.length;
      switch (kind) {
        case "kill": {
          killApp("kill");
          await sleep(rng.between(100, 1500));
          startApp("after kill");
          await appOnline(0, adb.maxId(), "after kill");
          break;
        }
        case "freeze": {
          await freezeApp(rng.chance(0.2));
          await sleep(rng.between(LEASE_MS + 300, LEASE_MS + 2500));
          const m = mark();
          const id = adb.maxId();
          thawApp("freeze");
          await appOnline(m, id, "after a freeze");
          break;
        }
        case "freeze-nse": {
          await freezeApp();
          await leaseOut();
          await sleep(rng.between(0, 400));
          const variant = (["a", "b", "c", "d"] as const)[rng.int(4)]!;
          const nse = startNse(`app frozen, variant ${variant}`, variant === "a" ? 3000 : 300);
          counts.overlaps++;
          await nseTookOver(nse);
          if (variant === "a") {
            await sleep(rng.between(100, 1500));
            const m = mark();
            const id = adb.maxId();
            thawApp("(a) while the NSE runs");
            await finishNse(nse);
            await appOnline(m, id, "after (a)");
          } else if (variant === "b") {
            await finishNse(nse);
            await sleep(rng.between(200, 3000));
            const m = mark();
            const id = adb.maxId();
            thawApp("(b) after the NSE ended");
            await appOnline(m, id, "after (b)");
          } else if (variant === "c") {
            await sleep(rng.between(0, 1000));
            killNse(nse);
            await finishNse(nse, true);
            await sleep(rng.between(200, 2000));
            const m = mark();
            const id = adb.maxId();
            thawApp("(c) after the NSE was killed");
            await appOnline(m, id, "after (c)");
          } else {
            await sleep(rng.between(0, 1000));
            killApp("(d) frozen app killed while the NSE runs");
            startApp("(d) fresh while the NSE runs");
            await finishNse(nse);
            await appOnline(0, adb.maxId(), "after (d)");
          }
          break;
        }
        case "fresh-during-nse": {
          killApp("before an NSE");
          await leaseOut(); // the killed app's lease, else the NSE says main-running
          const nse = startNse("app killed", rng.between(0, 2000));
          counts.overlaps++;
          await nseTookOver(nse);
          await sleep(rng.between(0, 1000));
          startApp("fresh while an NSE runs");
          await finishNse(nse);
          await appOnline(0, adb.maxId(), "fresh during an NSE");
          break;
        }
        case "outage-kill": {
          killApp("outage");
          const ms = past();
          say(`outage: app away ${ms} ms (resume timeout ${H} s)`);
          counts.outages++;
          await sleep(ms);
          startApp("after an outage past the resume timeout");
          await appOnline(0, adb.maxId(), "after an outage");
          break;
        }
        case "outage-freeze": {
          await freezeApp();
          await leaseOut();
          const nse = startNse("app frozen, then away past the resume timeout", 0);
          counts.overlaps++;
          await finishNse(nse);
          const ms = past();
          say(`outage: frozen app stays frozen ${ms} ms after the NSE (resume timeout ${H} s)`);
          counts.outages++;
          await sleep(ms);
          const m = mark();
          const id = adb.maxId();
          thawApp("after an outage past the resume timeout");
          await appOnline(m, id, "after a frozen outage");
          break;
        }
        case "nse-kill": {
          killApp("before an NSE that is killed");
          await leaseOut();
          const nse = startNse("to be killed mid-run", 1000);
          if (rng.chance(0.5)) await nseTookOver(nse);
          await sleep(rng.between(0, 1200));
          killNse(nse);
          await finishNse(nse, true);
          await sleep(rng.between(0, 1000));
          startApp("after a killed NSE");
          await appOnline(0, adb.maxId(), "after a killed NSE");
          break;
        }
        case "nse-chain": {
          const viaFreeze = rng.chance(0.5);
          if (viaFreeze) {
            await freezeApp();
            await leaseOut();
          } else {
            killApp("before NSEs in a row");
            await leaseOut();
          }
          const k = rng.between(2, 4);
          for (let j = 0; j < k; j++) {
            const nse = startNse(`${j + 1} of ${k} in a row`, rng.between(0, 800));
            if (viaFreeze) counts.overlaps++;
            if (rng.chance(0.3)) {
              await sleep(rng.between(100, 1500));
              killNse(nse);
              await finishNse(nse, true);
            } else await finishNse(nse);
            await sleep(rng.between(0, 800));
          }
          if (viaFreeze) {
            const m = mark();
            const id = adb.maxId();
            thawApp("after NSEs in a row");
            await appOnline(m, id, "after NSEs in a row (thawed)");
          } else {
            startApp("after NSEs in a row");
            await appOnline(0, adb.maxId(), "after NSEs in a row");
          }
          break;
        }
        case "nse-while-live": {
          const nse = startNse("while the app is live", 0);
          const outcome = await finishNse(nse);
          if (!outcome.startsWith("main-running"))
            say(`note: an NSE beside the live app said ${outcome}`);
          break;
        }
      }
    }
    chaosMs = Date.now() - chaosStart;
    say(
      `chaos over after ${events} events, ${Math.round(chaosMs / 1000)} s: bob sent ${bob.sent.length}, alice typed ${typed}, committed ${committedOut()}`,
    );
    if (Date.now() - chaosStart >= maxChaosMs)
      problems.push(`the chaos phase hit its cap (${maxChaosMs} ms) before the targets`);

    // ---- the end: bob stops, the app runs in the foreground until everything is flushed -----
    await bob.stop();
    typing = false;
    await typer;
    if (bob.error) throw new Error(`bob could not send: ${String(bob.error)}`);
    thawApp("final");
    if (!currentApp().running) startApp("final");
    const fin = currentApp();
    await until(
      () => /online (again|as)/.test(fin.stderr) || lockIsMainsOf(fin.child.pid) || !fin.running,
      "",
      30_000,
    ).catch(() => undefined);
    // Every typed line has been handled once the app answers a /help typed after them.
    const helpMark = fin.stderr.length;
    fin.line("/help");
    await until(
      () => fin.stderr.slice(helpMark).includes("/quit") || !fin.running,
      "",
      30_000,
    ).catch(() => problems.push("the final app never answered /help"));
    await bob.barrier(peer);
    bob.close();
    // A dead peer invalidates the counts: a broken scenario, not a verdict on the engine.
    if (bob.error)
      throw new Error(
        `bob's own stream failed (${String(bob.error)}); server log about bob: ${(
          await srv.logText()
        )
          .split("\n")
          .filter((l) => /bob@localhost/.test(l) && /clos|timed out|terminat/i.test(l))
          .slice(-4)
          .join(" | ")}`,
      );
    const bobOriginIds = () => {
      const ids = new Set<string>();
      for (const r of peer!.received) {
        if (!r.body?.startsWith(`${outPrefix}-`)) continue;
        const st = r.stanza as { getChild(n: string, ns: string): { attrs: { id?: string } } };
        const id = st.getChild("origin-id", NS_SID)?.attrs.id;
        if (id) ids.add(id);
      }
      return ids;
    };
    const outstanding = () => {
      const inRows = adb.rows("in", inPrefix);
      const missingIn = bob.sent.filter((b) => !inRows.has(b)).length;
      const got = bobOriginIds();
      let missingOut = 0;
      for (const ids of adb.rows("out", outPrefix).values())
        if (!ids.some((id) => id && got.has(id))) missingOut++;
      return missingIn + missingOut;
    };
    let last = Infinity;
    let lastChange = Date.now();
    const waitStart = Date.now();
    let toldFg = false;
    for (;;) {
      const left = outstanding();
      if (left === 0) break;
      if (left < last) {
        last = left;
        lastChange = Date.now();
      }
      if (!fin.running) {
        problems.push(`the final app exited: ${fin.stderr.slice(-500)}`);
        break;
      }
      if (!toldFg && BACKGROUND.test(fin.stderr.slice(helpMark))) {
        fin.line("/fg");
        toldFg = true;
      }
      if (Date.now() - lastChange > 20_000 || Date.now() - waitStart > 90_000) break;
      await sleep(100);
    }
    say(`final flush: ${outstanding()} outstanding after ${Date.now() - waitStart} ms`);
    fin.line("/quit");
    await Promise.race([fin.exited, sleep(15_000)]);
    fin.kill();
    saveAppLog(fin, appIndex);
    await peer.stop();

    // ---- judgement ---------------------------------------------------------------------------
    const inRows = adb.rows("in", inPrefix);
    const sentSet = new Set(bob.sent);
    const inLost = bob.sent.filter((b) => !inRows.has(b));
    const inDup = [...inRows].filter(([, ids]) => ids.length > 1);
    const inUnknown = [...inRows.keys()].filter((b) => !sentSet.has(b));
    const outRows = adb.rows("out", outPrefix);
    const committedIds = new Map<string, string>(); // origin-id → body
    for (const [body, ids] of outRows) for (const id of ids) if (id) committedIds.set(id, body);
    const receivedByBody = new Map<string, Set<string>>(); // body → distinct origin-ids
    let uncommitted = 0;
    const uncommittedSamples: string[] = [];
    for (const id of bobOriginIds()) {
      const body = committedIds.get(id);
      if (!body) {
        uncommitted++;
        if (uncommittedSamples.length < 10) uncommittedSamples.push(id);
        continue;
      }
      receivedByBody.set(body, (receivedByBody.get(body) ?? new Set()).add(id));
    }
    const outLost = [...outRows.keys()].filter((b) => !receivedByBody.has(b));
    const outDup = [...receivedByBody].filter(([, ids]) => ids.size > 1);
    const outDupRows = [...outRows].filter(([, ids]) => ids.length > 1);
    const integrity = adb.integrity();
    const log = await srv.logText();
    const complaints = counterComplaints(log);
    const inbound = {
      sent: bob.sent.length,
      stored: inRows.size,
      lost: inLost.length,
      duplicated: inDup.length,
      unknown: inUnknown.length,
    };
    const outbound = {
      typed,
      committed: outRows.size,
      received: receivedByBody.size,
      lost: outLost.length,
      duplicated: outDup.length,
      uncommitted,
      duplicateRows: outDupRows.length,
    };
    const lost = inbound.lost + outbound.lost;
    const duplicated = inbound.duplicated + outbound.duplicated + outbound.duplicateRows;
    const failed =
      lost > 0 ||
      duplicated > 0 ||
      uncommitted > 0 ||
      inUnknown.length > 0 ||
      integrity !== "ok" ||
      complaints.length > 0;
    if (failed) writeFileSync(join(dir, `${opts.server}.log`), log);
    if (failed) {
      try {
        copyFileSync(db, join(dir, "alice-final.db"));
      } catch {
        // the database itself is kept in dir anyway
      }
    }
    const report = [
      `chaos on ${opts.server}: seed ${seed} (replay: LICHEN_CHAOS_SEED=${seed}); dir ${dir}`,
      `inbound (bob → alice): sent ${inbound.sent}, stored ${inbound.stored}, lost ${inbound.lost}, duplicated ${inbound.duplicated}, unknown ${inbound.unknown}`,
      `outbound (alice → bob): typed ${typed}, committed ${outbound.committed}, received ${outbound.received}, lost ${outbound.lost}, duplicated ${outbound.duplicated}, received-but-never-committed ${uncommitted}, duplicate rows ${outbound.duplicateRows}`,
      `kills ${counts.kills}, freezes ${counts.freezes}, overlaps ${counts.overlaps}, outages ${counts.outages}, NSE runs ${counts.nseRuns} ${JSON.stringify(nseOutcomes)}, NSE failures ${nseFailures}, NSE deadline overruns ${nseOverruns}, app processes ${appIndex}`,
      `integrity_check: ${integrity}; server counter complaints: ${complaints.length}${complaints.length ? "\n    " + complaints.slice(0, 6).join("\n    ") : ""}`,
      `chaos ${Math.round(chaosMs / 1000)} s, total ${Math.round((Date.now() - t0) / 1000)} s; bob's own stream dropped by the server and resumed ${bob.resumes}×`,
      ...(inLost.length ? [`inbound lost: ${inLost.slice(0, 40).join(" ")}`] : []),
      ...(inDup.length
        ? [
            `inbound duplicated: ${inDup
              .slice(0, 20)
              .map(([b, ids]) => `${b}×${ids.length}`)
              .join(" ")}`,
          ]
        : []),
      ...(outLost.length ? [`outbound lost: ${outLost.slice(0, 40).join(" ")}`] : []),
      ...(outDup.length
        ? [
            `outbound duplicated: ${outDup
              .slice(0, 20)
              .map(([b, ids]) => `${b}×${ids.size}`)
              .join(" ")}`,
          ]
        : []),
      ...(uncommitted ? [`received, never committed: ${uncommittedSamples.join(" ")}`] : []),
      ...(problems.length ? [`problems: ${problems.join("\n  ")}`] : []),
    ].join("\n");
    say(report);
    return {
      server: opts.server,
      seed,
      messages_total: inbound.sent + outbound.committed,
      lost,
      duplicated,
      kills: counts.kills,
      freezes: counts.freezes,
      overlaps: counts.overlaps,
      outages: counts.outages,
      inbound,
      outbound,
      nseRuns: counts.nseRuns,
      nseOutcomes,
      nseFailures,
      nseOverruns,
      appRestarts: counts.appRestarts,
      problems,
      complaints,
      integrity,
      chaosMs,
      durationMs: Date.now() - t0,
      dir,
      report,
    };
  } catch (err) {
    const msg = `chaos on ${opts.server} broke down (seed ${seed}, replay: LICHEN_CHAOS_SEED=${seed}; timeline and logs in ${dir}): ${(err as Error).stack ?? String(err)}`;
    say(msg);
    if (app) writeFileSync(join(dir, `app-${appIndex}.stderr.log`), (app as AppProcess).stderr);
    if (server) writeFileSync(join(dir, `${opts.server}.log`), await server.logText());
    throw new Error(msg, { cause: err });
  } finally {
    for (const p of procs) p.kill();
    await peer?.stop();
    alice?.close();
    await server?.stop();
  }
}
