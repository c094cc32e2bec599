// Small helpers of the engine benchmark: JSON-line child processes and statistics.
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";

export interface ChildEvent {
  event: string;
  [k: string]: unknown;
}

/** A Node child process that prints JSON lines; events can be awaited in order. */
export class JsonLineChild {
  readonly proc: ChildProcess;
  readonly spawnedAt: number;
  private readonly events: ChildEvent[] = [];
  private waiters: (() => void)[] = [];
  private stderr = "";
  readonly exited: Promise<number | null>;
  private exitCode: number | null | undefined;

  constructor(script: string, args: unknown) {
    this.spawnedAt = Date.now();
    this.proc = spawn(process.execPath, [script, JSON.stringify(args)], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.proc.stderr!.on("data", (d) => (this.stderr = (this.stderr + String(d)).slice(-4000)));
    createInterface({ input: this.proc.stdout! }).on("line", (line) => {
      try {
        this.events.push(JSON.parse(line) as ChildEvent);
      } catch {
        return; // not ours
      }
      this.wake();
    });
    this.exited = new Promise((resolve) =>
      this.proc.once("exit", (code) => {
        this.exitCode = code;
        this.wake();
        resolve(code);
      }),
    );
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Takes (removes) the first event matching `pred`, waiting for it. */
  async take(
    pred: (e: ChildEvent) => boolean,
    what: string,
    timeoutMs = 60_000,
  ): Promise<ChildEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.events.findIndex(pred);
      if (i >= 0) return this.events.splice(i, 1)[0]!;
      const failed = this.events.find((e) => e.event === "error");
      if (failed) throw new Error(`${what}: child reported ${JSON.stringify(failed)}`);
      if (this.exitCode !== undefined)
        throw new Error(`${what}: child exited (${this.exitCode}); stderr: ${this.stderr}`);
      if (Date.now() > deadline)
        throw new Error(`${what}: timed out after ${timeoutMs} ms; stderr: ${this.stderr}`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, 200);
        this.waiters.push(() => {
          clearTimeout(timer);
          r();
        });
      });
    }
  }

  send(command: unknown): void {
    this.proc.stdin!.write(JSON.stringify(command) + "\n");
  }

  /** SIGKILL by PID if still running, and wait for the exit. */
  async kill(): Promise<void> {
    if (this.exitCode === undefined && this.proc.pid) {
      try {
        process.kill(this.proc.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
    await this.exited;
  }
}

/** Percentile with linear interpolation between closest ranks (p in 0..100). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) throw new Error("percentile of an empty sample");
  const s = [...xs].sort((a, b) => a - b);
  const rank = (p / 100) * (s.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return s[lo]! + (s[hi]! - s[lo]!) * (rank - lo);
}

export const median = (xs: readonly number[]) => percentile(xs, 50);
export const round1 = (x: number) => Math.round(x * 10) / 10;
export const round3 = (x: number) => Math.round(x * 1000) / 1000;
