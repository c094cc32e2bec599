import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { AppServerConfigInput } from "#src/config.js";
import { cpuOf, type CpuSample } from "./cpu-ipc.js";

export interface AppServerProcess {
  pid: number;
  /** Resident set size of the child now (MB), from /proc. */
  rssMb(): number;
  /** CPU time (µs) the appserver process has used so far. */
  cpu(): Promise<CpuSample>;
  stop(): Promise<void>;
}

/** Starts an appserver in a child process (see appserver-child.ts); resolves once it is online. */
export async function startAppServerProcess(
  config: AppServerConfigInput,
  env: Record<string, string> = {},
): Promise<AppServerProcess> {
  const child = spawn(
    process.execPath,
    [
      // e.g. LICHEN_BENCH_APPSERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile it
      ...(process.env.LICHEN_BENCH_APPSERVER_NODE_ARGS?.split(" ").filter(Boolean) ?? []),
      fileURLToPath(new URL("./appserver-child.js", import.meta.url)),
      JSON.stringify(config),
    ],
    { stdio: ["pipe", "pipe", "inherit", "ipc"], env: { ...process.env, ...env } },
  );
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", () => resolve());
    child.once("exit", (code) =>
      reject(new Error(`appserver process exited (${code}) before it was ready`)),
    );
  });
  const pid = child.pid!;
  return {
    pid,
    rssMb: () => {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      return m ? Number(m[1]) / 1024 : NaN;
    },
    cpu: () => cpuOf(child),
    stop: async () => {
      child.stdin!.end();
      const t = setTimeout(() => process.kill(pid, "SIGKILL"), 20_000);
      await exited;
      clearTimeout(t);
    },
  };
}
