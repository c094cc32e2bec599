import { fork } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";

export interface BenchContext {
  log(msg: string): void;
  quick: boolean;
}
export interface BenchResult {
  metrics: Record<string, number>;
  ratios: Record<string, number>;
}
export type Benchmark = (ctx: BenchContext) => Promise<BenchResult>;

export interface FoundBenchmark {
  name: string;
  file: string;
}

/**
 * Benchmarks are `<workspace>/dist-bench/<NAME>.bench.js` in packages/, apps/ and tools/ (built
 * from `<workspace>/bench/` by the workspace's `build:bench`, kept out of the published `dist/`).
 */
export function findBenchmarks(root: string): FoundBenchmark[] {
  const found: FoundBenchmark[] = [];
  for (const group of ["packages", "apps", "tools"]) {
    const groupDir = join(root, group);
    if (!existsSync(groupDir)) continue;
    for (const ws of readdirSync(groupDir)) {
      const dir = join(groupDir, ws, "dist-bench");
      if (!existsSync(dir)) continue;
      for (const f of readdirSync(dir)) {
        if (f.endsWith(".bench.js"))
          found.push({ name: basename(f, ".bench.js"), file: join(dir, f) });
      }
    }
  }
  return found.sort((a, b) => a.name.localeCompare(b.name));
}

/** Runs one benchmark module in a child process (clean heap, own event loop). */
export function runInChild(
  bench: FoundBenchmark,
  opts: { quick: boolean; log: (line: string) => void; childScript: string },
): Promise<BenchResult> {
  return new Promise((resolve, reject) => {
    const child = fork(opts.childScript, [bench.file, opts.quick ? "quick" : "full"], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    let result: BenchResult | undefined;
    let failure: string | undefined;
    child.on(
      "message",
      (m: { kind: string; msg?: string; result?: BenchResult; error?: string }) => {
        if (m.kind === "log") opts.log(`[${bench.name}] ${m.msg}`);
        else if (m.kind === "result") result = m.result;
        else if (m.kind === "error") failure = m.error;
      },
    );
    child.on("exit", (code, signal) => {
      if (result && code === 0) resolve(result);
      else
        reject(
          new Error(`benchmark ${bench.name} failed (${failure ?? `exit ${code ?? signal}`})`),
        );
    });
  });
}

export function validateResult(name: string, r: unknown): BenchResult {
  const ok =
    typeof r === "object" &&
    r !== null &&
    typeof (r as BenchResult).metrics === "object" &&
    typeof (r as BenchResult).ratios === "object" &&
    [
      ...Object.values((r as BenchResult).metrics),
      ...Object.values((r as BenchResult).ratios),
    ].every((v) => typeof v === "number" && Number.isFinite(v));
  if (!ok) throw new Error(`benchmark ${name} returned no { metrics, ratios } of finite numbers`);
  return r as BenchResult;
}

export function formatTable(name: string, r: BenchResult): string {
  const rows: [string, string][] = [
    ...Object.entries(r.metrics).map(([k, v]): [string, string] => [k, fmt(v)]),
    ...Object.entries(r.ratios).map(([k, v]): [string, string] => [`ratios.${k}`, fmt(v)]),
  ];
  const w = Math.max(6, ...rows.map(([k]) => k.length));
  const line = `${"-".repeat(w + 2)}+${"-".repeat(16)}`;
  return [
    `benchmark: ${name}`,
    `${"metric".padEnd(w + 2)}| value`,
    line,
    ...rows.map(([k, v]) => `${k.padEnd(w + 2)}| ${v}`),
  ].join("\n");
}

function fmt(v: number): string {
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(1) : v.toFixed(3);
}

export function writeResult(root: string, name: string, r: BenchResult): string {
  const dir = join(root, "bench", "results");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ benchmark: name, metrics: r.metrics, ratios: r.ratios }, null, 2)}\n`,
  );
  return file;
}
