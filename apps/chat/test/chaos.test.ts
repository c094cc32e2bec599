// End-to-end, issue 10: the seeded randomized chaos test. The driver (bench/chaos-run.ts, also
// the `chaos` benchmark) runs the BUILT lichen-chat as real processes — alice's main app and NSEs —
// against a real Prosody and a real ejabberd with a 5 s resume timeout, with a plain xmpp.js bob:
// SIGKILLs, freezes past the lease, freezes overlapping NSE runs, the app started fresh while an
// NSE runs, outages past the resume timeout, NSEs killed mid-run and in a row; ≥ 1000 messages
// each way per server. Every inbound message stored exactly once, every committed outbound message
// received exactly once after dedupe by origin-id, nothing received that was never committed,
// integrity ok, no XEP-0198 counter complaint in the server's log.
//
// The seed is printed (always, and in every failure); LICHEN_CHAOS_SEED=<seed> replays the
// schedule on both servers, LICHEN_CHAOS_MESSAGES=<n> changes the size (default 1000 each way),
// LICHEN_CHAOS_VERBOSE=1 keeps the processes' --verbose logs in the run's directory.
import { describe, expect, it } from "vitest";
import { runChaos, type ChaosServer } from "../bench/chaos-run.js";

const MESSAGES = Number(process.env.LICHEN_CHAOS_MESSAGES ?? 1000);
const SEED = process.env.LICHEN_CHAOS_SEED
  ? Number(process.env.LICHEN_CHAOS_SEED) >>> 0
  : Math.floor(Math.random() * 2 ** 32) >>> 0;

describe.each(["prosody", "ejabberd"] as ChaosServer[])("chaos on %s (issue 10)", (server) => {
  it(`${MESSAGES} messages each way through kills, freezes, NSE overlaps and outages: none lost, none duplicated`, async () => {
    console.log(`chaos on ${server}: seed ${SEED} (replay: LICHEN_CHAOS_SEED=${SEED})`);
    const r = await runChaos({
      server,
      seed: SEED,
      messages: MESSAGES,
      verbose: process.env.LICHEN_CHAOS_VERBOSE === "1",
      log: process.env.LICHEN_CHAOS_PROGRESS === "1" ? (l) => console.log(l) : undefined,
    });
    console.log(r.report);
    const report = r.report;
    // The schedule really ran.
    expect(r.inbound.sent, report).toBeGreaterThanOrEqual(MESSAGES);
    expect(r.outbound.committed, report).toBeGreaterThanOrEqual(MESSAGES);
    expect(r.kills, report).toBeGreaterThan(0);
    expect(r.freezes, report).toBeGreaterThan(0);
    expect(r.overlaps, report).toBeGreaterThan(0);
    // Nothing lost, nothing twice, nothing invented.
    expect(
      {
        lost: r.lost,
        duplicated: r.duplicated,
        receivedButNeverCommitted: r.outbound.uncommitted,
        storedButNeverSent: r.inbound.unknown,
        integrity: r.integrity,
        counterComplaints: r.complaints,
      },
      report,
    ).toEqual({
      lost: 0,
      duplicated: 0,
      receivedButNeverCommitted: 0,
      storedButNeverSent: 0,
      integrity: "ok",
      counterComplaints: [],
    });
  }, 600_000);
});
