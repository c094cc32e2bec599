// Process harness shared by the chat e2e tests (test/helpers.ts re-exports it) and the chaos driver
// (bench/chaos-run.ts): the BUILT lichen-chat as real processes, signals by PID, bounded waits,
// a seeded PRNG and the server-log check for XEP-0198 counter complaints.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { openStore, type Store } from "@lichen/store";

/** The package root: this file runs from bench/ (vitest) and from dist-bench/ (npm run bench). */
function packageRoot(dir: string): string {
  while (!existsSync(join(dir, "package.json"))) dir = dirname(dir);
  return dir;
}

/** The BUILT CLI, through its bin (which runs the bundle): run as real processes, as a user would. */
export const CLI = join(packageRoot(import.meta.dirname), "bin", "lichen-chat.mjs");
const BUNDLE = join(packageRoot(import.meta.dirname), "dist", "bundle", "cli.js");

export function requireBuiltCli(): void {
  if (!existsSync(BUNDLE))
    throw new Error(
      `${BUNDLE} is missing: build first (npx turbo run build --filter=@lichen/chat...)`,
    );
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `lichen-chat --db <db> ...args` to completion (killed by PID after `timeoutMs`). */
export function runCli(db: string, args: string[], timeoutMs = 45_000): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI, "--db", db, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += String(d)));
  child.stderr!.on("data", (d) => (stderr += String(d)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(
          `lichen-chat ${args.join(" ")} did not exit in ${timeoutMs} ms; stderr: ${stderr}`,
        ),
      );
    }, timeoutMs);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A long-running `lichen-chat app` with piped stdin; its output lines can be awaited. */
export class AppProcess {
  readonly child: ChildProcess;
  stdout = "";
  stderr = "";
  readonly exited: Promise<number | null>;

  constructor(db: string, args: string[] = []) {
    this.child = spawn(process.execPath, [CLI, "--db", db, "app", ...args], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.child.stdout!.on("data", (d) => (this.stdout += String(d)));
    this.child.stderr!.on("data", (d) => (this.stderr += String(d)));
    // Writing to a killed app's stdin fails (EPIPE): the line is simply not typed.
    this.child.stdin!.on("error", () => {});
    this.exited = new Promise((resolve) => this.child.once("exit", (code) => resolve(code)));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  line(text: string): void {
    if (this.running && this.child.stdin!.writable) this.child.stdin!.write(text + "\n");
  }

  /** JSON lines printed on stdout (app --json). */
  messages(): { event: string; direction: string; chat: string; body: string; id: string }[] {
    return this.stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as ReturnType<AppProcess["messages"]>[number]);
  }

  /** Stops it by PID if it is still running. */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }
}

// Polling, the seeded PRNG and sleep come from the shared test kit.
export { until, prng, sleep } from "@lichen/test-kit";

