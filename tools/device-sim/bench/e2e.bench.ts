/**
 * End-to-end benchmark (`npm run bench -- e2e`, issue 12): the whole chain on loopback — a real
 * server, the real lichen-push daemon, the APNs simulator and the device simulator running the
 * built lichen-chat processes.
 *
 * metrics: push_to_notification_p50_ms / _p99_ms (bob's message sent → the NSE's notification
 * shown; app not running, stream suspended; Prosody), linger_second_push_p50_ms (ejabberd, which
 * pushes per message: the second push's delivery → its notification from the same NSE process,
 * handed over when its round is done, as the first push's is),
 * notification_before_nse_exit_p50_ms (how long before its NSE process exited a notification
 * was shown: the linger and the shutdown it no longer waits for; ~0 when shown at process end),
 * nse_peak_rss_mb (VmHWM of the NSE processes, max), baseline_process_start_ms (a `lichen-chat
 * --version` process: the floor of every NSE run) and ratios.push_to_notification_vs_process_start.
 * slowlink_resume_s / _bytes and slowlink_login_mam_s / _bytes (Prosody, 32 kbit/s + 200 ms RTT
 * through startFlakyLink: 20 messages queued while the app is away, from the push's delivery to
 * all 20 stored by the NSE; bytes both ways on the link; login + MAM = the same with the stream
 * forgotten in the database, so the NSE logs in and fetches the archive), and
 * ratios.resume_wire_vs_stanza_bytes (bytes on the link during the resume over the bytes of the 20
 * <message/> stanzas as the server wrote them; target <= 1.3), with
 * slowlink_resume_handshake_up_bytes / _down_bytes: what each side wrote up to and including
 * <resumed/> (stream headers, features, SASL, resume) — the fixed cost of every wake, mostly the
 * server's, which is why short messages cannot reach the target (see the README's iOS section).
 * resume_tls_full_bytes / resume_tls_ticket_bytes (Prosody with STARTTLS, accepting TLS tickets:
 * the same 20-message resume by a new DurableSession, bytes both ways, with a full TLS handshake
 * vs the TLS session stored in the database by the previous connection) and
 * ratios.resume_tls_ticket_vs_full_bytes.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { loadAccountState, openStore, saveAccountState, tables } from "@lichen/store";
import { DurableSession, ensureAccount } from "@lichen/engine";
import {
  startEjabberd,
  startFlakyLink,
  startProsody,
  startTestPeer,
  type XmppTestServer,
} from "@lichen/test-servers";
import { until } from "@lichen/test-kit";
import { DeviceSimulator, scaledRules, setUpAccount, startPushChain } from "@lichen/device-sim";

interface BenchContext {
  log(msg: string): void;
  quick: boolean;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : 0;
};
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : 0;
};

function setService(db: string, service: string): void {
  const file = `${db}.account.json`;
  const s = JSON.parse(readFileSync(file, "utf8")) as { service: string };
  writeFileSync(file, JSON.stringify({ ...s, service }), { mode: 0o600 });
}

function storedCount(db: string, prefix: string): number {
  const store = openStore({ path: db, role: "nse" });
  try {
    return (
      store.sqlite
        .prepare("SELECT count(*) AS n FROM messages WHERE direction = 'in' AND body LIKE ?")
        .get(`${prefix}%`) as { n: number }
    ).n;
  } finally {
    store.close();
  }
}

/**
 * 20 messages queued while the app is away, caught up by the NSE at 32 kbit/s + 200 ms RTT:
 * seconds from the push's delivery to all stored, bytes on the link, and the bytes of the
 * <message/> stanzas themselves (as written by the server, seen on the link).
 */
