import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeComponentServer } from "#src/testing/component-server.js";
import {
  type LoadResult,
  bareHttp2,
  blacklistConvergenceMs,
  deliveryMemoryMb,
  driveComponent,
  median,
  percentile,
  rateLimiterMemoryMb,
} from "./parts.js";
import { startAppServerProcess } from "./appserver-process.js";
import { startSimulatorProcess } from "./simulator-process.js";

interface Ctx {
  log(msg: string): void;
  quick: boolean;
}

/**
 * appserver benchmark. The appserver (production AppServer and providers) runs in its own process;
 * this process plays the XMPP server (XEP-0114 handshake, push IQs) and, for the baseline, a bare
 * node:http2 client with the same number of HTTP/2 connections as the appserver's provider, both
 * against the APNs simulator in a third process. Each round runs both back to back (order
 * alternating); rates are medians over rounds, the ratio is the median of the per-round ratios.
 * Then a soak: pushes over a fixed token set with dead tokens and provider errors, the appserver's
 * RSS sampled.
 */
export default async function bench(
  ctx: Ctx,
): Promise<{ metrics: Record<string, number>; ratios: Record<string, number> }> {
  const n = ctx.quick ? 4000 : 20_000;
  const rounds = ctx.quick ? 2 : 5;
  const concurrency = 200;
  const connections = 2;

  ctx.log("rate limiter memory, 1M tokens (production token hashes)");
  const mb = rateLimiterMemoryMb(1_000_000);
  ctx.log("healthy-token memory, 1M tokens");
  const healthyMb = deliveryMemoryMb(1_000_000);

  ctx.log("blacklist convergence, 3 nodes via redis");
  const convergence = await blacklistConvergenceMs(ctx.quick ? 5 : 20);

  ctx.log("starting the APNs simulator and the appserver processes");
  const sim = await startSimulatorProcess();
  const xmpp = new FakeComponentServer("push.localhost", "bench-secret");
  await xmpp.listen();
  const app = await startAppServerProcess({
    component: { service: xmpp.service, domain: "push.localhost", secret: "bench-secret" },
    apps: { bench: { ...sim.appConfig, connections } },
    dataDir: mkdtempSync(join(tmpdir(), "lichen-push-bench-")),
    http: { port: 0 },
    log: { level: "silent" },
  });
  await xmpp.waitConnected();

  const pushRates: number[] = [];
  const bareRates: number[] = [];
  // CPU time per request of each side (µs): unlike rates, barely moved by other processes' load
  const appCpu: number[] = [];
  const bareCpu: number[] = [];
  const cpuMs = (pid: number) => {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, in clock ticks of 10 ms
  };
  const latencies: number[] = [];
  const pairRatios: number[] = [];
  const bareRun = (paths: string[]) =>
    bareHttp2(
      sim.origin,
      paths,
      sim.headers,
      sim.body,
      concurrency,
      sim.connectOptions,
      connections,
    );
  try {
    // warm-up: connections, JWT, JIT
    await driveComponent(xmpp, tokens(500), concurrency, "w-");
    await bareRun(tokens(500).map(sim.path));
    const runBare = async () => {
      const paths = tokens(n).map(sim.path);
      const c0 = process.cpuUsage();
      const b = await bareRun(paths);
      const c = process.cpuUsage(c0);
      bareCpu.push((c.user + c.system) / n);
      if (b.errors) throw new Error(`bare http2 baseline had ${b.errors} non-200 answers`);
      return b;
    };
    const runPush = async (r: number) => {
      const list = tokens(n);
      const c0 = cpuMs(app.pid);
      const p = await driveComponent(xmpp, list, concurrency, `r${r}-`);
      appCpu.push(((cpuMs(app.pid) - c0) * 1000) / n);
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
    await app.stop();
    await xmpp.close();
    await sim.stop();
  }

  const soak = await soakRun(ctx, ctx.quick ? 100_000 : 1_000_000, ctx.quick ? 10_000 : 100_000);

  const pushes = median(pushRates);
  const bare = median(bareRates);
  return {
    metrics: {
      pushes_per_s: Math.round(pushes),
      appserver_cpu_us_per_push: Math.round(median(appCpu)),
      bare_client_cpu_us_per_req: Math.round(median(bareCpu)),
      push_latency_p50_ms: round2(percentile(latencies, 0.5)),
      push_latency_p99_ms: round2(percentile(latencies, 0.99)),
      bare_http2_req_per_s: Math.round(bare),
      ratelimit_1m_tokens_mb: round2(mb),
      healthy_tokens_1m_mb: round2(healthyMb),
      blacklist_convergence_ms: round2(convergence),
      soak_pushes: soak.pushes,
      soak_pushes_per_s: Math.round(soak.perSecond),
      soak_rss_start_mb: round2(soak.rssStartMb),
      soak_rss_growth_mb: round2(soak.rssGrowthMb),
      soak_error_replies: soak.errors,
    },
    // median of the per-round ratios: each pair ran back to back, so machine-load drift cancels
    ratios: {
      pushes_vs_bare_http2: round2(median(pairRatios)),
      // how much more CPU the appserver spends per push than a bare client per request
      appserver_cpu_vs_bare_client: round2(median(appCpu) / median(bareCpu)),
    },
  };
}

/**
 * `total` pushes over `tokenCount` tokens (each token pushed total/tokenCount times, the rate limit
 * window 0 so that every push is sent), 1 % of the tokens dead (410, then refused from the
 * blacklist) and 0.1 % of the provider's answers 500 (retried). The appserver's RSS is sampled
 * every second; growth = the last sample minus the one after the first tenth (warm-up: JIT,
 * connections, the token set entering the limiter and the healthy-token memory).
 */
async function soakRun(
  ctx: Ctx,
  total: number,
  tokenCount: number,
): Promise<{
  pushes: number;
  perSecond: number;
  rssStartMb: number;
  rssGrowthMb: number;
  errors: number;
}> {
  ctx.log(`soak: ${total} pushes over ${tokenCount} tokens, 1 % dead, 0.1 % provider errors`);
  const sim = await startSimulatorProcess("soak");
  const xmpp = new FakeComponentServer("push.localhost", "bench-secret");
  await xmpp.listen();
  const app = await startAppServerProcess({
    component: { service: xmpp.service, domain: "push.localhost", secret: "bench-secret" },
    apps: { bench: { ...sim.appConfig, connections: 2 } },
    rateLimit: { window: 0, hardLimit: "600s" },
    retry: { attempts: 3, initialDelay: "10ms", maxDelay: "50ms" },
    dataDir: mkdtempSync(join(tmpdir(), "lichen-push-soak-")),
    http: { port: 0 },
    log: { level: "silent" },
  });
  await xmpp.waitConnected();
  // every 100th token dead, spread through the set as uninstalls are in real traffic (all of them
  // first would look like a domain sending garbage: it would be restricted, rightly)
  // (a random live token must not start with "dead" itself: 1 in 65536 did, and the simulator
  // answered it 410 — the soak's "unexplained" extra error replies)
  const live = (): string => {
    const t = randomBytes(32).toString("hex");
    return t.startsWith("dead") ? live() : t;
  };
  const set = Array.from({ length: tokenCount }, (_, i) =>
    i % 100 === 99 ? `dead${randomBytes(30).toString("hex")}` : live(),
  );
  const samples: number[] = [];
  const sampler = setInterval(() => samples.push(app.rssMb()), 1000);
  let errors = 0;
  const errorKinds: Record<string, number> = {};
  let sent = 0;
  const t0 = performance.now();
  let rssStart = NaN;
  try {
    const batch = tokenCount;
    for (let b = 0; sent < total; b++) {
      const r = await driveComponent(
        xmpp,
        set.slice(0, Math.min(batch, total - sent)),
        200,
        `s${b}-`,
      );
      errors += r.errors;
      for (const [k, v] of Object.entries(r.errorKinds)) errorKinds[k] = (errorKinds[k] ?? 0) + v;
      sent += Math.min(batch, total - sent);
      if (b === 0 || sent <= total / 10) rssStart = app.rssMb();
      if (b % 2 === 1) ctx.log(`soak: ${sent} pushes, rss ${app.rssMb().toFixed(1)} MB`);
    }
  } finally {
    clearInterval(sampler);
  }
  const perSecond = sent / ((performance.now() - t0) / 1000);
  const rssEnd = app.rssMb();
  await app.stop();
  await xmpp.close();
  await sim.stop();
  ctx.log(`soak: rss samples (MB) ${samples.map((x) => x.toFixed(0)).join(" ")}`);
  ctx.log(`soak: error replies by kind ${JSON.stringify(errorKinds)}`);
  return { pushes: sent, perSecond, rssStartMb: rssStart, rssGrowthMb: rssEnd - rssStart, errors };
}

function tokens(n: number): string[] {
  return Array.from({ length: n }, () => randomBytes(32).toString("hex"));
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
