#!/usr/bin/env node
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { findBenchmarks, formatTable, runInChild, writeResult } from "./runner.js";

const HELP = `lichen-bench — run Lichen benchmarks

Usage: npm run bench [-- NAME ...] [-- --quick]
  NAME       run only these (store, engine, appserver, e2e, omemo, ...); default: all found
  --quick    shorter runs (smoke), figures less stable
  --root DIR monorepo root (default: current directory)
Writes bench/results/NAME.json = { benchmark, metrics, ratios } and prints a table per benchmark.
`;

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      quick: { type: "boolean" },
      help: { type: "boolean", short: "h" },
      root: { type: "string" },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const root = resolve(values.root ?? process.cwd());
  const all = findBenchmarks(root);
  const wanted = positionals.length > 0 ? positionals : all.map((b) => b.name);
  const unknown = wanted.filter((n) => !all.some((b) => b.name === n));
  if (unknown.length > 0) {
    process.stderr.write(
      `unknown benchmark(s): ${unknown.join(", ")}; available: ${all.map((b) => b.name).join(", ") || "(none built yet)"}\n`,
    );
    return 1;
  }
  if (all.length === 0) {
    process.stdout.write("no benchmarks found (none built yet under */*/dist-bench/*.bench.js)\n");
    return 0;
  }
  const childScript = join(dirname(fileURLToPath(import.meta.url)), "child.js");
  let failed = 0;
  for (const bench of all.filter((b) => wanted.includes(b.name))) {
    process.stderr.write(
      `running ${bench.name} (${bench.file})${values.quick ? " [quick]" : ""}\n`,
    );
    const t0 = performance.now();
    try {
      const result = await runInChild(bench, {
        quick: values.quick ?? false,
        childScript,
        log: (l) => process.stderr.write(`${l}\n`),
      });
      const file = writeResult(root, bench.name, result);
      process.stdout.write(
        `${formatTable(bench.name, result)}\n(${((performance.now() - t0) / 1000).toFixed(1)} s, written to ${file})\n\n`,
      );
    } catch (err) {
      failed++;
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
  return failed > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`lichen-bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