async function slowCatchUp(
  server: XmppTestServer,
  bob: Awaited<ReturnType<typeof startTestPeer>>,
  user: string,
  forgetStream: boolean,
): Promise<{
  seconds: number;
  bytes: number;
  stanzaBytes: number;
  handshake: { up: number; down: number };
}> {
  let down = "";
  // Bytes each way up to and including <resumed/> (or the bound JID's <iq/> on a new login):
  // the fixed cost every NSE wake pays before the first stanza, most of it written by the server.
  const handshake = { up: 0, down: 0, done: false };
  const link = await startFlakyLink({
    port: server.c2sPort,
    bytesPerSecond: 4000,
    delayMs: 100,
    tap: (dir, chunk) => {
      const text = chunk.toString("utf8");
      if (dir === "down") down += text;
      if (handshake.done) return;
      const end = dir === "down" ? /<resumed\b[^>]*>/.exec(text) : null;
      if (end) {
        handshake.down += Buffer.byteLength(text.slice(0, end.index + end[0].length));
        handshake.done = true;
      } else handshake[dir] += chunk.length;
    },
  });
  try {
    const r = await withPhone(server, user, 300, async ({ sim, jid, db }) => {
      setService(db, `xmpp://127.0.0.1:${link.port}`);
      if (forgetStream) {
        // The stream is gone (e.g. the server restarted): the NSE logs in and reads the archive.
        const store = openStore({ path: db, role: "main" });
        try {
          store.write((tx) => {
            const st = loadAccountState(tx, `${user}@localhost`);
            saveAccountState(tx, `${user}@localhost`, {
              ...st,
              sm: { ...st.sm, streamId: null },
            });
          });
        } finally {
          store.close();
        }
      }
      link.resetBytes();
      down = "";
      Object.assign(handshake, { up: 0, down: 0, done: false });
      const prefix = `slow-${user}-`;
      for (let i = 0; i < 20; i++) await bob.send(jid, `${prefix}${i}`);
      const pushed = await until(
        () => sim.timeline.find((e) => /delivered \(alert/.test(e.what)),
        "a push",
        60_000,
        5,
      );
      await until(() => storedCount(db, prefix) >= 20, "20 stored", 120_000, 20);
      const seconds = (Date.now() - pushed.at) / 1000;
      const bytes = link.bytes.up + link.bytes.down;
      await sim.nsesIdle();
      const stanzaBytes = [...down.matchAll(/<message\b[\s\S]*?<\/message>/g)]
        .filter((m) => m[0].includes(prefix))
        .reduce((n, m) => n + Buffer.byteLength(m[0]), 0);
      return { seconds, bytes, stanzaBytes, handshake: { up: handshake.up, down: handshake.down } };
    });
    return r.value;
  } finally {
    await link.close();
  }
}

/**
 * Bytes on the link for a resume that brings 20 queued messages over STARTTLS, by a new
 * DurableSession (as a new NSE process is), with or without the TLS session the previous
 * connection stored.
 */
/** An engine session over STARTTLS trusting the test server's CA (its own database). */
function tlsSession(server: XmppTestServer, user: string, db: string, port = server.c2sPort) {
  const store = openStore({ path: db, role: "main" });
  ensureAccount(store, { id: user, jid: `${user}@localhost`, resource: "phone" });
  const session = () =>
    new DurableSession({
      store,
      accountId: user,
      service: `xmpp://127.0.0.1:${port}`,
      domain: "localhost",
      username: user,
      password: "pw",
      resource: "phone",
      tls: { ca: readFileSync(server.caCertPath) },
      allowPlaintext: false,
    });
  return { store, session };
}

async function tlsResumeBytes(
  server: XmppTestServer,
  bob: DurableSession,
  user: string,
  withTicket: boolean,
): Promise<number> {
  await server.registerUser(user, "pw");
  const dir = mkdtempSync(join(tmpdir(), "lichen-e2e-tls-"));
  const link = await startFlakyLink({ port: server.c2sPort });
  const { store, session } = tlsSession(server, user, join(dir, "tls.db"), link.port);
  try {
    const first = session();
    await first.connect();
    await first.suspend();
    const prefix = `tls-${user}-`;
    for (let i = 0; i < 20; i++) await bob.send(`${user}@localhost`, `${prefix}${i}`).acked;
    if (!withTicket) store.write((tx) => tx.delete(tables.tlsSessions).run());
    link.resetBytes();
    const again = session();
    await again.connect();
    await until(
      () =>
        (
          store.sqlite
            .prepare("SELECT count(*) AS n FROM messages WHERE body LIKE ?")
            .get(`${prefix}%`) as { n: number }
        ).n >= 20,
      "20 stored over TLS",
      60_000,
      20,
    );
    await again.syncBarrier();
    if (again.tlsSessionReused !== withTicket)
      throw new Error(`TLS session reused: ${again.tlsSessionReused}, expected ${withTicket}`);
    await again.suspend();
    return link.bytes.up + link.bytes.down;
  } finally {
    await link.close();
    store.close();
  }
}

function peakRssMb(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0; // already gone
  }
}

