/**
 * Engine benchmark (`npm run bench -- engine`), against a real Prosody 0.12 on loopback:
 * 1. durable_msgs_per_s: chat messages per second stored by a DurableSession (one BEGIN IMMEDIATE
 *    transaction per stanza: message row + committed XEP-0198 h) on a temp SQLite file, while a
 *    sender process pushes N messages through the server as fast as it can; measured from the
 *    sender's first send to the N-th `message-stored` event. Baseline bare_msgs_per_s: a bare
 *    @xmpp/client 0.14 (its stock stream management) receiving the same burst from the same server
 *    and sender. Rounds alternate the order; rates are medians over rounds, durable_vs_bare is the
 *    median of the per-round ratios.
 * 2. nse_cold_start_p50/p90_ms: the built CLI, `lichen-chat --verbose nse` (its bin, which runs
 *    the bundle), started as a new process on a DB whose session was left resumable, with a
 *    message waiting on the server: parent's clock at spawn -> the process's `nse.message-committed`
 *    log line (the first message's transaction committed). Every run must resume the stream
 *    (checked: the XEP-0198 stream id is unchanged). nse_code_loaded_p50_ms: spawn -> `nse.start`
 *    (Node started, code loaded, arguments parsed). Baselines in the same run, alternating: the same
 *    CLI unbundled (dist/cli.js; nse_unbundled_cold_start_p50_ms, nse_unbundled_peak_rss_mb), and
 *    the startup of an empty Node process (node_startup_p50_ms). nse_cold_start_cpu_p50_ms: the
 *    NSE's own CPU time (user + system, from its start) at that first commit, against
 *    node_startup_cpu_p50_ms of the empty Node: a loaded machine stretches the wall-clock figures,
 *    much less the CPU ones. These processes run without NODE_EXTRA_CA_CERTS (an NSE has no such
 *    variable; Node 20 parses the whole named bundle before any JavaScript runs, ~150 ms per start
 *    with Debian's 140 certificates): when this environment sets it, its cost is reported apart,
 *    node_startup_extra_ca_certs_p50_ms (an empty Node with it).
 *    Both receivers usually keep up with the sender (sender_msgs_per_s), so the rate ratio shows
 *    whether durability slows a burst on this machine; receiver capacity is compared separately by
 *    the bench process's CPU time per message during the round (durable/bare_cpu_us_per_msg; the
 *    sender and server run in other processes): durable_vs_bare_cpu = durable/bare CPU (and its
 *    inverse, durable_vs_bare_cpu_capacity). Both arms receive the same burst from the same sender
 *    through the same server: the bare @xmpp/client parses each stanza and emits it; the durable
 *    session parses it, stores the message row and chat, counts h, all in one transaction per
 *    stanza, and acknowledges after commit.
 * 3. nse_peak_rss_mb: maxRSS of those NSE processes (median, from their `nse.result` log line);
 *    baseline node_baseline_rss_mb.
 * 4. Getting back online over a 32 kbit/s link (a relay throttled to 4000 B/s each way):
 *    resume_bytes / resume_ms_32kbps for a resumed stream vs login_bytes / login_ms_32kbps for a
 *    full login (SASL, bind, enable, roster, disco, carbons, presence, MAM catch-up query) of the
 *    same account with nothing new to fetch: from connect() to the last byte before 500 ms of
 *    silence. Rounds alternate the order; medians.
 * 5. nse_two_accounts_p50_ms: one push, two accounts in one database (both on this server, both
 *    streams left resumable, one message waiting for each): handlePush({ accounts }) from call to
 *    result (linger 0), in this process. Baseline nse_one_account_p50_ms: the same for one of the
 *    two accounts alone; rounds alternate the order; ratios.two_vs_one_account.
 * Server debug logging is off and the MAM quota raised so the server is not the bottleneck of the
 * baseline; sender_msgs_per_s shows how fast the sender got its burst through the server.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { loadAccountState, openStore, saveAccountState, type Store } from "@lichen/store";
import {
  startFlakyLink,
  startProsody,
  streamManagementEnabled,
  type XmppTestServer,
} from "@lichen/test-servers";
import { client, xml } from "@xmpp/client";
import { ensureAccount, MultiAccountApp } from "#src/accounts.js";
import { AppController, handlePush } from "#src/modes.js";
import { DurableSession } from "#src/session.js";
import { JsonLineChild, median, percentile, round1, round3 } from "./children.js";

interface BenchContext {
  log(msg: string): void;
  quick: boolean;
}

const here = import.meta.dirname;
const senderScript = join(here, "sender-child.js");
// The chat app's bin (runs its bundle): the benchmark starts the NSE exactly as a user would.
const chatBin = join(here, "../../../apps/chat/bin/lichen-chat.mjs");
const chatUnbundled = join(here, "../../../apps/chat/dist/cli.js");
const users = {
  sender: "bob",
  durable: "alice",
  bare: "carol",
  nse: "nora",
  slow: "rita",
  twoA: "tess",
  twoB: "uma",
} as const;
const password = (u: string) => `${u}-bench-pw`;

export default async function engineBench(ctx: BenchContext) {
  const n = ctx.quick ? 200 : 2000;
  const rounds = ctx.quick ? 3 : 5;
  const nseRuns = ctx.quick ? 3 : 7;
  const dir = mkdtempSync(join(tmpdir(), "lichen-engine-bench-"));
  let server: XmppTestServer | undefined;
  let sender: JsonLineChild | undefined;
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  try {
    ctx.log(`starting Prosody (load average ${loadLine()}; the machine may be shared)`);
    server = await startProsody({
      smacksHibernationSeconds: 600,
      // No debug log; and a MAM quota the bench cannot reach (at the default 10000 items Prosody
      // starts truncating the sender's archive on every message and becomes the bottleneck).
      extraConfig: [
        `log = { error = "${join(dir, "prosody-bench.err")}" }`,
        "storage_archive_item_limit = 10000000",
      ].join("\n"),
    });
    for (const u of Object.values(users)) await server.registerUser(u, password(u));
    const service = `xmpp://127.0.0.1:${server.c2sPort}`;
    const domain = server.domain;

    sender = new JsonLineChild(senderScript, {
      service,
      domain,
      username: users.sender,
      password: password(users.sender),
    });
    cleanups.push(() => sender?.kill());
    await sender.take((e) => e.event === "ready", "sender online");

    // ---- (1) inbound throughput: durable vs bare -----------------------------------------
    const durableStore = openStore({ path: join(dir, "durable.db"), role: "main" });
    cleanups.push(() => durableStore.close());
    ensureAccount(durableStore, { id: users.durable, jid: `${users.durable}@${domain}` });
    const durable = new DurableSession({
      store: durableStore,
      accountId: users.durable,
      service,
      domain,
      username: users.durable,
      password: password(users.durable),
      resource: "phone",
    });
    cleanups.push(() => durable.suspend());
    ctx.log(`durable session: ${await durable.connect()} stream`);
    await settle(durable);

    const bare = client({
      service,
      domain,
      username: users.bare,
      password: password(users.bare),
      resource: "phone",
    });
    bare.on("error", () => {});
    bare.reconnect.stop();
    await bare.start();
    await streamManagementEnabled(bare);
    await bare.send(xml("presence"));
    cleanups.push(() => bare.stop().catch(() => {}));

    const burst = async (to: string, prefix: string, count: number) => {
      sender!.send({ cmd: "burst", to, prefix, n: count });
      const start = await sender!.take((e) => e.event === "burst-start", "burst start");
      const sent = await sender!.take((e) => e.event === "burst-sent", "burst sent", 300_000);
      return { t0: start.t as number, sentAt: sent.t as number };
    };

    const runDurable = async (prefix: string, count: number) => {
      const received = waitForCount(
        count,
        300_000,
        `durable session storing ${count} messages`,
        (hit, fail) => {
          const onStored = (m: { direction: string; body: string }) => {
            if (m.direction === "in" && m.body.startsWith(prefix)) hit();
          };
          const onOffline = () => fail(new Error("durable session went offline during the burst"));
          durable.on("message-stored", onStored);
          durable.on("offline", onOffline);
          return () => {
            durable.off("message-stored", onStored);
            durable.off("offline", onOffline);
          };
        },
      );
      const cpu0 = process.cpuUsage();
      const { t0, sentAt } = await burst(`${users.durable}@${domain}`, prefix, count);
      const doneAt = await received;
      const cpu = process.cpuUsage(cpu0);
      const stored = durableStore.sqlite
        .prepare("SELECT count(*) AS n FROM messages WHERE account_id = ? AND body LIKE ?")
        .get(users.durable, `${prefix}%`) as { n: number };
      if (stored.n !== count)
        throw new Error(`durable: ${stored.n} rows stored, expected ${count}`);
      return {
        rate: count / ((doneAt - t0) / 1000),
        sendRate: count / ((sentAt - t0) / 1000),
        cpuUsPerMsg: (cpu.user + cpu.system) / count,
      };
    };

    const runBare = async (prefix: string, count: number) => {
      const received = waitForCount(
        count,
        300_000,
        `bare client receiving ${count} messages`,
        (hit, fail) => {
          const onStanza = (s: {
            is(n: string): boolean;
            getChildText(n: string): string | null;
          }) => {
            if (s.is("message") && s.getChildText("body")?.startsWith(prefix)) hit();
          };
          const onOffline = () => fail(new Error("bare client went offline during the burst"));
          bare.on("stanza", onStanza);
          bare.on("offline", onOffline);
          return () => {
            bare.off("stanza", onStanza);
            bare.off("offline", onOffline);
          };
        },
      );
      const cpu0 = process.cpuUsage();
      const { t0, sentAt } = await burst(`${users.bare}@${domain}`, prefix, count);
      const doneAt = await received;
      const cpu = process.cpuUsage(cpu0);
      return {
        rate: count / ((doneAt - t0) / 1000),
        sendRate: count / ((sentAt - t0) / 1000),
        cpuUsPerMsg: (cpu.user + cpu.system) / count,
      };
    };

    const warm = Math.max(100, n / 4);
    ctx.log(`warm-up: ${warm} messages to each receiver`);
    await runDurable("warm-d-", warm);
    await runBare("warm-b-", warm);

    const durableRates: number[] = [];
    const bareRates: number[] = [];
    const sendRates: number[] = [];
    const pairRatios: number[] = [];
    const durableCpu: number[] = [];
    const bareCpu: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? (["durable", "bare"] as const) : (["bare", "durable"] as const);
      const got: Record<string, number> = {};
      const sent: Record<string, number> = {};
      for (const which of order) {
        const res =
          which === "durable" ? await runDurable(`r${r}-d-`, n) : await runBare(`r${r}-b-`, n);
        got[which] = res.rate;
        sent[which] = res.sendRate;
        sendRates.push(res.sendRate);
        (which === "durable" ? durableCpu : bareCpu).push(res.cpuUsPerMsg);
        await settle(durable);
      }
      durableRates.push(got.durable!);
      bareRates.push(got.bare!);
      pairRatios.push(got.durable! / got.bare!);
      ctx.log(
        `round ${r + 1}/${rounds} (${order.join(" then ")}): durable ${round1(got.durable!)} msg/s, bare ${round1(got.bare!)} msg/s, ratio ${round3(got.durable! / got.bare!)}; sender ${round1(sent.durable!)} / ${round1(sent.bare!)} msg/s`,
      );
    }
    ctx.log(`load average after the throughput rounds: ${loadLine()}`);
    const durableMedian = median(durableRates);
    const bareMedian = median(bareRates);
    ctx.log(
      `throughput medians: durable ${round1(durableMedian)}, bare ${round1(bareMedian)} msg/s; median of per-round ratios ${round3(median(pairRatios))} (ratio of medians ${round3(durableMedian / bareMedian)})`,
    );
    ctx.log(
      `receiver CPU per message (medians): durable ${round1(median(durableCpu))} µs, bare ${round1(median(bareCpu))} µs`,
    );
    await durable.suspend();
    await bare.stop().catch(() => {});

    // ---- (2)+(3) NSE cold start and peak RSS ------------------------------------------------
    const nseDb = join(dir, "nse.db");
    const nseConfig = {
      accountId: users.nse,
      service,
      domain,
      username: users.nse,
      password: password(users.nse),
      resource: "phone",
    };
    {
      // The main app logs in once, then is frozen: the stream is left resumable in the DB.
      const mainStore: Store = openStore({ path: nseDb, role: "main" });
      ensureAccount(mainStore, { id: users.nse, jid: `${users.nse}@${domain}`, resource: "phone" });
      const app = new AppController(mainStore, nseConfig);
      ctx.log(`NSE account: main app ${await app.foreground()} stream, then background`);
      await settle(app.session!);
      await app.close();
      mainStore.close();
    }
    // The NSE is the built CLI (`lichen-chat nse`, through its bin, as an app would start it).
    writeFileSync(
      `${nseDb}.account.json`,
      JSON.stringify({
        v: 1,
        accountId: users.nse,
        jid: `${users.nse}@${domain}`,
        service,
        password: password(users.nse),
        resource: "phone",
      }),
      { mode: 0o600 },
    );
    const streamIdOf = () => {
      const s = openStore({ path: nseDb, role: "share" });
      try {
        return s.read((tx) => loadAccountState(tx, users.nse)).sm.streamId;
      } finally {
        s.close();
      }
    };
    const coldStarts: number[] = [];
    const coldStartCpu: number[] = [];
    const loadedMs: number[] = [];
    const rssMb: number[] = [];
    // Same-run baseline: the same CLI unbundled (dist/cli.js: the module graph as tsc emits it,
    // validators compiled at first use), alternating with the bundle.
    const unbundledColdStarts: number[] = [];
    const unbundledRssMb: number[] = [];
    for (let i = -1; i < nseRuns; i++) {
      const order =
        i % 2 === 0 ? (["bundle", "unbundled"] as const) : (["unbundled", "bundle"] as const);
      for (const which of order) {
        const body = `nse-${i}-${which}`;
        sender.send({ cmd: "one", to: `${users.nse}@${domain}`, body });
        await sender.take((e) => e.event === "queued", "message queued for the frozen session");
        const streamBefore = streamIdOf();
        const run = await runNseCli(nseDb, which === "bundle" ? chatBin : chatUnbundled);
        const notified = (run.result?.notifications ?? []).map((x) => x.body);
        if (run.code !== 0 || run.result?.outcome !== "synced" || !notified.includes(body))
          throw new Error(
            `NSE run ${i} (${which}) failed: exit ${run.code}, ${JSON.stringify(run.result)}; stderr ${run.stderr.slice(-2000)}`,
          );
        // A resumed stream keeps its XEP-0198 id; a new login would get another one.
        if (streamBefore === null || streamIdOf() !== streamBefore)
          throw new Error(`NSE run ${i} (${which}) did not resume the stream`);
        const mark = (event: string) => {
          const at = run.marks.get(event);
          if (at === undefined) throw new Error(`NSE run ${i} (${which}): no ${event} log line`);
          return at - run.spawnedAt;
        };
        const loaded = mark("nse.start");
        const cold = mark("nse.message-committed");
        const cpu = run.cpuMarks.get("nse.message-committed");
        if (cpu === undefined) throw new Error(`NSE run ${i} (${which}): no cpuMs at first commit`);
        const rss = run.peakRssKiB / 1024;
        ctx.log(
          `NSE run ${i < 0 ? "warm-up" : `${i + 1}/${nseRuns}`} ${which}: code loaded ${loaded} ms, first message stored ${cold} ms (CPU ${cpu} ms), exited ${run.exitedAt - run.spawnedAt} ms, peak RSS ${round1(rss)} MB`,
        );
        if (i < 0) continue; // first run warms the OS file cache
        if (which === "bundle") {
          coldStarts.push(cold);
          coldStartCpu.push(cpu);
          loadedMs.push(loaded);
          rssMb.push(rss);
        } else {
          unbundledColdStarts.push(cold);
          unbundledRssMb.push(rss);
        }
      }
    }

    // Baseline: an empty Node process (startup to first line of JS, and its peak RSS).
    const nodeStartup: number[] = [];
    const nodeCpu: number[] = [];
    const nodeRss: number[] = [];
    const nodeWithCaStartup: number[] = [];
    for (let i = 0; i < nseRuns; i++) {
      const b = await emptyNode();
      nodeStartup.push(b.startupMs);
      nodeCpu.push(b.cpuMs);
      nodeRss.push(b.rssMb);
      if (process.env.NODE_EXTRA_CA_CERTS)
        nodeWithCaStartup.push((await emptyNode(process.env)).startupMs);
    }
    ctx.log(
      `empty node: startup p50 ${median(nodeStartup)} ms (CPU ${round1(median(nodeCpu))} ms), peak RSS ${round1(median(nodeRss))} MB${nodeWithCaStartup.length ? `; with this environment's NODE_EXTRA_CA_CERTS ${median(nodeWithCaStartup)} ms` : ""}`,
    );

    // ---- (4) back online over a 32 kbit/s link: resume vs full login --------------------------
    const slowLink = await startFlakyLink({ port: server.c2sPort, bytesPerSecond: 4000 });
    cleanups.push(() => slowLink.close());
    const slowStore = openStore({ path: join(dir, "slow.db"), role: "main" });
    cleanups.push(() => slowStore.close());
    ensureAccount(slowStore, { id: users.slow, jid: `${users.slow}@${domain}`, resource: "phone" });
    const slow = new DurableSession({
      store: slowStore,
      accountId: users.slow,
      service: `xmpp://127.0.0.1:${slowLink.port}`,
      domain,
      username: users.slow,
      password: password(users.slow),
      resource: "phone",
    });
    cleanups.push(() => slow.suspend());
    await slow.connect();
    await settle(slow);
    await slow.suspend();
    /** connect() until the link is quiet for 500 ms: bytes both ways and ms to the last byte. */
    const backOnline = async (want: "resumed" | "new") => {
      slowLink.resetBytes();
      const t0 = Date.now();
      const how = await slow.connect(60_000);
      if (how !== want) throw new Error(`expected a ${want} stream, got ${how}`);
      let last = slowLink.bytes;
      let lastChange = Date.now();
      while (Date.now() - lastChange < 500) {
        await new Promise((r) => setTimeout(r, 20));
        const b = slowLink.bytes;
        if (b.up !== last.up || b.down !== last.down) {
          last = b;
          lastChange = Date.now();
        }
      }
      await slow.suspend();
      return { bytes: last.up + last.down, ms: lastChange - t0 };
    };
    const forgetStream = () =>
      slowStore.write((tx) => {
        const st = loadAccountState(tx, users.slow);
        st.sm.streamId = null; // as after the server's resumption timeout
        saveAccountState(tx, users.slow, st);
      });
    const resumeRuns: { bytes: number; ms: number }[] = [];
    const loginRuns: { bytes: number; ms: number }[] = [];
    for (let i = 0; i < rounds; i++) {
      const order = i % 2 === 0 ? (["resumed", "new"] as const) : (["new", "resumed"] as const);
      for (const how of order) {
        if (how === "new") forgetStream();
        const r = await backOnline(how);
        (how === "resumed" ? resumeRuns : loginRuns).push(r);
        ctx.log(
          `32 kbit/s round ${i + 1}/${rounds}: ${how === "new" ? "full login" : "resume"} ${r.bytes} bytes, ${r.ms} ms`,
        );
      }
    }
    const resumeBytes = median(resumeRuns.map((r) => r.bytes));
    const loginBytes = median(loginRuns.map((r) => r.bytes));
    const resumeMs = median(resumeRuns.map((r) => r.ms));
    const loginMs = median(loginRuns.map((r) => r.ms));

    // ---- (5) one push, two accounts: NSE sync time vs one account -----------------------------
    const twoStore = openStore({ path: join(dir, "two.db"), role: "main" });
    cleanups.push(() => twoStore.close());
    const accountConfig = (u: string) => ({
      accountId: u,
      service,
      domain,
      username: u,
      password: password(u),
      resource: "phone",
    });
    const accA = accountConfig(users.twoA);
    const accB = accountConfig(users.twoB);
    for (const a of [accA, accB])
      ensureAccount(twoStore, {
        id: a.accountId,
        jid: `${a.accountId}@${domain}`,
        resource: "phone",
      });
    {
      // The main app brings both online once, then is frozen: both streams left resumable.
      const app = new MultiAccountApp(twoStore, [accA, accB]);
      const fg = await app.foreground();
      for (const f of fg) if ("error" in f) throw new Error(`${f.accountId}: ${String(f.error)}`);
      for (const c of app.controllers.values()) await settle(c.session!);
      await app.close();
    }
    const twoNseStore = openStore({ path: join(dir, "two.db"), role: "nse" });
    cleanups.push(() => twoNseStore.close());
    const twoSender = sender;
    const pushFor = async (accounts: (typeof accA)[], body: string) => {
      for (const a of accounts) {
        twoSender.send({ cmd: "one", to: `${a.accountId}@${domain}`, body });
        await twoSender.take((e) => e.event === "queued", "message queued for a frozen account");
      }
      const t0 = performance.now();
      const r = await handlePush({ store: twoNseStore, accounts, lingerMs: 0 });
      const ms = performance.now() - t0;
      if (r.outcome !== "synced" || r.summary.messages !== accounts.length)
        throw new Error(`two-account NSE run: ${JSON.stringify(r)}`);
      if (r.accounts.some((a) => a.stream !== "resumed"))
        throw new Error(`two-account NSE run did not resume: ${JSON.stringify(r.accounts)}`);
      return ms;
    };
    const oneAccountMs: number[] = [];
    const twoAccountsMs: number[] = [];
    for (let i = -1; i < nseRuns; i++) {
      const order = i % 2 === 0 ? (["one", "two"] as const) : (["two", "one"] as const);
      for (const which of order) {
        const ms = await pushFor(which === "one" ? [accA] : [accA, accB], `two-${i}-${which}`);
        ctx.log(
          `NSE ${which === "one" ? "one account" : "two accounts"} run ${i < 0 ? "warm-up" : `${i + 1}/${nseRuns}`}: ${round1(ms)} ms`,
        );
        if (i < 0) continue;
        (which === "one" ? oneAccountMs : twoAccountsMs).push(ms);
      }
    }

    return {
      metrics: {
        messages_per_round: n,
        rounds,
        durable_msgs_per_s: round1(durableMedian),
        bare_msgs_per_s: round1(bareMedian),
        sender_msgs_per_s: round1(median(sendRates)),
        durable_cpu_us_per_msg: round1(median(durableCpu)),
        bare_cpu_us_per_msg: round1(median(bareCpu)),
        nse_runs: coldStarts.length,
        nse_cold_start_p50_ms: round1(median(coldStarts)),
        nse_cold_start_p90_ms: round1(percentile(coldStarts, 90)),
        nse_cold_start_cpu_p50_ms: round1(median(coldStartCpu)),
        nse_code_loaded_p50_ms: round1(median(loadedMs)),
        nse_unbundled_cold_start_p50_ms: round1(median(unbundledColdStarts)),
        nse_unbundled_peak_rss_mb: round1(median(unbundledRssMb)),
        nse_peak_rss_mb: round1(median(rssMb)),
        node_startup_p50_ms: round1(median(nodeStartup)),
        node_startup_cpu_p50_ms: round1(median(nodeCpu)),
        ...(nodeWithCaStartup.length
          ? { node_startup_extra_ca_certs_p50_ms: round1(median(nodeWithCaStartup)) }
          : {}),
        node_baseline_rss_mb: round1(median(nodeRss)),
        resume_bytes: resumeBytes,
        login_bytes: loginBytes,
        resume_ms_32kbps: round1(resumeMs),
        login_ms_32kbps: round1(loginMs),
        nse_two_accounts_p50_ms: round1(median(twoAccountsMs)),
        nse_one_account_p50_ms: round1(median(oneAccountMs)),
      },
      ratios: {
        durable_vs_bare: round3(median(pairRatios)),
        durable_vs_bare_cpu: round3(median(durableCpu) / median(bareCpu)),
        durable_vs_bare_cpu_capacity: round3(median(bareCpu) / median(durableCpu)),
        nse_rss_vs_empty_node: round3(median(rssMb) / median(nodeRss)),
        nse_cold_start_bundle_vs_unbundled: round3(
          median(coldStarts) / median(unbundledColdStarts),
        ),
        login_vs_resume_bytes: round3(loginBytes / resumeBytes),
        login_vs_resume_time_32kbps: round3(loginMs / resumeMs),
        two_vs_one_account: round3(median(twoAccountsMs) / median(oneAccountMs)),
      },
    };
  } finally {
    if (sender) {
      sender.send({ cmd: "stop" });
      await Promise.race([sender.exited, new Promise((r) => setTimeout(r, 3000))]);
    }
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        /* best effort: everything is stopped below */
      }
    }
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const loadLine = () =>
  loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");

