import { readdirSync, readFileSync } from "node:fs";

/**
 * CPU ms of this process's main thread and of its other threads (V8's concurrent compiler and GC
 * helpers, libuv's pool), from /proc (Linux; zeros elsewhere): process.cpuUsage() sums both.
 */
export function threadCpuMs() {
  let main = 0,
    others = 0;
  try {
    for (const tid of readdirSync("/proc/self/task")) {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const ms = ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, USER_HZ 100
      if (Number(tid) === process.pid) main += ms;
      else others += ms;
    }
  } catch {
    // not Linux
  }
  return { main, others };
}
