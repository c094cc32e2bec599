import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures");

export type Line = Record<string, unknown>;

/** A fixture script in its own Node process; stdout is JSON lines. Stopped by PID. */
export class Child {
  readonly proc: ChildProcess;
  readonly lines: Line[] = [];
  stderr = "";
  exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: { pred: (l: Line) => boolean; resolve: (l: Line) => void }[] = [];
  private buf = "";

  constructor(
    readonly script: string,
    readonly args: Record<string, unknown>,
  ) {
    this.proc = spawn(process.execPath, [path.join(fixtures, script), JSON.stringify(args)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.proc.stdout!.setEncoding("utf8");
    this.proc.stdout!.on("data", (chunk: string) => {
      this.buf += chunk;
      let i: number;
      while ((i = this.buf.indexOf("\n")) >= 0) {
        const text = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        if (!text.trim()) continue;
        let line: Line;
        try {
          line = JSON.parse(text) as Line;
        } catch {
          line = { raw: text };
        }
        this.lines.push(line);
        this.waiters = this.waiters.filter((w) => {
          if (!w.pred(line)) return true;
          w.resolve(line);
          return false;
        });
      }
    });
    this.proc.stderr!.setEncoding("utf8");
    this.proc.stderr!.on("data", (c: string) => {
      this.stderr += c;
    });
    this.exited = new Promise((resolve) => {
      this.proc.on("exit", (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get running(): boolean {
    return this.exit === null;
  }

  /** Resolve with the first line (already seen or future) matching `pred`. */
  waitFor(pred: (l: Line) => boolean, what: string, timeoutMs = 20_000): Promise<Line> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(
            `${this.script} (pid ${this.pid}): no ${what} within ${timeoutMs} ms; stderr: ${this.stderr.slice(-2000)}; lines: ${JSON.stringify(this.lines.slice(-5))}`,
          ),
        );
      }, timeoutMs);
      const entry = {
        pred,
        resolve: (l: Line) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      this.waiters.push(entry);
      void this.exited.then(() => {
        if (this.waiters.includes(entry)) {
          clearTimeout(timer);
          this.waiters = this.waiters.filter((w) => w !== entry);
          reject(
            new Error(
              `${this.script} (pid ${this.pid}) exited ${JSON.stringify(this.exit)} before ${what}; stderr: ${this.stderr.slice(-2000)}`,
            ),
          );
        }
      });
    });
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    if (this.running) process.kill(this.pid, signal);
  }
}

/** Kill (by PID) every child still running and wait for them to exit. */
export async function stopAll(children: Iterable<Child>): Promise<void> {
  const list = [...children];
  for (const c of list) c.kill("SIGKILL");
  await Promise.all(list.map((c) => c.exited));
}
