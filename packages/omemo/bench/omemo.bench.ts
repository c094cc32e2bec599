/**
 * OMEMO benchmark (`npm run bench -- omemo`), on a real Prosody 0.12 on loopback:
 * 1. decrypt_commit_ms_p50: per encrypted message, from the start of its prepare step (decryption
 *    against the snapshot) to the commit of its transaction (message + ratchet + h). Baseline
 *    plain_commit_ms_p50: the same span for plain messages.
 * 2. omemo_msgs_per_s vs plain_msgs_per_s: alice's session is suspended while bob queues N
 *    messages (OMEMO, or plain), then resumed: N-1 / (first -> N-th message stored). Each
 *    block runs both arms back to back (order alternating), so both see the same machine load;
 *    ratios.omemo_vs_plain (target >= 0.5) is the median of the per-block ratios, robust to load
 *    that changes between blocks. The 1-minute load average is printed with each block. Bob (the
 *    sender) runs in a process of his own (sender-child.ts), suspended while alice receives: his
 *    encryption, garbage and receipt handling are not billed to the receiver.
 *    ratios.omemo_vs_plain_cpu: the same per second of this process's CPU time, which other
 *    processes' load does not inflate (omemo's longer CPU bursts are preempted more on a busy
 *    machine, so the wall-clock ratio drops with load).
 * 3. nse_omemo_cold_start_p50_ms / nse_omemo_peak_rss_mb: a new Node process runs handlePush()
 *    with the OMEMO plugin (role nse) on a resumable session with one encrypted message waiting:
 *    spawn -> first decrypted message stored. Baseline: the same without OMEMO and a plain message.
 *
 * LICHEN_BENCH_PROFILE=<dir>: each arm's receive window (connect -> n-th message stored) is
 * recorded with V8's CPU profiler (100 µs sampling) and its sampling heap profiler (objects
 * collected by GC included), written as <dir>/<mode>-<block>.cpuprofile / .heapprofile. The
 * profilers slow the process down: the figures of such a run are not comparable.
 * LICHEN_BENCH_CAPTURE=<dir>: alice's database before the first block (alice.db) and the stanzas
 * of the first OMEMO arm as received (stanzas.jsonl, one JSON string a line), for bench/replay-omemo.mjs,
 * and those of the first plain arm (stanzas-plain.jsonl), for bench/replay-engine.mjs.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import {
  constants as perfConstants,
  PerformanceObserver,
  type EventLoopUtilization,
} from "node:perf_hooks";
import { join } from "node:path";
import { Session as InspectorSession } from "node:inspector/promises";
import { writeFileSync, mkdirSync } from "node:fs";
import { DurableSession, ensureAccount, type Element, type SessionPlugin } from "@lichen/engine";
import { openStore, type Store } from "@lichen/store";
import { startProsody, type XmppTestServer } from "@lichen/test-servers";
import { median } from "@lichen/bench";
import { fork, spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { Omemo } from "#src/index.js";

interface BenchContext {
  log(msg: string): void;
  quick: boolean;
}

const round1 = (x: number) => Math.round(x * 10) / 10;

/** This process's GC pauses (start, duration ms, major or not), to show what lands in a window. */
const gcPauses: { start: number; ms: number; major: boolean }[] = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries())
    gcPauses.push({
      start: e.startTime,
      ms: e.duration,
      major:
        (e as { detail?: { kind?: number } }).detail?.kind ===
        perfConstants.NODE_PERFORMANCE_GC_MAJOR,
    });
}).observe({ entryTypes: ["gc"] });

/** GC pause time (all, major only) that started between `from` and `to` (performance.now()). */
function gcIn(from: number, to: number): { ms: number; majorMs: number } {
  const inside = gcPauses.filter((g) => g.start >= from && g.start <= to);
  const sum = (xs: typeof inside) => xs.reduce((a, g) => a + g.ms, 0);
  return { ms: sum(inside), majorMs: sum(inside.filter((g) => g.major)) };
}
const round3 = (x: number) => Math.round(x * 1000) / 1000;

