import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { BareClientConfig } from "./bare-child.js";
import { cpuOf, type CpuSample } from "./cpu-ipc.js";

export interface BareClientProcess {
  pid: number;
  /** Sends `n` requests (distinct tokens) with `concurrency` in flight. */
  run(
    n: number,
    concurrency: number,
  ): Promise<{ perSecond: number; errors: number; cpuUs: number; sysUs: number; gcUs: number }>;
  /** CPU time (µs) the client process has used so far. */
  cpu(): Promise<CpuSample>;
  stop(): Promise<void>;
}

/** Starts the bare HTTP/2 baseline client in a child process (see bare-child.ts). */
export async function startBareClientProcess(cfg: BareClientConfig): Promise<BareClientProcess> {
  const child: ChildProcess = fork(
    fileURLToPath(new URL("./bare-child.js", import.meta.url)),
    [JSON.stringify(cfg)],
    {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      // e.g. LICHEN_BENCH_BARE_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile it
      execArgv: process.env.LICHEN_BENCH_BARE_NODE_ARGS?.split(" ").filter(Boolean) ?? [],
    },
  );
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  await new Promise<void>((resolve, reject) => {
    const onMessage = (m: { kind?: string }) => {
      if (m?.kind !== "ready") return;
      child.off("message", onMessage);
      resolve();
    };
    child.on("message", onMessage);
    child.once("exit", (code) =>
      reject(new Error(`bare client process exited (${code}) before it was ready`)),
    );
  });
  return {
    pid: child.pid!,
    run: (n, concurrency) =>
      new Promise((resolve) => {
        const onMessage = (m: {
          kind?: string;
          perSecond?: number;
          errors?: number;
          cpuUs?: number;
          sysUs?: number;
          gcUs?: number;
        }) => {
          if (m?.kind !== "ran") return;
          child.off("message", onMessage);
          resolve({
            perSecond: m.perSecond!,
            errors: m.errors!,
            cpuUs: m.cpuUs!,
            sysUs: m.sysUs!,
            gcUs: m.gcUs!,
          });
        };
        child.on("message", onMessage);
        child.send({ kind: "run", n, concurrency });
      }),
    cpu: () => cpuOf(child),
    stop: async () => {
      child.disconnect();
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
