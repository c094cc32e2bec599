// The phone: receives the APNs simulator's deliveries for one device token and runs the REAL
// built lichen-chat processes the way iOS runs an app's processes (see rules.ts, README "iOS
// rules"). It records every notification shown, with the time and the process that produced it.
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { pendingBackgroundTaskRequests, takeDueLocalNotifications } from "@lichen/engine";
import type { ApnsDelivery } from "@lichen/push-simulators";
import { openStore, type Store } from "@lichen/store";
import { prng } from "@lichen/test-kit";
import {
  displayedContents,
  parseNseLocalLine,
  parseNsePushLine,
  type NsePushLine,
} from "./adapter.js";
import { IOS_RULES, type DeviceRules } from "./rules.js";

/** Which process produced a displayed notification. */
export type Producer =
  /** The NSE's content for its push. */
  | "nse"
  /** The push's original (placeholder) content: the NSE crashed or was killed before answering. */
  | "original"
  /** A scheduled local notification that fell due (the "could not synchronize" warning). */
  | "scheduled";

export interface DisplayedNotification {
  /** Clock time it was shown. */
  at: number;
  by: Producer;
  /** PID of the process whose output it is (the NSE; null for scheduled ones). */
  pid: number | null;
  /**
   * The APNs id of the push it belongs to (null for scheduled ones, and for one the NSE posted
   * itself for messages that came while it lingered with no push of their own).
   */
  pushId: string | null;
  title: string;
  /** The newest message the push brought (one notification per push). */
  body: string;
  /** E.g. "+2 more": the push brought several messages; `count` says how many in all. */
  subtitle?: string;
  count?: number;
  threadId?: string;
}

/** One event of the device's timeline (for logs, the demo's narration and failure messages). */
export interface TimelineEntry {
  at: number;
  what: string;
  pid?: number;
}

/** Time source and timers; tests may inject their own. */
export interface DeviceClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: DeviceClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface DeviceSimulatorOptions {
  /** The app's database (created by `lichen-chat login`). */
  db: string;
  /** The device token this phone registered (deliveries for other tokens are ignored). */
  token: string;
  /**
   * iOS ≥ 14 serializes pushes: a push arriving while the NSE lives goes to that process
   * (`didReceive` again). macOS "only sometimes" does: there a push may start a second NSE
   * process at the same time (chosen with the seeded `seed`).
   */
  profile?: "ios" | "macos";
  rules?: DeviceRules;
  /** macOS profile: the chance that a push starts a second NSE beside a living one (default 0.5). */
  macosConcurrency?: number;
  clock?: DeviceClock;
  /** Seed for the simulator's own choices (macOS concurrency, swipe grace). */
  seed?: number;
  /** Path of lichen-chat's cli.js (default: the built @lichen/chat). */
  cli?: string;
  /**
   * Grant a background task by itself as soon as one is requested and the app is away (default
   * false: the test or the demo calls grantBackgroundTask()).
   */
  autoGrantBackgroundTasks?: boolean;
  /** Extra environment for the processes (e.g. NODE_EXTRA_CA_CERTS). */
  env?: NodeJS.ProcessEnv;
}

type AppState = "not-running" | "foreground" | "background" | "frozen";

interface NseProcess {
  child: ChildProcess;
  pid: number;
  startedAt: number;
  /** Pushes given to it, by APNs id, with their original content; removed once answered. */
  pending: Map<string, { title: string; body: string }>;
  /** Takes further pushes (stdin) until it answers "not-accepted" or exits. */
  accepting: boolean;
  exited: Promise<void>;
  stderr: string;
}

/** The built lichen-chat CLI (a workspace dependency). */
/** The `lichen-chat` bin, as installed: the bundle, with the NSE's memory-saving V8 flags. */
function defaultCli(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("@lichen/chat/package.json")), "bin", "lichen-chat.mjs");
}