/** Waits until `count` hits were seen; resolves with Date.now() at the last one. */
function waitForCount(
  count: number,
  timeoutMs: number,
  what: string,
  subscribe: (hit: () => void, fail: (err: Error) => void) => () => void,
): Promise<number> {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const finish = (err: Error | null, at = 0) => {
      clearTimeout(timer);
      unsubscribe();
      if (err) reject(err);
      else resolve(at);
    };
    const timer = setTimeout(
      () => finish(new Error(`${what}: timed out after ${timeoutMs} ms with ${seen}`)),
      timeoutMs,
    );
    const unsubscribe = subscribe(
      () => {
        if (++seen === count) finish(null, Date.now());
      },
      (err) => finish(err),
    );
  });
}

/** Lets the session finish what it started (setup IQs, acks) before the next measurement. */
async function settle(session: DurableSession): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await session.idle();
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface NseCliRun {
  code: number | null;
  spawnedAt: number;
  exitedAt: number;
  /** Epoch ms of each `nse.*` log line (--verbose, JSON lines on stderr). */
  marks: Map<string, number>;
  /** The process's CPU ms at each `nse.*` line that reports it (cpuMs). */
  cpuMarks: Map<string, number>;
  peakRssKiB: number;
  result: { outcome?: string; notifications?: { body?: string }[] } | null;
  stderr: string;
}

