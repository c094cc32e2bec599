import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

export interface BinResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The package's name, version and bin map. */
export function packageJson(packageDir: string): {
  name: string;
  version: string;
  bin?: Record<string, string>;
} {
  return JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8"));
}

/**
 * Runs the package's (only) bin as `npx <bin>` would after `npm ci` and a build: the file its
 * package.json names, so the CLI tests also cover the bin entry.
 */
export function runBin(
  packageDir: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): BinResult {
  const bins = Object.values(packageJson(packageDir).bin ?? {});
  if (bins.length !== 1) throw new Error(`${packageDir}: expected exactly one bin`);
  const r = spawnSync(process.execPath, [join(packageDir, bins[0]!), ...args], {
    encoding: "utf8",
    env,
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