export class DeviceSimulator extends EventEmitter<{
  displayed: [DisplayedNotification];
  timeline: [TimelineEntry];
}> {
  readonly displayed: DisplayedNotification[] = [];
  readonly timeline: TimelineEntry[] = [];
  /** Every NSE process started, in order (PIDs). */
  readonly nsePids: number[] = [];
  /** Result lines of every NSE, in arrival order. */
  readonly nseResults: (NsePushLine & { pid: number })[] = [];
  readonly rules: DeviceRules;
  readonly profile: "ios" | "macos";
  readonly seed: number;

  private readonly clock: DeviceClock;
  private readonly cli: string;
  private readonly rng: ReturnType<typeof prng>;
  private readonly store: Store;
  private readonly nses = new Set<NseProcess>();
  /** iOS: pushes waiting for the ending NSE to exit (never two NSE processes at once). */
  private readonly waiting: { pushId: string; original: { title: string; body: string } }[] = [];
  private app: { child: ChildProcess; state: AppState; stdout: string; stderr: string } | null =
    null;
  private appTimers: unknown[] = [];
  private readonly backgroundRuns = new Set<ChildProcess>();
  private tickTimer: unknown = null;
  private stopped = false;

  constructor(private readonly opts: DeviceSimulatorOptions) {
    super();
    this.rules = opts.rules ?? IOS_RULES;
    this.profile = opts.profile ?? "ios";
    this.clock = opts.clock ?? realClock;
    this.cli = opts.cli ?? defaultCli();
    this.seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
    this.rng = prng(this.seed);
    // The OS's own view of the app's data: scheduled notifications and background-task requests.
    this.store = openStore({ path: opts.db, role: "share" });
    this.tick();
  }

  /** Adds an entry to the timeline (the simulator's own events, or a test's marks). */
  note(what: string, pid?: number): void {
    const e: TimelineEntry = { at: this.clock.now(), what, ...(pid !== undefined ? { pid } : {}) };
    this.timeline.push(e);
    this.emit("timeline", e);
  }

  private show(n: Omit<DisplayedNotification, "at">): void {
    const d = { at: this.clock.now(), ...n };
    this.displayed.push(d);
    this.note(`notification shown (${n.by}): "${n.title}: ${n.body}"`, n.pid ?? undefined);
    this.emit("displayed", d);
  }

  private spawnCli(args: string[], stdin: "pipe" | "ignore"): ChildProcess {
    return spawn(process.execPath, [this.cli, "--db", this.opts.db, ...args], {
      stdio: [stdin, "pipe", "pipe"],
      env: { ...process.env, ...this.opts.env },
    });
  }

  // ---- pushes ------------------------------------------------------------------------------

  /** Hand the APNs simulator's deliveries here (ApnsSimulatorOptions.onDelivery). */
  readonly deliver = (d: ApnsDelivery): void => {
    if (this.stopped || d.token !== this.opts.token) return;
    const aps = ((d.payload as { aps?: Record<string, unknown> } | null)?.aps ?? {}) as {
      alert?: { title?: string; body?: string } | string;
      "mutable-content"?: number;
      "content-available"?: number;
    };
    const alert =
      typeof aps.alert === "string"
        ? { title: "", body: aps.alert }
        : aps.alert
          ? { title: aps.alert.title ?? "", body: aps.alert.body ?? "" }
          : null;
    if (!alert) {
      if (aps["content-available"] === 1) this.silentPush(d.apnsId);
      else this.note(`push ${d.apnsId} without alert or content-available: dropped`);
      return;
    }
    this.note(`push ${d.apnsId} delivered (alert${aps["mutable-content"] ? ", mutable" : ""})`);
    // The main app in the foreground gets the push itself (no NSE); it has the messages.
    if (this.app?.state === "foreground") {
      this.note(`push ${d.apnsId}: app in the foreground, no NSE`);
      return;
    }
    if (aps["mutable-content"] !== 1) {
      this.show({ by: "original", pid: null, pushId: d.apnsId, ...alert });
      return;
    }
    this.alertPush(d.apnsId, alert);
  };

  private alertPush(pushId: string, original: { title: string; body: string }): void {
    const live = [...this.nses].find((n) => n.accepting);
    const concurrent =
      this.profile === "macos" &&
      live !== undefined &&
      this.rng.next() < (this.opts.macosConcurrency ?? 0.5);
    if (live && !concurrent) {
      live.pending.set(pushId, original);
      live.child.stdin!.write(`${pushId}\n`);
      this.note(`push ${pushId} handed to the running NSE (didReceive again)`, live.pid);
      return;
    }
    if (this.profile === "ios" && this.nses.size > 0) {
      // The NSE is ending: iOS starts the next one when it is gone.
      this.waiting.push({ pushId, original });
      this.note(`push ${pushId} waits for the ending NSE`);
      return;
    }
    this.startNse(pushId, original);
  }

  private startNse(pushId: string, original: { title: string; body: string }): void {
    const r = this.rules;
    const child = this.spawnCli(
      [
        "nse",
        "--stdin",
        "--push-id",
        pushId,
        "--deadline-ms",
        String(r.nseDeadlineMs),
        "--linger-ms",
        String(r.nseLingerMs),
        "--sync-warning-delay-ms",
        String(r.syncWarningDelayMs),
      ],
      "pipe",
    );
    child.stdin!.on("error", () => {}); // a killed NSE's stdin: the push is answered as a crash
    const pid = child.pid!;
    const nse: NseProcess = {
      child,
      pid,
      startedAt: this.clock.now(),
      pending: new Map([[pushId, original]]),
      accepting: true,
      exited: new Promise((resolve) => child.once("exit", () => resolve())),
      stderr: "",
    };
    this.nses.add(nse);
    this.nsePids.push(pid);
    this.note(`NSE started for push ${pushId}`, pid);
    child.stderr!.on("data", (d) => (nse.stderr += String(d)));
    createInterface({ input: child.stdout! }).on("line", (text) => {
      const local = parseNseLocalLine(text);
      if (local) {
        this.note("NSE posted a notification of its own (messages without a push)", pid);
        for (const c of displayedContents({ pushId: "", outcome: "local", notifications: local }))
          this.show({ by: "nse", pid, pushId: null, ...c });
        return;
      }
      // A push's line comes as soon as its notification is final (contentHandler), before the
      // NSE lingers: shown at once, while the process lives on.
      const line = parseNsePushLine(text);
      if (!line) return;
      this.nseResults.push({ ...line, pid });
      const orig = nse.pending.get(line.pushId);
      nse.pending.delete(line.pushId);
      if (line.outcome === "not-accepted") {
        nse.accepting = false;
        if (orig) this.alertPush(line.pushId, orig);
        return;
      }
      this.note(`NSE answered push ${line.pushId}: ${line.outcome}`, pid);
      for (const c of displayedContents(line))
        this.show({ by: "nse", pid, pushId: line.pushId, ...c });
    });
    // iOS kills the extension 30 s after it started, whatever it is doing.
    const killTimer = this.clock.setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) {
        this.note("NSE killed: its time is up", pid);
        child.kill("SIGKILL");
      }
    }, r.nseKillMs);
    child.once("exit", (code, signal) => {
      this.clock.clearTimeout(killTimer);
      nse.accepting = false;
      this.nses.delete(nse);
      this.note(
        `NSE exited (${signal ?? `code ${code}`})${code ? `: ${nse.stderr.trim().slice(-500)}` : ""}`,
        pid,
      );
      // Crashed or killed before answering: iOS shows the push's original content.
      for (const [id, orig] of nse.pending) this.show({ by: "original", pid, pushId: id, ...orig });
      nse.pending.clear();
      const next = this.waiting.shift();
      if (next && !this.stopped) this.startNse(next.pushId, next.original);
      for (const w of this.waiting.splice(0)) this.alertPush(w.pushId, w.original);
    });
  }

  /** The running NSE processes' PIDs (e.g. for a test that crashes one). */
  get runningNsePids(): number[] {
    return [...this.nses].map((n) => n.pid);
  }

  /** Stderr of the running NSEs (for failure messages). */
  nseStderr(): string {
    return [...this.nses].map((n) => `[${n.pid}] ${n.stderr}`).join("\n");
  }

  /** Resolves once no NSE runs and no push waits for one. */
  async nsesIdle(): Promise<void> {
    while (this.nses.size > 0 || this.waiting.length > 0)
      await Promise.all([...this.nses].map((n) => n.exited));
  }

  // ---- the main app --------------------------------------------------------------------------

  get appState(): AppState {
    return this.app?.state ?? "not-running";
  }

  get appPid(): number | null {
    return this.app?.child.pid ?? null;
  }

  /** The app's stdout/stderr so far. */
  appOutput(): { stdout: string; stderr: string } {
    return { stdout: this.app?.stdout ?? "", stderr: this.app?.stderr ?? "" };
  }

  private clearAppTimers(): void {
    for (const t of this.appTimers.splice(0)) this.clock.clearTimeout(t);
  }

  private appLine(text: string): void {
    const stdin = this.app?.child.stdin;
    if (stdin?.writable) stdin.write(text + "\n");
  }

  /** The user opens the app: launched (`lichen-chat app`), or thawed and brought to the foreground. */
  openApp(): void {
    this.clearAppTimers();
    if (!this.app) {
      const child = this.spawnCli(["app", "--json"], "pipe");
      child.stdin!.on("error", () => {});
      const app = { child, state: "foreground" as AppState, stdout: "", stderr: "" };
      child.stdout!.on("data", (d) => (app.stdout += String(d)));
      child.stderr!.on("data", (d) => (app.stderr += String(d)));
      child.once("exit", (code, signal) => {
        if (this.app === app) {
          this.app = null;
          this.clearAppTimers();
        }
        this.note(`main app exited (${signal ?? `code ${code}`})`, child.pid);
      });
      this.app = app;
      this.note("main app launched (foreground)", child.pid);
      return;
    }
    if (this.app.state === "frozen") this.app.child.kill("SIGCONT");
    if (this.app.state !== "foreground") this.appLine("/fg");
    this.app.state = "foreground";
    this.note("main app in the foreground", this.appPid ?? undefined);
  }

  /** The user types a line in the app (a message to the chosen chat, or /to JID). */
  typeInApp(line: string): void {
    if (this.app?.state === "foreground") this.appLine(line);
  }

  /** The user leaves the app: told at once (/bg), frozen `backgroundRunMs` later. */
  leaveApp(): void {
    if (!this.app || this.app.state !== "foreground") return;
    this.app.state = "background";
    this.appLine("/bg");
    this.note("main app in the background", this.appPid ?? undefined);
    this.freezeAppAfter(this.rules.backgroundRunMs);
  }

  private freezeAppAfter(ms: number): void {
    this.clearAppTimers();
    this.appTimers.push(
      this.clock.setTimeout(() => {
        const app = this.app;
        if (!app || app.state !== "background") return;
        app.child.kill("SIGSTOP");
        app.state = "frozen";
        this.note("main app frozen (SIGSTOP)", app.child.pid);
      }, ms),
    );
  }

  /**
   * The user swipes the app away: a frozen app is killed at once (it gets no notice); a running
   * one gets SIGTERM, then SIGKILL after 1–2 s. Resolves when it is gone.
   */
  async swipeApp(): Promise<void> {
    const app = this.app;
    if (!app) return;
    this.clearAppTimers();
    const exited = new Promise<void>((r) => {
      if (app.child.exitCode !== null || app.child.signalCode !== null) r();
      else app.child.once("exit", () => r());
    });
    if (app.state === "frozen") {
      app.child.kill("SIGKILL");
      this.note("main app swiped away while frozen: killed", app.child.pid);
    } else {
      const [min, max] = this.rules.swipeGraceMs;
      const grace = Math.round(min + (max - min) * this.rng.next());
      app.child.kill("SIGTERM");
      this.note(`main app swiped away: SIGTERM, SIGKILL in ${grace} ms`, app.child.pid);
      const t = this.clock.setTimeout(() => {
        if (app.child.exitCode === null && app.child.signalCode === null) {
          app.child.kill("SIGKILL");
          this.note("main app killed after the swipe grace", app.child.pid);
        }
      }, grace);
      await exited;
      this.clock.clearTimeout(t);
    }
    await exited;
  }

  // ---- background time -------------------------------------------------------------------------

  /** A silent push: the main app runs `silentPushRunMs` in the background, then is frozen. */
  private silentPush(pushId: string): void {
    this.note(`silent push ${pushId}: main app woken for ${this.rules.silentPushRunMs} ms`);
    this.backgroundRun(this.rules.silentPushRunMs, "silent push");
  }

  /**
   * Grant the background task the SDK requested (BGProcessingTask, `backgroundTaskBudgetMs`).
   * The simulator picks the moment: with `autoGrantBackgroundTasks`, at the first tick that finds
   * a request while the app is not in the foreground; otherwise when this is called. Returns
   * whether there was a request.
   */
  grantBackgroundTask(): boolean {
    if (pendingBackgroundTaskRequests(this.store).length === 0) return false;
    this.note("background task granted");
    this.backgroundRun(this.rules.backgroundTaskBudgetMs, "background task");
    return true;
  }

  /** Resolves once no background run (`lichen-chat background`) is in progress. */
  async backgroundRunsIdle(): Promise<void> {
    while (this.backgroundRuns.size > 0)
      await Promise.all([...this.backgroundRuns].map((c) => new Promise((r) => c.once("exit", r))));
  }

  private backgroundRun(budgetMs: number, why: string): void {
    const app = this.app;
    if (app) {
      if (app.state === "foreground") return; // it runs anyway
      // A living app process: thawed, runs in the background, wraps up, is frozen again.
      if (app.state === "frozen") app.child.kill("SIGCONT");
      app.state = "background";
      this.appLine("/fg");
      this.note(`main app runs in the background (${why})`, app.child.pid);
      this.clearAppTimers();
      this.appTimers.push(
        this.clock.setTimeout(
          () => this.appLine("/bg"),
          Math.max(0, budgetMs - this.rules.expiryNoticeMs),
        ),
      );
      this.appTimers.push(
        this.clock.setTimeout(() => {
          if (this.app !== app || app.state !== "background") return;
          app.child.kill("SIGSTOP");
          app.state = "frozen";
          this.note(`main app frozen after its ${why}`, app.child.pid);
        }, budgetMs),
      );
      return;
    }
    // Not running: the OS launches it in the background for the budget.
    const child = this.spawnCli(
      ["background", "--deadline-ms", String(Math.max(1, budgetMs - this.rules.expiryNoticeMs))],
      "ignore",
    );
    let out = "";
    child.stdout!.on("data", (d) => (out += String(d)));
    child.stderr!.on("data", () => {});
    this.backgroundRuns.add(child);
    this.note(`main app launched in the background (${why})`, child.pid);
    const kill = this.clock.setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        this.note(`background run killed: ${why} budget spent`, child.pid);
      }
    }, budgetMs);
    child.once("exit", (code, signal) => {
      this.clock.clearTimeout(kill);
      this.backgroundRuns.delete(child);
      this.note(
        `background run ended (${signal ?? `code ${code}`}): ${out.trim() || "no result"}`,
        child.pid,
      );
    });
  }

  // ---- share extension -----------------------------------------------------------------------

  /** The share extension: writes the outbox (`lichen-chat share`), then opens the main app. */
  async share(
    to: string,
    content: { text: string } | { url: string; title?: string },
  ): Promise<void> {
    const args =
      "text" in content
        ? ["share", to, "--text", content.text]
        : ["share", to, "--url", content.url, ...(content.title ? ["--title", content.title] : [])];
    const child = this.spawnCli(args, "ignore");
    let err = "";
    child.stdout!.on("data", () => {});
    child.stderr!.on("data", (d) => (err += String(d)));
    const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    if (code !== 0) throw new Error(`share extension failed (exit ${code}): ${err.trim()}`);
    this.note(
      `share extension queued ${"text" in content ? "a text" : "a link"} for ${to}`,
      child.pid,
    );
    this.openApp();
  }

  // ---- the OS's scheduler ------------------------------------------------------------------------

  /** Shows due local notifications; grants a requested background task when the app is away. */
  private tick(): void {
    if (this.stopped) return;
    try {
      for (const n of takeDueLocalNotifications(this.store)) {
        if (n.content.kind !== "alert") continue;
        this.show({
          by: "scheduled",
          pid: null,
          pushId: null,
          title: n.content.title,
          body: n.content.body,
          threadId: n.content.threadId,
        });
      }
      if (
        this.opts.autoGrantBackgroundTasks &&
        this.appState !== "foreground" &&
        this.backgroundRuns.size === 0
      )
        this.grantBackgroundTask();
    } catch {
      // The database is busy (a process frozen mid-write): the next tick tries again.
    }
    this.tickTimer = this.clock.setTimeout(() => this.tick(), this.rules.tickMs);
  }

  /** Stops every process this simulator started (by PID) and its timers. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clock.clearTimeout(this.tickTimer);
    this.clearAppTimers();
    const children = [
      ...[...this.nses].map((n) => n.child),
      ...this.backgroundRuns,
      ...(this.app ? [this.app.child] : []),
    ];
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((r) => {
            if (c.exitCode !== null || c.signalCode !== null) return r();
            c.once("exit", () => r());
            c.kill("SIGKILL");
          }),
      ),
    );
    this.store.close();
  }
}
