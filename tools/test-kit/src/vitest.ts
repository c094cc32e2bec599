import { expect, onTestFailed } from "vitest";
import { packageJson, runBin } from "./cli.js";
import { seedFromEnv } from "./prng.js";

/**
 * A seed for the running test (from `envVar` to replay, else random), printed if the test fails so
 * the failing run can be repeated. Call inside a test. A separate entry point: it imports vitest,
 * which the kit's main entry must not (child-process fixtures load it in plain Node).
 */
export function testSeed(envVar = "LICHEN_SEED"): number {
  const seed = seedFromEnv(envVar);
  onTestFailed(() => {
    console.error(`seed ${seed}: rerun with ${envVar}=${seed}`);
  });
  return seed;
}

/**
 * What every Lichen CLI does alike, through the package's bin: `--version` prints the package
 * version (exit 0); an unknown option, globally or after each of `commands` (argument lists such
 * as ["send"]), exits 2 with the option named on stderr.
 */
export function expectCliConventions(
  packageDir: string,
  commands: readonly (readonly string[])[] = [],
): void {
  const { version } = packageJson(packageDir);
  const v = runBin(packageDir, ["--version"]);
  expect(v.stderr).toBe("");
  expect(v.stdout.trim()).toBe(version);
  expect(v.status).toBe(0);
  for (const args of [["--no-such-option"], ...commands.map((c) => [...c, "--no-such-option"])]) {
    const r = runBin(packageDir, args);
    expect(r.stderr, args.join(" ")).toContain("--no-such-option");
    expect(r.status, args.join(" ")).toBe(2);
  }
}
