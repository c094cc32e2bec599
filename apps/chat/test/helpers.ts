import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

/** The BUILT CLI: tests run it as real processes, as a user would. */
export const CLI = join(import.meta.dirname, "..", "dist", "cli.js");

export function requireBuiltCli(): void {
  if (!existsSync(CLI))
    throw new Error(
      `${CLI} is missing: build first (npx turbo run build --filter=@lichen/chat...)`,
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
    this.exited = new Promise((resolve) => this.child.once("exit", (code) => resolve(code)));
  }

  line(text: string): void {
    this.child.stdin!.write(text + "\n");
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

/** The peer ("bob"): a plain xmpp.js client from @lichen/test-servers. */
export { startTestPeer as startPeer } from "@lichen/test-servers";

export async function until<T>(
  fn: () => T | undefined | null | false,
  what: string,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
