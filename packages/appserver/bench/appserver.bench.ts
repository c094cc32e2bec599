import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { FakeComponentServer } from "#src/testing/component-server.js";
import {
  blacklistConvergenceMs,
  deliveryMemoryMb,
  driveComponent,
  median,
  percentile,
  rateLimiterMemoryMb,
} from "./parts.js";
import { startAppServerProcess } from "./appserver-process.js";
import { startBareClientProcess } from "./bare-process.js";
import { startSimulatorProcess } from "./simulator-process.js";

interface Ctx {
  log(msg: string): void;
  quick: boolean;
}

/**
 * Which parts run: all by default; LICHEN_BENCH_APPSERVER_PARTS=throughput,soak,... for some
 * (LICHEN_BENCH_APPSERVER_PARTS=pipeline alone: the appserver's own CPU per push, quickly).
 */
function partsToRun(): Set<string> {
  const all = ["memory", "convergence", "throughput", "pipeline", "soak"];
  const env = process.env.LICHEN_BENCH_APPSERVER_PARTS;
  const want = env ? env.split(",").map((s) => s.trim()) : all;
  for (const w of want) if (!all.includes(w)) throw new Error(`unknown bench part ${w}`);
  return new Set(want);
}

/**
 * appserver benchmark. Throughput: the appserver (production AppServer and providers) runs in its
 * own process; this process plays the XMPP server (XEP-0114 handshake, push IQs). The baseline is
 * a bare node:http2 client in its own process sending the same provider requests (path, headers,
 * payload, one reused JWT) over the same number of HTTP/2 connections with as many in flight, both
 * against the APNs simulator in a third process. The two arms run in short interleaved blocks
 * (pairs, the order alternating: bare-push, push-bare, ...) so that the machine's load drifts
 * alike for both; rates and CPU figures are medians over blocks, the ratio the median of the
 * per-pair ratios. CPU per request of every process doing the work (process.cpuUsage over IPC)
 * and the load average are recorded with each block. Then a soak: pushes over a fixed token set
 * with dead tokens and provider errors, the appserver's RSS sampled.
 */
export default async function bench(
  ctx: Ctx,
): Promise<{ metrics: Record<string, number>; ratios: Record<string, number> }> {
  const parts = partsToRun();
  const metrics: Record<string, number> = {};
  const ratios: Record<string, number> = {};

  if (parts.has("memory")) {
    ctx.log("rate limiter memory, 1M tokens (production token hashes)");
    metrics.ratelimit_1m_tokens_mb = round2(rateLimiterMemoryMb(1_000_000));
    ctx.log("healthy-token memory, 1M tokens");
    metrics.healthy_tokens_1m_mb = round2(deliveryMemoryMb(1_000_000));
  }
  if (parts.has("convergence")) {
    ctx.log("blacklist convergence, 3 nodes via redis");
    metrics.blacklist_convergence_ms = round2(await blacklistConvergenceMs(ctx.quick ? 5 : 20));
  }
  if (parts.has("throughput")) {
    const t = await throughput(ctx);
    Object.assign(metrics, t.metrics);
    Object.assign(ratios, t.ratios);
  }
  if (parts.has("pipeline")) Object.assign(metrics, await pipeline(ctx));
  if (parts.has("soak")) {
    const soak = await soakRun(ctx, ctx.quick ? 100_000 : 1_000_000, ctx.quick ? 10_000 : 100_000);
    metrics.soak_pushes = soak.pushes;
    metrics.soak_pushes_per_s = Math.round(soak.perSecond);
    metrics.soak_rss_start_mb = round2(soak.rssStartMb);
    metrics.soak_rss_growth_mb = round2(soak.rssGrowthMb);
    metrics.soak_error_replies = soak.errors;
  }
  return { metrics, ratios };
}