/** A `lichen-chat` process started in the background (e.g. an NSE the test freezes or kills). */
export class CliProcess {
  readonly child: ChildProcess;
  readonly startedAt = Date.now();
  stdout = "";
  stderr = "";
  exitedAt: number | null = null;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    db: string,
    readonly args: string[],
    opts: { script?: string } = {},
  ) {
    const argv = opts.script ? [opts.script, ...args] : [CLI, "--db", db, ...args];
    this.child = spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "pipe"] });
    this.child.stdout!.on("data", (d) => (this.stdout += String(d)));
    this.child.stderr!.on("data", (d) => (this.stderr += String(d)));
    this.exited = new Promise((resolve) =>
      this.child.once("exit", (code, signal) => {
        this.exitedAt = Date.now();
        resolve({ code, signal });
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Waits for the exit, at most `timeoutMs` (then SIGKILL by PID and reject). */
  async wait(
    timeoutMs: number,
    what = `lichen-chat ${this.args.join(" ")}`,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.kill();
        reject(
          new Error(`${what} did not exit in ${timeoutMs} ms; stderr: ${this.stderr.slice(-2000)}`),
        );
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    if (this.running) this.child.kill("SIGKILL");
  }
}

/** Sends a signal by PID if the process is still running (SIGSTOP: frozen, socket and all). */
export function signal(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.exitCode === null && child.signalCode === null) child.kill(sig);
}

/**
 * What the server's log says about a client acknowledging stanzas it was never sent, which is
 * how a wrong XEP-0198 `h` shows. Prosody: the stream error text "Client acknowledged more
 * stanzas than sent by server" and the warning "The client says it handled N new stanzas, but we
 * sent M :)"; ejabberd: the same stream error text and "... acknowledged N stanza(s), but only M
 * were sent" style warnings.
 */
export function counterComplaints(log: string): string[] {
  const patterns = [
    /acknowledged more stanzas than sent/i,
    /says it handled \d+ new stanzas, but we sent/i,
    /acknowledged less stanzas than already acknowledged/i,
    /acknowledged \d+ stanza\(s\), but only \d+/i,
  ];
  return log.split("\n").filter((line) => patterns.some((p) => p.test(line)));
}

/**
 * Read-only view of a chat database for tests and the chaos driver: its own connection (WAL
 * readers never block), facts a scenario waits on, and the checks it ends with.
 */
export class ChatDbProbe {
  readonly store: Store;
  constructor(path: string) {
    this.store = openStore({ path, role: "nse" });
  }

  /** Rows of `direction` whose body starts with `prefix-`: body → origin-ids (one per row). */
  rows(direction: "in" | "out", prefix: string): Map<string, (string | null)[]> {
    const rows = this.store.sqlite
      .prepare(
        "SELECT body, origin_id AS originId FROM messages WHERE direction = ? AND substr(body, 1, ?) = ?",
      )
      .all(direction, prefix.length + 1, `${prefix}-`) as {
      body: string;
      originId: string | null;
    }[];
    const out = new Map<string, (string | null)[]>();
    for (const r of rows) out.set(r.body, [...(out.get(r.body) ?? []), r.originId]);
    return out;
  }

  /** Inbound messages whose body starts with `prefix-`, counted by body. */
  counts(prefix: string): Map<string, number> {
    return new Map([...this.rows("in", prefix)].map(([body, ids]) => [body, ids.length]));
  }

  maxId(): number {
    return (
      (this.store.sqlite.prepare("SELECT max(id) AS m FROM messages").get() as { m: number | null })
        .m ?? 0
    );
  }

  /** The session lock's row. */
  lock(): { holder: string; leaseExpiresAt: number; generation: number } | undefined {
    return this.store.sqlite
      .prepare(
        "SELECT holder, lease_expires_at AS leaseExpiresAt, generation FROM process_locks WHERE key = 'xmpp-session'",
      )
      .get() as { holder: string; leaseExpiresAt: number; generation: number } | undefined;
  }

  inboundH(): number | null {
    // Its own column since migration 0011 (the JSON blob holds no counters).
    const h = this.store.sqlite.prepare("SELECT sm_inbound_h FROM account_state").pluck().get() as
      number | undefined;
    return h ?? null;
  }

  /** Whether another process holds the write lock (a BEGIN IMMEDIATE probe, rolled back). */
  writeLocked(): boolean {
    const db = this.store.sqlite;
    db.pragma("busy_timeout = 0");
    try {
      db.exec("BEGIN IMMEDIATE");
      db.exec("ROLLBACK");
      return false;
    } catch (err) {
      if (/SQLITE_BUSY|database is locked/i.test(String((err as { code?: string }).code ?? err)))
        return true;
      throw err;
    } finally {
      db.pragma("busy_timeout = 5000");
    }
  }

  integrity(): string {
    return (
      this.store.sqlite.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[]
    )
      .map((r) => r.integrity_check)
      .join("; ");
  }

  close(): void {
    this.store.close();
  }
}
