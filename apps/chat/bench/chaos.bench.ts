/**
 * Chaos benchmark (`npm run bench -- chaos`, issue 10): the seeded chaos run of
 * test/chaos.test.ts (bench/chaos-run.ts), longer — 3000 messages each way per server (3× the
 * CI size; --quick: 300) — on real Prosody and then ejabberd, both with a 5 s resume timeout. The
 * BUILT lichen-chat runs as real processes (main app, NSEs) with SIGKILL, SIGSTOP/SIGCONT past
 * the lease, freezes overlapping NSE runs, fresh starts during NSE runs, outages past the resume
 * timeout, NSEs killed mid-run and in a row.
 *
 * metrics: messages_total (inbound sent + outbound committed, both servers), lost, duplicated
 * (targets: 0), kills, freezes, overlaps, lost_prosody, lost_ejabberd, plus outages, nse_runs,
 * duplicated_<server>, chaos_s_<server> and the seed (LICHEN_CHAOS_SEED=<seed> replays it).
 * ratios: delivered_vs_sent (messages stored/received exactly once over messages sent/committed;
 * target 1), committed_vs_typed (outbound lines that became committed messages: the rest were
 * typed into an app that was then killed or fenced out before it could commit them).
 * The hot-path cost of fencing (ratios.fenced_vs_unfenced_tx) is the `store` benchmark's.
 */
import { runChaos, type ChaosResult, type ChaosServer } from "./chaos-run.js";

interface BenchContext {
  log(msg: string): void;
  quick: boolean;
}

export default async function chaosBench(ctx: BenchContext) {
  const messages = Number(process.env.LICHEN_CHAOS_MESSAGES ?? (ctx.quick ? 300 : 3000));
  const seed = process.env.LICHEN_CHAOS_SEED
    ? Number(process.env.LICHEN_CHAOS_SEED) >>> 0
    : Math.floor(Math.random() * 2 ** 32) >>> 0;
  ctx.log(
    `seed ${seed} (replay: LICHEN_CHAOS_SEED=${seed}), ${messages} messages each way per server`,
  );
  const results: ChaosResult[] = [];
  for (const server of ["prosody", "ejabberd"] as ChaosServer[]) {
    const r = await runChaos({
      server,
      seed,
      messages,
      verbose: process.env.LICHEN_CHAOS_VERBOSE === "1",
    });
    for (const line of r.report.split("\n")) ctx.log(line);
    results.push(r);
  }
  const sum = (f: (r: ChaosResult) => number) => results.reduce((s, r) => s + f(r), 0);
  const by = (server: ChaosServer) => results.find((r) => r.server === server)!;
  const sent = sum((r) => r.messages_total);
  const metrics: Record<string, number> = {
    messages_total: sent,
    lost: sum((r) => r.lost),
    duplicated: sum((r) => r.duplicated),
    kills: sum((r) => r.kills),
    freezes: sum((r) => r.freezes),
    overlaps: sum((r) => r.overlaps),
    lost_prosody: by("prosody").lost,
    lost_ejabberd: by("ejabberd").lost,
    duplicated_prosody: by("prosody").duplicated,
    duplicated_ejabberd: by("ejabberd").duplicated,
    outages: sum((r) => r.outages),
    nse_runs: sum((r) => r.nseRuns),
    nse_failures: sum((r) => r.nseFailures),
    nse_deadline_overruns: sum((r) => r.nseOverruns),
    counter_complaints: sum((r) => r.complaints.length),
    received_never_committed: sum((r) => r.outbound.uncommitted),
    integrity_failures: results.filter((r) => r.integrity !== "ok").length,
    chaos_s_prosody: Math.round(by("prosody").chaosMs / 100) / 10,
    chaos_s_ejabberd: Math.round(by("ejabberd").chaosMs / 100) / 10,
    seed,
  };
  // Exactly-once deliveries: stored/received once, neither lost nor duplicated.
  const once = sum(
    (r) =>
      r.inbound.sent -
      r.inbound.lost -
      r.inbound.duplicated +
      (r.outbound.committed - r.outbound.lost - r.outbound.duplicated),
  );
  const typed = sum((r) => r.outbound.typed);
  const ratios: Record<string, number> = {
    delivered_vs_sent: sent ? once / sent : 0,
    committed_vs_typed: typed ? sum((r) => r.outbound.committed) / typed : 0,
  };
  return { metrics, ratios };
}