async function withPhone<T>(
  server: XmppTestServer,
  user: string,
  lingerMs: number,
  body: (phone: {
    sim: DeviceSimulator;
    jid: string;
    db: string;
    token: string;
    sampleRss(): void;
  }) => Promise<T>,
): Promise<{ value: T; rssMb: number }> {
  const chain = await startPushChain(server);
  const dir = mkdtempSync(join(tmpdir(), "lichen-e2e-bench-"));
  const db = join(dir, `${user}.db`);
  const token = randomBytes(32).toString("hex");
  await server.registerUser(user, "pw");
  await setUpAccount({
    db,
    jid: `${user}@localhost`,
    password: "pw",
    service: `xmpp://127.0.0.1:${server.c2sPort}`,
    token,
    chain,
  });
  const sim = new DeviceSimulator({ db, token, rules: scaledRules(1, { nseLingerMs: lingerMs }) });
  chain.onDelivery(sim.deliver);
  let rssMb = 0;
  const sampleRss = () => {
    for (const pid of sim.runningNsePids) rssMb = Math.max(rssMb, peakRssMb(pid));
  };
  const sampler = setInterval(sampleRss, 20);
  try {
    return { value: await body({ sim, jid: `${user}@localhost`, db, token, sampleRss }), rssMb };
  } finally {
    clearInterval(sampler);
    await sim.stop();
    await chain.stop();
  }
}

