// The chat e2e tests' helpers: the process harness lives in src/bench/harness.ts (the chaos
// driver and benchmark use it too, after build); the peer and the seed are test-only.
export {
  AppProcess,
  ChatDbProbe,
  CLI,
  CliProcess,
  counterComplaints,
  prng,
  requireBuiltCli,
  runCli,
  signal,
  sleep,
  until,
  type CliResult,
} from "../src/bench/harness.js";

/** The peer ("bob"): a plain xmpp.js client from @lichen/test-servers. */
export { startTestPeer as startPeer } from "@lichen/test-servers";

/** A seed from LICHEN_SEED (to replay a failure) or a fresh one. */
export function testSeed(): number {
  const fromEnv = process.env.LICHEN_SEED;
  return fromEnv ? Number(fromEnv) >>> 0 : Math.floor(Math.random() * 2 ** 32) >>> 0;
}