/**
 * CPU time (ms) of this process's main thread and of its other threads (V8's concurrent compiler
 * and GC helpers, libuv's pool), from /proc (Linux; null elsewhere): process.cpuUsage(), which
 * the CPU ratio uses, sums both; in the OMEMO arm the others are mostly TurboFan compiling.
 */
function threadCpuMs(): { main: number; others: number } | null {
  try {
    let main = 0;
    let others = 0;
    for (const tid of readdirSync("/proc/self/task")) {
      // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // USER_HZ = 100
      if (Number(tid) === process.pid) main += ms;
      else others += ms;
    }
    return { main, others };
  } catch {
    return null;
  }
}

/** The CPU and allocation profilers of LICHEN_BENCH_PROFILE, around one arm's receive window. */
class ArmProfiler {
  private readonly session = new InspectorSession();
  private constructor(private readonly dir: string) {}
  static async open(): Promise<ArmProfiler | null> {
    const dir = process.env.LICHEN_BENCH_PROFILE;
    if (!dir) return null;
    mkdirSync(dir, { recursive: true });
    const p = new ArmProfiler(dir);
    p.session.connect();
    await p.session.post("Profiler.enable");
    await p.session.post("Profiler.setSamplingInterval", { interval: 100 });
    await p.session.post("HeapProfiler.enable");
    return p;
  }
  async start(): Promise<void> {
    await this.session.post("Profiler.start");
    await this.session.post("HeapProfiler.startSampling", {
      samplingInterval: 4096,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    } as object);
  }
  async stop(name: string): Promise<void> {
    const { profile } = await this.session.post("Profiler.stop");
    const heap = await this.session.post("HeapProfiler.stopSampling");
    writeFileSync(join(this.dir, `${name}.cpuprofile`), JSON.stringify(profile));
    writeFileSync(join(this.dir, `${name}.heapprofile`), JSON.stringify(heap.profile));
  }
}

interface Device {
  store: Store;
  session: DurableSession;
  omemo: Omemo;
  stored: number;
  /** performance.now() of each message-stored event. */
  storedAt: number[];
  /** This process's CPU time (user + system, µs) at each message-stored event. */
  storedCpu: number[];
  /** The event loop's utilization counters at each message-stored event. */
  storedElu: EventLoopUtilization[];
}

function device(server: XmppTestServer, dir: string, user: string, timer?: SessionPlugin): Device {
  const store = openStore({ path: join(dir, `${user}.db`), role: "main" });
  ensureAccount(store, { id: user, jid: `${user}@localhost`, resource: "phone" });
  const omemo = new Omemo({ requestTimeoutMs: 60_000 });
  const session = new DurableSession({
    store,
    accountId: user,
    service: `xmpp://127.0.0.1:${server.c2sPort}`,
    domain: "localhost",
    username: user,
    password: `${user}pw`,
    resource: "phone",
    plugins: [...(timer ? [timer] : []), omemo],
  });
  const d: Device = {
    store,
    session,
    omemo,
    stored: 0,
    storedAt: [],
    storedCpu: [],
    storedElu: [],
  };
  session.on("message-stored", () => {
    d.stored++;
    d.storedAt.push(performance.now());
    const cpu = process.cpuUsage();
    d.storedCpu.push(cpu.user + cpu.system);
    d.storedElu.push(performance.eventLoopUtilization());
  });
  return d;
}

/** Records prepare start -> commit for each message stanza. */
class Timer implements SessionPlugin {
  readonly name = "bench-timer";
  private readonly started = new WeakMap<Element, number>();
  spans: number[] = [];
  /** From one message's commit to the next one's prepare start: the engine's work between. */
  gaps: number[] = [];
  private lastCommitAt: number | null = null;
  resetGap(): void {
    this.lastCommitAt = null;
  }
  /** LICHEN_BENCH_CAPTURE: the received stanzas, while set. */
  capture: string[] | null = null;
  async prepare(stanza: Element) {
    if (!stanza.is("message")) return null;
    this.capture?.push(JSON.stringify(stanza.toString()));
    const now = performance.now();
    this.started.set(stanza, now);
    if (this.lastCommitAt !== null) this.gaps.push(now - this.lastCommitAt);
    return null;
  }
  watch(session: DurableSession): void {
    session.on("stanza", (el) => {
      const t0 = this.started.get(el);
      if (t0 === undefined || !el.getChild("body")) return;
      this.lastCommitAt = performance.now();
      this.spans.push(this.lastCommitAt - t0);
    });
  }
}

