import type { ChildProcess } from "node:child_process";

/**
 * The benchmark's children report their own CPU time over the IPC channel: process.cpuUsage() is
 * microsecond-exact and covers every thread of the process, /proc's utime/stime count 10 ms ticks.
 */
export function serveCpuUsage(): void {
  process.on("message", (m: { kind?: string }) => {
    if (m?.kind !== "cpu") return;
    const c = process.cpuUsage();
    process.send!({ kind: "cpu", us: c.user + c.system });
  });
}

/** CPU time (user + system, µs) the child has used so far. */
export function cpuUsOf(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: { kind?: string; us?: number }) => {
      if (m?.kind !== "cpu") return;
      child.off("message", onMessage);
      resolve(m.us!);
    };
    child.on("message", onMessage);
    if (!child.send({ kind: "cpu" })) reject(new Error(`child ${child.pid} has no IPC channel`));
  });
}