/** One `lichen-chat --verbose nse --linger-ms 0` process on `db`: its result and timing marks. */
function runNseCli(db: string, script: string): Promise<NseCliRun> {
  if (!existsSync(script)) throw new Error(`${script} is missing: run npm run build`);
  return new Promise((resolve, reject) => {
    const spawnedAt = Date.now();
    const p = spawn(
      process.execPath,
      [script, "--db", db, "--verbose", "nse", "--linger-ms", "0"],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...startEnv(), LICHEN_LOG_FORMAT: "json" } },
    );
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += String(d)));
    p.stderr.on("data", (d) => (stderr += String(d)));
    p.once("error", reject);
    p.once("exit", (code) => {
      const exitedAt = Date.now();
      const marks = new Map<string, number>();
      const cpuMarks = new Map<string, number>();
      let peakRssKiB = 0;
      for (const line of stderr.split("\n")) {
        let e: { event?: unknown; time?: unknown; peakRssKiB?: unknown; cpuMs?: unknown };
        try {
          e = JSON.parse(line) as typeof e;
        } catch {
          continue;
        }
        if (typeof e.event !== "string" || typeof e.time !== "number") continue;
        if (!marks.has(e.event)) marks.set(e.event, e.time);
        if (typeof e.cpuMs === "number" && !cpuMarks.has(e.event)) cpuMarks.set(e.event, e.cpuMs);
        if (typeof e.peakRssKiB === "number") peakRssKiB = e.peakRssKiB;
      }
      let result: NseCliRun["result"] = null;
      try {
        result = JSON.parse(stdout) as NseCliRun["result"];
      } catch {
        result = null;
      }
      resolve({ code, spawnedAt, exitedAt, marks, cpuMarks, peakRssKiB, result, stderr });
    });
  });
}

/** The environment of the measured processes: this one's without NODE_EXTRA_CA_CERTS (see top). */
function startEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
}

/** Spawns `node -e` that reports its first-JS time, CPU time so far and peak RSS. */
function emptyNode(
  env: NodeJS.ProcessEnv = startEnv(),
): Promise<{ startupMs: number; cpuMs: number; rssMb: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const p = spawn(
      process.execPath,
      [
        "-e",
        "const c=process.cpuUsage();console.log(JSON.stringify({t:Date.now(),cpu:(c.user+c.system)/1000,rss:process.resourceUsage().maxRSS}))",
      ],
      { stdio: ["ignore", "pipe", "inherit"], env },
    );
    let outText = "";
    p.stdout.on("data", (d) => (outText += String(d)));
    p.once("error", reject);
    p.once("exit", (code) => {
      if (code !== 0) return reject(new Error(`empty node exited ${code}`));
      const r = JSON.parse(outText) as { t: number; cpu: number; rss: number };
      resolve({ startupMs: r.t - t0, cpuMs: r.cpu, rssMb: r.rss / 1024 });
    });
  });
}
