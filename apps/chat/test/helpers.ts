// The chat e2e tests' helpers: the process harness lives in bench/harness.ts (the chaos
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
} from "../bench/harness.js";

/** The peer ("bob"): a plain xmpp.js client from @lichen/test-servers. */
export { startTestPeer as startPeer } from "@lichen/test-servers";

/** A seed from LICHEN_SEED (to replay a failure) or a fresh one, printed if the test fails. */
export { testSeed } from "@lichen/test-kit/vitest";

/**
 * `lichen-chat login` arguments: `user`@localhost, password `<user>pw` unless given, through the
 * test server's c2s `port`.
 */
export const loginArgs = (
  user: string,
  port: number,
  o: { password?: string; resource?: string } = {},
): string[] => [
  "login",
  "--jid",
  `${user}@localhost`,
  "--password",
  o.password ?? `${user}pw`,
  "--service",
  `xmpp://127.0.0.1:${port}`,
  ...(o.resource ? ["--resource", o.resource] : []),
];
