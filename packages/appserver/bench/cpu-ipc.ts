import type { ChildProcess } from "node:child_process";
import { performance, PerformanceObserver } from "node:perf_hooks";

/** CPU time (user + system) and time spent in garbage collection a process has used so far, µs. */
export interface CpuSample {
  cpuUs: number;
  /** The system (kernel) part of cpuUs: socket reads and writes, mostly. */
  sysUs: number;
  gcUs: number;
  /** Event-loop time so far, ms: busy (running callbacks) and idle (waiting for I/O). */
  loopActiveMs: number;
  loopIdleMs: number;
}

/**
 * The benchmark's children report their own CPU time over the IPC channel: process.cpuUsage() is
 * microsecond-exact and covers every thread of the process, /proc's utime/stime count 10 ms ticks.
 * GC time (the gc performance entries' durations; wall time, so it includes preemption on a
 * loaded machine) says how much of it is collecting garbage.
 */
export function serveCpuUsage(): void {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcUs += e.duration * 1000;
  }).observe({ entryTypes: ["gc"] });
  process.on("message", (m: { kind?: string }) => {
    if (m?.kind !== "cpu") return;
    process.send!({ kind: "cpu", ...usage() });
  });
}

let gcUs = 0;

/** This process' CPU and GC time so far (GC counted once serveCpuUsage() ran). */
export function usage(): CpuSample {
  const c = process.cpuUsage();
  const l = performance.eventLoopUtilization();
  return {
    cpuUs: c.user + c.system,
    sysUs: c.system,
    gcUs,
    loopActiveMs: l.active,
    loopIdleMs: l.idle,
  };
}

/** CPU and GC time (µs) the child has used so far. */
export function cpuOf(child: ChildProcess): Promise<CpuSample> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: { kind?: string } & Partial<CpuSample>) => {
      if (m?.kind !== "cpu") return;
      child.off("message", onMessage);
      resolve({
        cpuUs: m.cpuUs!,
        sysUs: m.sysUs!,
        gcUs: m.gcUs!,
        loopActiveMs: m.loopActiveMs!,
        loopIdleMs: m.loopIdleMs!,
      });
    };
    child.on("message", onMessage);
    if (!child.send({ kind: "cpu" })) reject(new Error(`child ${child.pid} has no IPC channel`));
  });
}
