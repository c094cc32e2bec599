/**
 * Slow-link benchmark (`npm run bench -- slowlink`, issue 17): a phone at 32 kbit/s (4000 B/s each
 * way) with a 200 ms round trip (startFlakyLink delayMs 100), on real Prosody and ejabberd.
 * Per server and round (fresh database and account alice<N> each round), alice's main app logs in through the link
 * and goes to background, then:
 * 1. resume: bob sends QUEUED messages (~100-byte bodies, origin-id, receipt request); one
 *    handlePush() through the link — wall time around it [resume_s], bytes both ways [resume_bytes],
 *    how many of the messages it stored [resume_stored]. The messages' own bytes are the bytes
 *    of those <message/> stanzas on alice's wire during the resume, as the server replays them
 *    (with the <delay/> it adds to queued stanzas; the issue's own breakdown counted them so)
 *    [stanza_bytes]; ratios.resume_wire_vs_stanza_bytes = resume_bytes / stanza_bytes, so
 *    everything else (reconnect, acks, the barrier, leftovers) is the overhead. For reference,
 *    the same stanzas as the server delivers them live to a third account (carol; no <delay/>;
 *    one byte shorter per stanza than alice<N>) [live_stanza_bytes] and
 *    ratios.resume_wire_vs_live_stanza_bytes.
 * 2. new stream + MAM: the stream is then made unresumable (as after the server's resume timeout),
 *    QUEUED more messages, one handlePush() [login_mam_s, login_mam_bytes, login_mam_stored].
 * 3. the same with QUEUED_LARGE messages [login_mam_100_s, login_mam_100_stored].
 * handlePush runs in this process (no process spawn in the times). Medians over rounds; keys are
 * prefixed by the server (prosody_resume_s, ejabberd_resume_s, ...).
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadAccountState, openStore, saveAccountState, type Store } from "@lichen/store";
import {
  startEjabberd,
  startFlakyLink,
  startProsody,
  startTestPeer,
  type TestPeer,
  type XmppTestServer,
} from "@lichen/test-servers";
import { xml } from "@xmpp/client";
import { ensureAccount } from "#src/accounts.js";
import { AppController, handlePush } from "#src/modes.js";
import { median, round1, round3 } from "./children.js";

interface BenchContext {
  log(msg: string): void;
  quick: boolean;
}

const BYTES_PER_SECOND = 4000; // 32 kbit/s
const DELAY_MS = 100; // one way: 200 ms RTT
const QUEUED = 20;
const QUEUED_LARGE = 100;
const BODY_BYTES = 100;

type Figures = Record<string, number>;

export default async function slowlinkBench(ctx: BenchContext) {
  const rounds = ctx.quick ? 1 : 3;
  const metrics: Record<string, number> = {};
  const ratios: Record<string, number> = {};
  for (const [kind, start] of [
    ["prosody", startProsody],
    ["ejabberd", startEjabberd],
  ] as const) {
    ctx.log(`${kind}: starting`);
    const server = await start();
    const per: Figures[] = [];
    try {
      for (const u of ["bob", "carol"]) await server.registerUser(u, `${u}pw`);
      for (let r = 0; r < rounds; r++) {
        // A fresh account per round: what one round left on the server (offline store,
        // hibernated session) must not flood the next.
        const alice = `alice${r}`;
        await server.registerUser(alice, `${alice}pw`);
        const f = await oneRound(server, alice, ctx.quick);
        ctx.log(`${kind} round ${r + 1}/${rounds}: ${JSON.stringify(f)}`);
        per.push(f);
      }
    } finally {
      await server.stop();
    }
    const med = (k: string) => median(per.map((f) => f[k]!));
    for (const k of Object.keys(per[0]!)) {
      const v = med(k);
      metrics[`${kind}_${k}`] = k.endsWith("_s") ? round3(v) : round1(v);
    }
    ratios[`${kind}_resume_wire_vs_stanza_bytes`] = round3(
      median(per.map((f) => f.resume_bytes! / f.stanza_bytes!)),
    );
    ratios[`${kind}_resume_wire_vs_live_stanza_bytes`] = round3(
      median(per.map((f) => f.resume_bytes! / f.live_stanza_bytes!)),
    );
    ctx.log(
      `${kind} (median of ${rounds}): resume ${metrics[`${kind}_resume_s`]} s, ${metrics[`${kind}_resume_bytes`]} B, ` +
        `stored ${metrics[`${kind}_resume_stored`]}/${QUEUED}; new stream + MAM ${metrics[`${kind}_login_mam_s`]} s, ` +
        `${metrics[`${kind}_login_mam_bytes`]} B, stored ${metrics[`${kind}_login_mam_stored`]}/${QUEUED}; ` +
        `${QUEUED_LARGE} via MAM ${metrics[`${kind}_login_mam_100_s`]} s, stored ${metrics[`${kind}_login_mam_100_stored`]}; ` +
        `resume wire/stanza bytes ${ratios[`${kind}_resume_wire_vs_stanza_bytes`]}`,
    );
  }
  return { metrics, ratios };
}

async function oneRound(server: XmppTestServer, alice: string, quick: boolean): Promise<Figures> {
  const dir = mkdtempSync(join(tmpdir(), "lichen-slowlink-bench-"));
  let down: Buffer[] = [];
  const link = await startFlakyLink({
    port: server.c2sPort,
    bytesPerSecond: BYTES_PER_SECOND,
    delayMs: DELAY_MS,
    tap: (dir, chunk) => {
      if (dir === "down") down.push(chunk);
    },
  });
  const store = openStore({ path: join(dir, "lichen.db"), role: "main" });
  const nseStore = openStore({ path: join(dir, "lichen.db"), role: "nse" });
  const bob = await startTestPeer(server.c2sPort, "bob", "bobpw");
  const carol = await startTestPeer(server.c2sPort, "carol", "carolpw");
  try {
    ensureAccount(store, { id: alice, jid: `${alice}@localhost`, resource: "phone" });
    const config = {
      accountId: alice,
      service: `xmpp://127.0.0.1:${link.port}`,
      domain: "localhost",
      username: alice,
      password: `${alice}pw`,
      resource: "phone",
    };
    const app = new AppController(store, config, { reconnect: false });
    await app.foreground();
    await app.close(); // background: TCP dropped, the stream kept for resumption

    const push = async (tag: string, n: number, measureStanzas: boolean) => {
      const prefix = `${tag}-${randomUUID().slice(0, 8)}-`;
      const stanzaBytes = await sendQueued(bob, carol, alice, prefix, n, measureStanzas);
      link.resetBytes();
      down = [];
      const t0 = performance.now();
      const r = await handlePush({ store: nseStore, session: config, lingerMs: 0 });
      const s = (performance.now() - t0) / 1000;
      const bytes = link.bytes.up + link.bytes.down;
      return {
        s,
        bytes,
        stored: storedWith(nseStore, alice, prefix),
        stanzaBytes,
        wireStanzaBytes: messageBytesWith(Buffer.concat(down).toString("utf8"), prefix),
        outcome: r.outcome,
      };
    };

    const resume = await push("resume", QUEUED, true);
    unresumable(store, alice);
    const login = await push("mam", QUEUED, false);
    unresumable(store, alice);
    const large = quick ? login : await push("mam100", QUEUED_LARGE, false);
    return {
      resume_s: resume.s,
      resume_bytes: resume.bytes,
      resume_stored: resume.stored,
      stanza_bytes: resume.wireStanzaBytes,
      live_stanza_bytes: resume.stanzaBytes,
      login_mam_s: login.s,
      login_mam_bytes: login.bytes,
      login_mam_stored: login.stored,
      login_mam_100_s: large.s,
      login_mam_100_stored: large.stored,
    };
  } finally {
    await bob.stop();
    await carol.stop();
    nseStore.close();
    store.close();
    await link.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * bob sends `n` chat messages to alice and the same to carol (online, live); returns the bytes of
 * carol's copies as the server delivered them (the messages' own size on alice's wire).
 */
