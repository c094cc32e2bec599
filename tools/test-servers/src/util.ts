import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { connect, createServer } from "node:net";

/** Asks the kernel for a free loopback port. Callers retry when a port is taken in between. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Several distinct free ports. */
export async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

export function isPortOpen(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, host);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

export const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Polls until the port is open (or closed). `check` runs on every round so a server that died or
 * logged a fatal error fails fast with its own message instead of a timeout.
 */
export async function waitForPort(
  port: number,
  open: boolean,
  what: string,
  timeoutMs: number,
  check?: () => void,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    check?.();
    if ((await isPortOpen(port)) === open) return;
    if (Date.now() > deadline) {
      throw new Error(
        `${what}: port ${port} still ${open ? "closed" : "open"} after ${timeoutMs} ms`,
      );
    }
    await delay(open ? 40 : 100);
  }
}

export function which(bin: string): string | null {
  try {
    return execFileSync("sh", ["-c", `command -v ${bin}`], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

export function readIfExists(path: string): string {
  return existsSync(path) ? readFileSync(path, "utf8") : "";
}

export function tail(text: string, lines = 30): string {
  return text.split("\n").slice(-lines).join("\n");
}

/** Is a process alive? (signal 0 checks existence without sending anything.) */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM, wait, then SIGKILL after `graceMs`; resolves when the process is gone. */
export async function killPid(pid: number, graceMs = 5000): Promise<void> {
  if (!isAlive(pid)) return;
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await delay(50);
  if (isAlive(pid)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
    while (isAlive(pid)) await delay(20);
  }
}

// Every server started by this process, so a crashed or interrupted test run does not leave
// servers behind: killed synchronously on exit.
const livePids = new Set<number>();
let exitHookInstalled = false;
export function trackPid(pid: number): void {
  livePids.add(pid);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const p of livePids) {
        try {
          process.kill(p, "SIGKILL");
        } catch {
          /* gone */
        }
      }
    });
  }
}
export function untrackPid(pid: number): void {
  livePids.delete(pid);
}
