import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { median, percentile } from "../src/stats.js";

const run = promisify(execFile);
const cli = join(import.meta.dirname, "..", "dist", "cli.js");

function fixtureRoot(benches: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "lichen-bench-"));
  const dir = join(root, "packages", "demo", "dist-bench");
  mkdirSync(dir, { recursive: true });
  for (const [name, src] of Object.entries(benches))
    writeFileSync(join(dir, `${name}.bench.js`), src);
  return root;
}

describe("bench runner", () => {
  it("runs a benchmark in a child process and writes bench/results/NAME.json", async () => {
    const root = fixtureRoot({
      demo: `export default async (ctx) => { ctx.log("working"); return { metrics: { a_per_s: 100, quick: ctx.quick ? 1 : 0 }, ratios: { a_vs_b: 0.5 } }; };`,
    });
    const { stdout } = await run(process.execPath, [cli, "--root", root, "demo", "--quick"]);
    expect(stdout).toContain("a_per_s");
    const json = JSON.parse(readFileSync(join(root, "bench", "results", "demo.json"), "utf8"));
    expect(json).toEqual({
      benchmark: "demo",
      metrics: { a_per_s: 100, quick: 1 },
      ratios: { a_vs_b: 0.5 },
    });
  });

  it("rejects an unknown name with the list of available ones", async () => {
    const root = fixtureRoot({ demo: `export default async () => ({ metrics: {}, ratios: {} });` });
    const err = await run(process.execPath, [cli, "--root", root, "nope"]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(err).toMatchObject({ code: 1 });
    expect((err as { stderr: string }).stderr).toContain("available: demo");
  });

  it("fails when a benchmark throws or returns non-numbers", async () => {
    const root = fixtureRoot({
      bad: `export default async () => ({ metrics: { x: "fast" }, ratios: {} });`,
      boom: `export default async () => { throw new Error("kaput"); };`,
    });
    const err = await run(process.execPath, [cli, "--root", root]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(err).toMatchObject({ code: 1 });
    expect((err as { stderr: string }).stderr).toContain("kaput");
    expect((err as { stderr: string }).stderr).toContain("finite numbers");
  });
});

describe("stats", () => {
  it("median and percentiles interpolate", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(percentile([1, 2, 3, 4, 5], 100)).toBe(5);
    expect(percentile([10, 20], 99)).toBeCloseTo(19.9);
    expect(() => median([])).toThrow(/empty/);
  });
});