/** Bob in his own process (sender-child.ts), one IPC command at a time. */
class Sender {
  private waiting: { resolve(): void; reject(e: Error): void } | null = null;
  private stderr = "";
  private constructor(private readonly child: ChildProcess) {
    child.stderr?.on("data", (d) => (this.stderr = (this.stderr + String(d)).slice(-4000)));
    child.on("message", (m: { ok?: true; error?: string }) => {
      const w = this.waiting;
      this.waiting = null;
      if (m.error) w?.reject(new Error(`sender: ${m.error}`));
      else w?.resolve();
    });
    child.once("exit", (code) =>
      this.waiting?.reject(new Error(`sender exited ${code}: ${this.stderr}`)),
    );
  }

  private answer(): Promise<void> {
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  static async start(args: { db: string; service: string; user: string }): Promise<Sender> {
    const script = join(import.meta.dirname, "sender-child.js");
    const sender = new Sender(
      fork(script, [JSON.stringify(args)], { stdio: ["ignore", "inherit", "pipe", "ipc"] }),
    );
    await sender.answer(); // connected, bundle published
    return sender;
  }

  /** Sends the bodies, waits until the server has them, then suspends bob's session. */
  send(to: string, mode: "omemo" | "plain", bodies: string[]): Promise<void> {
    const done = this.answer();
    this.child.send({ cmd: "send", to, mode, bodies });
    return done;
  }

  resume(): Promise<void> {
    const done = this.answer();
    this.child.send({ cmd: "resume" });
    return done;
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const done = this.answer();
    this.child.send({ cmd: "close" });
    await done.catch(() => {});
  }
}

async function until(pred: () => boolean, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function nseRun(
  args: Record<string, unknown>,
): Promise<{ cold: number; rss: number; body: string }> {
  const script = join(import.meta.dirname, "nse-omemo-child.js");
  const spawnedAt = Date.now();
  const child = spawn(process.execPath, [script, JSON.stringify(args)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr = (stderr + String(d)).slice(-4000)));
  return new Promise((resolve, reject) => {
    let done = false;
    createInterface({ input: child.stdout }).on("line", (line) => {
      const e = JSON.parse(line) as {
        firstStoredAt: number | null;
        firstBody: string;
        outcome: string;
        maxRssKiB: number;
      };
      done = true;
      if (e.outcome !== "synced" || e.firstStoredAt === null)
        reject(new Error(`NSE run: ${line} ${stderr}`));
      else
        resolve({ cold: e.firstStoredAt - spawnedAt, rss: e.maxRssKiB / 1024, body: e.firstBody });
    });
    child.once("exit", (code) => {
      if (!done) reject(new Error(`NSE child exited ${code}: ${stderr}`));
    });
  });
}

export default async function omemoBench(ctx: BenchContext) {
  const n = ctx.quick ? 40 : 200;
  const blocks = ctx.quick ? 2 : 7;
  const nseRuns = ctx.quick ? 3 : 7;
  const dir = mkdtempSync(join(tmpdir(), "lichen-omemo-bench-"));
  let server: XmppTestServer | undefined;
  const devices: Device[] = [];
  let bob: Sender | undefined;
  const profiler = await ArmProfiler.open();
  try {
    server = await startProsody({
      smacksHibernationSeconds: 600,
      extraConfig: [
        `log = { error = "${join(dir, "prosody.err")}" }`,
        "storage_archive_item_limit = 10000000",
      ].join("\n"),
    });
    for (const u of ["alice", "bob", "nora"]) await server.registerUser(u, `${u}pw`);
    const timer = new Timer();
    const alice = device(server, dir, "alice", timer);
    timer.watch(alice.session);
    devices.push(alice);
    await alice.session.connect();
    await alice.omemo.publish();
    const service = `xmpp://127.0.0.1:${server.c2sPort}`;
    bob = await Sender.start({ db: join(dir, "bob.db"), service, user: "bob" });
    await bob.send("alice@localhost", "omemo", ["session setup"]);
    await until(() => alice.stored === 1, "setup message");
    await bob.resume();
    // A phone holds a history: per-message work that grows with it (a scan) must show here.
    const history = ctx.quick ? 5_000 : 20_000;
    alice.store.sqlite
      .prepare(
        `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
         INSERT INTO messages (account_id, chat_jid, direction, from_jid, type, origin_id,
           stanza_id, stanza_id_by, archive_id, body, sent_at, stored_at)
         SELECT 'alice', 'carol' || (i % 50) || '@localhost', 'in', 'carol' || (i % 50) || '@localhost/x',
           'chat', 'o' || i, 's' || i, 'alice@localhost', 'a' || i, 'history ' || i, i, i FROM n`,
      )
      .run(history);

    const captureDir = process.env.LICHEN_BENCH_CAPTURE;
    if (captureDir) {
      mkdirSync(captureDir, { recursive: true });
      rmSync(join(captureDir, "alice.db"), { force: true });
      alice.store.sqlite.prepare("VACUUM INTO ?").run(join(captureDir, "alice.db"));
    }
    const omemoRates: number[] = [];
    const plainRates: number[] = [];
    const blockRatios: number[] = [];
    const cpuBlockRatios: number[] = [];
    const omemoCpuRates: number[] = [];
    const plainCpuRates: number[] = [];
    const loads: number[] = [];
    const omemoSpans: number[] = [];
    const plainSpans: number[] = [];
    for (let r = 0; r < blocks; r++) {
      const rate: Record<"omemo" | "plain", number> = { omemo: 0, plain: 0 };
      const cpuRate: Record<"omemo" | "plain", number> = { omemo: 0, plain: 0 };
      for (const mode of r % 2 === 0
        ? (["omemo", "plain"] as const)
        : (["plain", "omemo"] as const)) {
        await alice.session.suspend();
        // All n routed to alice's hibernating session; bob suspended until she has them.
        const bodies = Array.from({ length: n }, (_, i) => `${mode} ${r}-${i}`);
        await bob.send("alice@localhost", mode, bodies);
        const before = alice.stored;
        timer.spans = [];
        timer.gaps = [];
        timer.resetGap();
        alice.storedAt = [];
        alice.storedCpu = [];
        alice.storedElu = [];
        if (captureDir && r === 0) timer.capture = [];
        await profiler?.start();
        const threadsBefore = threadCpuMs();
        await alice.session.connect();
        await until(() => alice.stored === before + n, `${mode} block ${r}`);
        const threadsAfter = threadCpuMs();
        await profiler?.stop(`${mode}-${r}`);
        if (captureDir && timer.capture) {
          const file = mode === "omemo" ? "stanzas.jsonl" : "stanzas-plain.jsonl";
          writeFileSync(join(captureDir, file), timer.capture.join("\n") + "\n");
          timer.capture = null;
        }
        await bob.resume();
        // First to last message stored: the engine's throughput, without the reconnection (TCP,
        // SCRAM, resume), whose CPU-heavy and load-sensitive cost is the same for both arms.
        rate[mode] = ((n - 1) / (alice.storedAt[n - 1]! - alice.storedAt[0]!)) * 1000;
        // The same per second of this process's CPU: what other processes' load cannot inflate
        // (a longer CPU burst per message is preempted more often on a busy machine).
        cpuRate[mode] = ((n - 1) / (alice.storedCpu[n - 1]! - alice.storedCpu[0]!)) * 1e6;
        // How busy alice's event loop was over that span (1: never waiting for input).
        const busy = performance.eventLoopUtilization(
          alice.storedElu[n - 1],
          alice.storedElu[0],
        ).utilization;
        const gc = gcIn(alice.storedAt[0]!, alice.storedAt[n - 1]!);
        (mode === "omemo" ? omemoRates : plainRates).push(rate[mode]);
        (mode === "omemo" ? omemoSpans : plainSpans).push(...timer.spans);
        ctx.log(
          `block ${r + 1}/${blocks} ${mode}: ${round1(rate[mode])} msgs/s, per message p50 ${round3(median(timer.spans))} ms (prepare → commit), ${round3(median(timer.gaps))} ms between, event loop busy ${round3(busy)}, GC pauses ${round1(gc.ms)} ms (major ${round1(gc.majorMs)})${threadsBefore && threadsAfter ? `, CPU connect → last stored: main thread ${round1(threadsAfter.main - threadsBefore.main)} ms, other threads ${round1(threadsAfter.others - threadsBefore.others)} ms` : ""}`,
        );
      }
      const load = loadavg()[0]!;
      loads.push(load);
      blockRatios.push(rate.omemo / rate.plain);
      cpuBlockRatios.push(cpuRate.omemo / cpuRate.plain);
      omemoCpuRates.push(cpuRate.omemo);
      plainCpuRates.push(cpuRate.plain);
      ctx.log(
        `block ${r + 1}/${blocks}: omemo/plain ${round3(rate.omemo / rate.plain)} (per CPU second ${round3(cpuRate.omemo / cpuRate.plain)}), load average ${load.toFixed(2)}`,
      );
    }
    const failures = alice.store.sqlite.prepare("SELECT count(*) AS n FROM quarantine").get() as {
      n: number;
    };
    if (failures.n > 0) throw new Error(`${failures.n} messages could not be decrypted`);

    // ---- NSE cold start --------------------------------------------------------------------------
    const nora = device(server, dir, "nora");
    devices.push(nora);
    await nora.session.connect();
    await nora.omemo.publish();
    await nora.session.suspend();
    const noraArgs = {
      db: join(dir, "nora.db"),
      service: `xmpp://127.0.0.1:${server.c2sPort}`,
      domain: "localhost",
      username: "nora",
      password: "norapw",
      accountId: "nora",
      resource: "phone",
    };
    const cold: Record<"omemo" | "plain", number[]> = { omemo: [], plain: [] };
    const rss: Record<"omemo" | "plain", number[]> = { omemo: [], plain: [] };
    for (let i = -1; i < nseRuns; i++) {
      for (const mode of ["omemo", "plain"] as const) {
        const body = `nse ${mode} ${i}`;
        await bob.send("nora@localhost", mode, [body]);
        await bob.resume();
        const run = await nseRun({ ...noraArgs, omemo: mode === "omemo" });
        if (run.body !== body)
          throw new Error(`NSE stored ${JSON.stringify(run.body)}, expected ${body}`);
        if (i < 0) continue; // warms the OS file cache
        cold[mode].push(run.cold);
        rss[mode].push(run.rss);
        ctx.log(
          `NSE ${mode} run ${i + 1}/${nseRuns}: first message stored ${run.cold} ms, peak RSS ${round1(run.rss)} MB`,
        );
      }
    }
    const omemoRate = median(omemoRates);
    const plainRate = median(plainRates);
    return {
      metrics: {
        messages_per_arm: n,
        history_messages: history,
        blocks,
        load_avg_1m_p50: Math.round(median(loads) * 100) / 100,
        decrypt_commit_ms_p50: round3(median(omemoSpans)),
        plain_commit_ms_p50: round3(median(plainSpans)),
        omemo_msgs_per_s: round1(omemoRate),
        plain_msgs_per_s: round1(plainRate),
        omemo_msgs_per_cpu_s: round1(median(omemoCpuRates)),
        plain_msgs_per_cpu_s: round1(median(plainCpuRates)),
        nse_omemo_cold_start_p50_ms: median(cold.omemo),
        nse_plain_cold_start_p50_ms: median(cold.plain),
        nse_omemo_peak_rss_mb: round1(median(rss.omemo)),
        nse_plain_peak_rss_mb: round1(median(rss.plain)),
      },
      ratios: {
        omemo_vs_plain: round3(median(blockRatios)),
        omemo_vs_plain_cpu: round3(median(cpuBlockRatios)),
        decrypt_commit_vs_plain_commit: round3(median(omemoSpans) / median(plainSpans)),
        nse_omemo_vs_plain_cold_start: round3(median(cold.omemo) / median(cold.plain)),
      },
    };
  } finally {
    for (const d of devices) {
      await d.session.close().catch(() => {});
      d.store.close();
    }
    await bob?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
