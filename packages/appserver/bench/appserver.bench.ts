import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { AppServer } from "#src/appserver.js";
import { validateConfig } from "#src/config.js";
import { FakeComponentServer } from "#src/testing/component-server.js";
import {
  type LoadResult,
  bareHttp2,
  blacklistConvergenceMs,
  driveComponent,
  median,
  percentile,
  rateLimiterMemoryMb,
} from "./parts.js";
import { startSimulatorProcess } from "./simulator-process.js";

interface Ctx {
  log(msg: string): void;
  quick: boolean;
}

/**
 * appserver benchmark: the benchmark plays the XMPP server (XEP-0114 handshake, push IQs) against
 * an in-process appserver whose APNs provider talks to the APNs simulator in another process; the
 * baseline is a bare node:http2 client sending the same number of requests to the same simulator
 * in the same run. Each round runs both back to back (order alternating); rates are medians over
 * rounds, the ratio is the median of the per-round ratios.
 */
export default async function bench(
  ctx: Ctx,
): Promise<{ metrics: Record<string, number>; ratios: Record<string, number> }> {
  const n = ctx.quick ? 4000 : 20_000;
  const rounds = ctx.quick ? 2 : 5;
  const concurrency = 200;

  ctx.log("rate limiter memory, 1M tokens");
  const mb = rateLimiterMemoryMb(1_000_000);

  ctx.log("blacklist convergence, 3 nodes via redis");
  const convergence = await blacklistConvergenceMs(ctx.quick ? 5 : 20);

  ctx.log("starting the APNs simulator process");
  const sim = await startSimulatorProcess();
  const xmpp = new FakeComponentServer("push.localhost", "bench-secret");
  await xmpp.listen();
  const config = validateConfig({
    component: { service: xmpp.service, domain: "push.localhost", secret: "bench-secret" },
    apps: { bench: sim.appConfig },
    dataDir: mkdtempSync(join(tmpdir(), "lichen-push-bench-")),
    http: { port: 0 },
    log: { level: "silent" },
  });
  const server = await AppServer.start({ config, logger: pino({ level: "silent" }) });
  await xmpp.waitConnected();

  const pushRates: number[] = [];
  const bareRates: number[] = [];
  const latencies: number[] = [];
  const pairRatios: number[] = [];
  try {
    // warm-up: connections, JWT, JIT
    await driveComponent(xmpp, tokens(500), concurrency, "w-");
    await bareHttp2(
      sim.origin,
      tokens(500).map(sim.path),
      sim.headers,
      sim.body,
      concurrency,
      sim.connectOptions,
    );
    const runBare = async () => {
      const b = await bareHttp2(
        sim.origin,
        tokens(n).map(sim.path),
        sim.headers,
        sim.body,
        concurrency,
        sim.connectOptions,
      );
      if (b.errors) throw new Error(`bare http2 baseline had ${b.errors} non-200 answers`);
      return b;
    };
    const runPush = async (r: number) => {
      const p = await driveComponent(xmpp, tokens(n), concurrency, `r${r}-`);
      if (p.errors) throw new Error(`appserver answered ${p.errors} pushes with errors`);
      return p;
    };
    for (let r = 0; r < rounds; r++) {
      // both back to back, the order alternating so that neither side always runs first
      let bare: LoadResult;
      let push: LoadResult;
      if (r % 2 === 0) {
        bare = await runBare();
        push = await runPush(r);
      } else {
        push = await runPush(r);
        bare = await runBare();
      }
      bareRates.push(bare.perSecond);
      pushRates.push(push.perSecond);
      pairRatios.push(push.perSecond / bare.perSecond);
      latencies.push(...push.latenciesMs);
      ctx.log(
        `round ${r + 1}: appserver ${push.perSecond.toFixed(0)} pushes/s, bare http2 ${bare.perSecond.toFixed(0)} req/s`,
      );
    }
  } finally {
    await server.stop();
    await xmpp.close();
    await sim.stop();
  }
  const pushes = median(pushRates);
  const bare = median(bareRates);
  return {
    metrics: {
      pushes_per_s: Math.round(pushes),
      push_latency_p50_ms: round2(percentile(latencies, 0.5)),
      push_latency_p99_ms: round2(percentile(latencies, 0.99)),
      bare_http2_req_per_s: Math.round(bare),
      ratelimit_1m_tokens_mb: round2(mb),
      blacklist_convergence_ms: round2(convergence),
    },
    // median of the per-round ratios: each pair ran back to back, so machine-load drift cancels
    ratios: { pushes_vs_bare_http2: round2(median(pairRatios)) },
  };
}

function tokens(n: number): string[] {
  return Array.from({ length: n }, () => randomBytes(32).toString("hex"));
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