async function throughput(
  ctx: Ctx,
): Promise<{ metrics: Record<string, number>; ratios: Record<string, number> }> {
  const pairs = ctx.quick ? 4 : 12;
  const blockSize = ctx.quick ? 2000 : 5000;
  const concurrency = 200;
  const connections = 2;

  ctx.log("starting the APNs simulator, appserver and bare client processes");
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
  const bare = await startBareClientProcess({
    origin: sim.origin,
    connections,
    jwt: sim.jwt,
    topic: sim.topic,
    body: sim.body,
  });

  const pushRates: number[] = [];
  const bareRates: number[] = [];
  const pairRatios: number[] = [];
  // CPU time per request (µs) of each process doing the work: unlike rates, barely moved by
  // other processes' load
  const appCpu: number[] = [];
  const bareCpu: number[] = [];
  const appGc: number[] = [];
  const bareGc: number[] = [];
  const appSys: number[] = [];
  // the appserver's event-loop utilization during its blocks: below 1, it waited for the others
  const appLoop: number[] = [];
  const bareSys: number[] = [];
  const driverCpu: number[] = [];
  const simCpuPush: number[] = [];
  const simCpuBare: number[] = [];
  const loads: number[] = [];
  const latencies: number[] = [];
  try {
    // warm-up: connections, JWT, JIT
    for (let w = 0; w < 2; w++) {
      await driveComponent(xmpp, tokens(2000), concurrency, `w${w}-`);
      await bare.run(2000, concurrency);
    }
    const runBare = async () => {
      const s0 = await sim.cpu();
      // the client measures its own CPU and GC time from its first request to its last answer
      const b = await bare.run(blockSize, concurrency);
      const s1 = await sim.cpu();
      if (b.errors) throw new Error(`bare http2 baseline had ${b.errors} non-200 answers`);
      bareCpu.push(b.cpuUs / blockSize);
      bareGc.push(b.gcUs / blockSize);
      bareSys.push(b.sysUs / blockSize);
      simCpuBare.push((s1.cpuUs - s0.cpuUs) / blockSize);
      return b.perSecond;
    };
    const runPush = async (block: number) => {
      const list = tokens(blockSize);
      const [c0, s0] = await Promise.all([app.cpu(), sim.cpu()]);
      const d0 = process.cpuUsage();
      const p = await driveComponent(xmpp, list, concurrency, `b${block}-`);
      const d = process.cpuUsage(d0);
      const [c1, s1] = await Promise.all([app.cpu(), sim.cpu()]);
      if (p.errors) throw new Error(`appserver answered ${p.errors} pushes with errors`);
      appCpu.push((c1.cpuUs - c0.cpuUs) / blockSize);
      appGc.push((c1.gcUs - c0.gcUs) / blockSize);
      appSys.push((c1.sysUs - c0.sysUs) / blockSize);
      const active = c1.loopActiveMs - c0.loopActiveMs;
      appLoop.push(active / (active + c1.loopIdleMs - c0.loopIdleMs));
      simCpuPush.push((s1.cpuUs - s0.cpuUs) / blockSize);
      driverCpu.push((d.user + d.system) / blockSize);
      latencies.push(...p.latenciesMs);
      return p.perSecond;
    };
    for (let i = 0; i < pairs; i++) {
      const load = loadavg()[0]!;
      loads.push(load);
      // the order alternates so that neither arm always runs first
      let b: number;
      let p: number;
      if (i % 2 === 0) {
        b = await runBare();
        p = await runPush(i);
      } else {
        p = await runPush(i);
        b = await runBare();
      }
      bareRates.push(b);
      pushRates.push(p);
      pairRatios.push(p / b);
      ctx.log(
        `pair ${i + 1}/${pairs} (load ${load.toFixed(2)}): appserver ${p.toFixed(0)} pushes/s ` +
          `(CPU ${appCpu.at(-1)!.toFixed(0)} µs of which system ${appSys.at(-1)!.toFixed(0)}, ` +
          `GC ${appGc.at(-1)!.toFixed(0)} per push, loop ${appLoop.at(-1)!.toFixed(2)} busy), bare http2 ${b.toFixed(0)} req/s ` +
          `(CPU ${bareCpu.at(-1)!.toFixed(0)} µs of which system ${bareSys.at(-1)!.toFixed(0)}, ` +
          `GC ${bareGc.at(-1)!.toFixed(0)} per req), ratio ${(p / b).toFixed(2)}`,
      );
    }
  } finally {
    await bare.stop();
    await app.stop();
    await xmpp.close();
    await sim.stop();
  }
  ctx.log(`pair ratios ${pairRatios.map((r) => r.toFixed(2)).join(" ")}`);
  return {
    metrics: {
      pushes_per_s: Math.round(median(pushRates)),
      bare_http2_req_per_s: Math.round(median(bareRates)),
      appserver_cpu_us_per_push: Math.round(median(appCpu)),
      bare_client_cpu_us_per_req: Math.round(median(bareCpu)),
      appserver_system_cpu_us_per_push: Math.round(median(appSys)),
      bare_client_system_cpu_us_per_req: Math.round(median(bareSys)),
      appserver_gc_us_per_push: Math.round(median(appGc)),
      appserver_loop_utilization: round2(median(appLoop)),
      bare_client_gc_us_per_req: Math.round(median(bareGc)),
      driver_cpu_us_per_push: Math.round(median(driverCpu)),
      simulator_cpu_us_per_req_push_arm: Math.round(median(simCpuPush)),
      simulator_cpu_us_per_req_bare_arm: Math.round(median(simCpuBare)),
      push_latency_p50_ms: round2(percentile(latencies, 0.5)),
      push_latency_p99_ms: round2(percentile(latencies, 0.99)),
      load_avg_1m_median: round2(median(loads)),
      load_avg_1m_max: round2(Math.max(...loads)),
    },
    ratios: {
      // median of the per-pair ratios: each pair ran back to back, so load drift cancels
      pushes_vs_bare_http2: round2(median(pairRatios)),
      // how much more CPU the appserver spends per push than a bare client per request
      appserver_cpu_vs_bare_client: round2(median(appCpu) / median(bareCpu)),
    },
  };
}