export default async function e2eBench(ctx: BenchContext) {
  const rounds = ctx.quick ? 3 : 15;
  const require = createRequire(import.meta.url);
  // The bin, as the device simulator runs it (the bundle).
  const cli = join(dirname(require.resolve("@lichen/chat/package.json")), "bin", "lichen-chat.mjs");
  const starts: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    spawnSync(process.execPath, [cli, "--version"]);
    starts.push(performance.now() - t);
  }
  const processStart = median(starts);
  ctx.log(`baseline: a lichen-chat process start ${processStart.toFixed(0)} ms (median of 5)`);

  // Push → notification, Prosody, one NSE per push (short linger so the runs do not overlap).
  const prosody = await startProsody();
  await prosody.registerUser("bob", "bobpw");
  const latencies: number[] = [];
  /** How long before its NSE process ended each notification was shown (linger included). */
  const beforeExit: number[] = [];
  let rss = 0;
  const none = { seconds: 0, bytes: 0, stanzaBytes: 0, handshake: { up: 0, down: 0 } };
  let slowResume = none;
  let slowLogin = none;
  try {
    const bob = await startTestPeer(prosody.c2sPort, "bob", "bobpw");
    try {
      const r = await withPhone(prosody, "alice", 200, async ({ sim, jid }) => {
        for (let i = 0; i < rounds; i++) {
          const body = `bench-${i}`;
          const sent = Date.now();
          await bob.send(jid, body);
          const shown = await until(
            () => sim.displayed.find((d) => d.body === body),
            `notification ${body}`,
            60_000,
            5,
          );
          latencies.push(shown.at - sent);
          await sim.nsesIdle();
          const exited = sim.timeline.find((e) => e.pid === shown.pid && /NSE exited/.test(e.what));
          if (exited) beforeExit.push(exited.at - shown.at);
        }
      });
      rss = Math.max(rss, r.rssMb);
      slowResume = await slowCatchUp(prosody, bob, "slowresume", false);
      slowLogin = await slowCatchUp(prosody, bob, "slowlogin", true);
    } finally {
      await bob.stop();
    }
  } finally {
    await prosody.stop();
  }
  // The same resume over STARTTLS, full handshake vs stored TLS session. Prosody's defaults
  // refuse tickets (no_ticket); this one is configured to accept them.
  const tlsProsody = await startProsody({
    tls: true,
    extraConfig: "c2s_ssl = { options = { no_ticket = false } }\n",
  });
  const tlsMedians = { full: 0, ticket: 0 };
  try {
    await tlsProsody.registerUser("tlsbob", "pw");
    const bobDir = mkdtempSync(join(tmpdir(), "lichen-e2e-tls-bob-"));
    const bobSide = tlsSession(tlsProsody, "tlsbob", join(bobDir, "bob.db"));
    const bob = bobSide.session();
    await bob.connect();
    try {
      const full: number[] = [];
      const ticket: number[] = [];
      for (let i = 0; i < (ctx.quick ? 1 : 3); i++) {
        full.push(await tlsResumeBytes(tlsProsody, bob, `tlsfull${i}`, false));
        ticket.push(await tlsResumeBytes(tlsProsody, bob, `tlstick${i}`, true));
      }
      tlsMedians.full = median(full);
      tlsMedians.ticket = median(ticket);
    } finally {
      await bob.close();
      bobSide.store.close();
    }
  } finally {
    await tlsProsody.stop();
  }
  ctx.log(
    `STARTTLS resume of 20 messages: full handshake ${tlsMedians.full} B, stored TLS session ${tlsMedians.ticket} B`,
  );
  ctx.log(
    `32 kbit/s + 200 ms RTT, 20 messages: resume ${slowResume.seconds.toFixed(1)} s ${slowResume.bytes} B (stanzas ${slowResume.stanzaBytes} B; handshake up ${slowResume.handshake.up} B, down ${slowResume.handshake.down} B); login + MAM ${slowLogin.seconds.toFixed(1)} s ${slowLogin.bytes} B`,
  );
  ctx.log(
    `push → notification (Prosody, ${rounds} rounds): p50 ${median(latencies)} ms, p99 ${pct(latencies, 99)} ms`,
  );

  // Second push to a living NSE, ejabberd (it pushes for each message of a hibernated session).
  const ejabberd = await startEjabberd();
  await ejabberd.registerUser("bob", "bobpw");
  const second: number[] = [];
  try {
    const bob = await startTestPeer(ejabberd.c2sPort, "bob", "bobpw");
    try {
      const r = await withPhone(ejabberd, "alice", 1500, async ({ sim, jid }) => {
        for (let i = 0; i < Math.max(2, Math.ceil(rounds / 3)); i++) {
          const firstNse = sim.nsePids.length;
          await bob.send(jid, `first-${i}`);
          await until(() => sim.nsePids.length > firstNse, "NSE started", 60_000, 5);
          const handed = sim.timeline.length;
          await bob.send(jid, `second-${i}`);
          const entry = await until(
            () => sim.timeline.slice(handed).find((e) => /handed to the running NSE/.test(e.what)),
            "second push handed over",
            60_000,
            5,
          ).catch(() => null);
          await sim.nsesIdle();
          if (!entry) continue; // the NSE had already ended: not a linger sample
          const pushId = /push (\S+) handed/.exec(entry.what)![1];
          const shown = sim.displayed.find((d) => d.pushId === pushId);
          const answered = sim.timeline.find(
            (e) => e.what.startsWith(`NSE answered push ${pushId}`) && e.at >= entry.at,
          );
          second.push((shown ?? answered ?? entry).at - entry.at);
        }
      });
      rss = Math.max(rss, r.rssMb);
    } finally {
      await bob.stop();
    }
  } finally {
    await ejabberd.stop();
  }
  ctx.log(
    `second push in the same NSE (ejabberd, ${second.length} samples): p50 ${median(second)} ms`,
  );
  ctx.log(`NSE peak RSS ${rss.toFixed(1)} MiB`);
  return {
    metrics: {
      push_to_notification_p50_ms: median(latencies),
      push_to_notification_p99_ms: pct(latencies, 99),
      notification_before_nse_exit_p50_ms: median(beforeExit),
      linger_second_push_p50_ms: median(second),
      linger_second_push_samples: second.length,
      nse_peak_rss_mb: Math.round(rss * 10) / 10,
      baseline_process_start_ms: Math.round(processStart),
      slowlink_resume_s: Math.round(slowResume.seconds * 10) / 10,
      slowlink_resume_bytes: slowResume.bytes,
      slowlink_login_mam_s: Math.round(slowLogin.seconds * 10) / 10,
      slowlink_login_mam_bytes: slowLogin.bytes,
      slowlink_stanza_bytes: slowResume.stanzaBytes,
      slowlink_resume_handshake_up_bytes: slowResume.handshake.up,
      slowlink_resume_handshake_down_bytes: slowResume.handshake.down,
      resume_tls_full_bytes: tlsMedians.full,
      resume_tls_ticket_bytes: tlsMedians.ticket,
    },
    ratios: {
      resume_tls_ticket_vs_full_bytes: tlsMedians.full
        ? Math.round((tlsMedians.ticket / tlsMedians.full) * 100) / 100
        : 0,
      resume_wire_vs_stanza_bytes: slowResume.stanzaBytes
        ? Math.round((slowResume.bytes / slowResume.stanzaBytes) * 100) / 100
        : 0,
      push_to_notification_vs_process_start: processStart
        ? Math.round((median(latencies) / processStart) * 100) / 100
        : 0,
    },
  };
}