async function sendQueued(
  bob: TestPeer,
  carol: TestPeer,
  alice: string,
  prefix: string,
  n: number,
  measure: boolean,
): Promise<number> {
  const before = carol.received.length;
  for (let i = 0; i < n; i++) {
    const head = `${prefix}${i} `;
    const body = head + "x".repeat(Math.max(0, BODY_BYTES - head.length));
    for (const to of measure ? [`${alice}@localhost`, "carol@localhost"] : [`${alice}@localhost`]) {
      await bob.xmpp.send(
        xml(
          "message",
          { to, type: "chat", id: randomUUID() },
          xml("body", {}, body),
          xml("origin-id", { xmlns: "urn:xmpp:sid:0", id: randomUUID() }),
          xml("request", { xmlns: "urn:xmpp:receipts" }),
        ),
      );
    }
  }
  await bob.barrier();
  if (!measure) return 0;
  const deadline = Date.now() + 30_000;
  while (carol.received.length - before < n) {
    if (Date.now() > deadline) throw new Error(`carol got ${carol.received.length - before}/${n}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return carol.received
    .slice(before)
    .reduce((sum, m) => sum + Buffer.byteLength(String(m.stanza)), 0);
}

/** Bytes of the <message/> stanzas carrying `prefix` in a received transcript (UTF-8). */
function messageBytesWith(transcript: string, prefix: string): number {
  let sum = 0;
  for (const m of transcript.matchAll(/<message[\s>][\s\S]*?<\/message>/g))
    if (m[0].includes(prefix)) sum += Buffer.byteLength(m[0]);
  return sum;
}

function storedWith(store: Store, alice: string, prefix: string): number {
  return (
    store.sqlite
      .prepare("SELECT count(*) AS n FROM messages WHERE account_id = ? AND body LIKE ?")
      .get(alice, `${prefix}%`) as { n: number }
  ).n;
}

/** Forget the stream id, as when the server's resumption timeout has passed: next is a new stream. */
function unresumable(store: Store, alice: string): void {
  store.write((tx) => {
    const st = loadAccountState(tx, alice);
    st.sm.streamId = null;
    saveAccountState(tx, alice, st);
  });
}