/**
 * The appserver's own work per push, without HTTP/2: the same appserver process and driver as the
 * throughput part, every app's sender a stub that delivers at once. CPU (and GC) per push of the
 * appserver process over all blocks: component stream parse, request checks, token hash,
 * blacklists, rate limiter, healthy-token memory and its SQLite writes, metrics, the IQ reply.
 * What the throughput part's appserver CPU adds to it is the provider's HTTP/2 work.
 */
async function pipeline(ctx: Ctx): Promise<Record<string, number>> {
  const blocks = ctx.quick ? 3 : 8;
  const blockSize = ctx.quick ? 2000 : 5000;
  ctx.log("pipeline: appserver with stub senders (no provider, no HTTP/2)");
  const sim = await startSimulatorProcess(); // only for a valid app config: never contacted
  const xmpp = new FakeComponentServer("push.localhost", "bench-secret");
  await xmpp.listen();
  const app = await startAppServerProcess(
    {
      component: { service: xmpp.service, domain: "push.localhost", secret: "bench-secret" },
      apps: { bench: { ...sim.appConfig, connections: 2 } },
      dataDir: mkdtempSync(join(tmpdir(), "lichen-push-pipeline-")),
      http: { port: 0 },
      log: { level: "silent" },
    },
    { LICHEN_BENCH_APPSERVER_SENDER: "stub" },
  );
  await xmpp.waitConnected();
  const lists = Array.from({ length: blocks }, () => tokens(blockSize));
  let cpuUs: number;
  let gcUs: number;
  try {
    for (let w = 0; w < 2; w++) await driveComponent(xmpp, tokens(2000), 200, `pw${w}-`);
    // Over all blocks, not a median of blocks: the deliveries' SQLite batch is written once a
    // second, in whichever block that falls, and it is part of the per-push work.
    await new Promise((r) => setTimeout(r, 1500)); // the warm-up's batch written
    const c0 = await app.cpu();
    for (const [b, list] of lists.entries()) {
      const p = await driveComponent(xmpp, list, 200, `p${b}-`);
      if (p.errors) throw new Error(`appserver answered ${p.errors} pushes with errors`);
    }
    await new Promise((r) => setTimeout(r, 1500)); // the last batch written
    const c1 = await app.cpu();
    cpuUs = (c1.cpuUs - c0.cpuUs) / (blocks * blockSize);
    gcUs = (c1.gcUs - c0.gcUs) / (blocks * blockSize);
  } finally {
    await app.stop();
    await xmpp.close();
    await sim.stop();
  }
  return { pipeline_cpu_us_per_push: round2(cpuUs), pipeline_gc_us_per_push: round2(gcUs) };
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
