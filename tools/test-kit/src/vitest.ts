import { onTestFailed } from "vitest";
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
