import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ApnsCertificateAuthority,
  generateFcmServiceAccount,
  startFcmSimulator,
} from "@lichen/push-simulators";
import Database from "better-sqlite3";
import { ManualClock } from "../src/clock.js";
import { pushIq } from "../src/testing/component-server.js";
import { startApns, type ApnsHarness } from "./helpers/apns.js";
import { outcome } from "./helpers/e2e.js";
import { startNode, untilAsync, until, type TestNode } from "./helpers/nodes.js";

const tok = (c: string) => c.repeat(64).slice(0, 64);

describe("push pipeline against the APNs simulator", { timeout: 120_000 }, () => {
  let apns: ApnsHarness;
  beforeAll(async () => {
    apns = await startApns();
  });
  afterAll(async () => {
    await apns?.stop();
  });

  it("burst of 10 → 1 sent now, 1 sent 20 s later, 8 dropped; every reply is a result", async () => {
    const clock = new ManualClock(Date.now());
    const node = await startNode(apns.createSender, { apps: { default: apns.app(1) } }, { clock });
    try {
      const token = tok("a1");
      for (let i = 0; i < 10; i++) node.xmpp.send(pushIq({ id: `b${i}`, token }));
      const replies = await Promise.all(
        Array.from({ length: 10 }, (_, i) => node.xmpp.waitFor(`b${i}`)),
      );
      expect(replies.map((r) => r.type)).toEqual(Array(10).fill("result"));
      expect(apns.deliveries(token)).toHaveLength(1);
      clock.advance(19_999);
      expect(apns.deliveries(token)).toHaveLength(1);
      clock.advance(1);
      await apns.waitForDeliveries(token, 2);
      await untilAsync(
        async () => (await outcome(node.server, "queued_sent")) === 1,
        "queued push accounted",
      );
      clock.advance(120_000);
      const counts = await node.server.metrics.requests.get();
      const by = Object.fromEntries(counts.values.map((v) => [v.labels.outcome, v.value]));
      expect(by).toEqual({ sent: 1, queued: 1, dropped: 8, queued_sent: 1 });
      expect(apns.deliveries(token)).toHaveLength(2);
    } finally {
      await node.stop();
    }
  });

  it("a burst in one socket write for a token the provider calls dead: one provider request, the queued push is dropped, strikes stay 1", async () => {
    const clock = new ManualClock(Date.now());
    const node = await startNode(apns.createSender, { apps: { default: apns.app(1) } }, { clock });
    try {
      const dead = tok("f6");
      apns.script(dead, "unregistered");
      // all five IQs in one write: the first goes to APNs, the second is queued while it is in flight
      expect(
        node.xmpp.send(
          Array.from({ length: 5 }, (_, i) => pushIq({ id: `q${i}`, token: dead })).join(""),
        ),
      ).toBe(true);
      const first = await node.xmpp.waitFor("q0");
      expect(first.raw).toContain("reports this token invalid");
      for (let i = 1; i < 5; i++) expect((await node.xmpp.waitFor(`q${i}`)).type).toBe("result");
      expect(node.server.service.limiter.queuedCount).toBe(1);
      clock.advance(20_000);
      await untilAsync(
        async () => (await outcome(node.server, "queued_token_blacklisted")) === 1,
        "queued push dropped as blacklisted",
      );
      expect(apns.deliveries(dead, { includeRejected: true })).toHaveLength(1);
      expect(node.server.tokens.get(node.server.hasher.hash(dead))?.strikes).toBe(1);

      // a domain blocked while a push waits in the queue: dropped as well
      const good = tok("a7");
      node.xmpp.send(
        pushIq({ id: "g0", token: good, from: "d.example" }) +
          pushIq({ id: "g1", token: good, from: "d.example" }),
      );
      expect((await node.xmpp.waitFor("g1")).type).toBe("result");
      await apns.waitForDeliveries(good, 1);
      node.server.domains.merge("d.example", clock.now() + 3_600_000, "local");
      clock.advance(20_000);
      await untilAsync(
        async () => (await outcome(node.server, "queued_domain_blacklisted")) === 1,
        "queued push dropped for the blocked domain",
      );
      expect(apns.deliveries(good)).toHaveLength(1);
    } finally {
      await node.stop();
    }
  });

  it("a queued or kept push re-checks a domain restricted while it waited: a healthy token's goes out, an unknown token's needs the new-token budget like a new push", async () => {
    const clock = new ManualClock(Date.now());
    const node = await startNode(
      apns.createSender,
      {
        apps: { default: apns.app(3) },
        retry: { attempts: 1, laterInitialDelay: "30s" },
        // restricted at 2 bad tokens; one unknown token admitted, the next not for 100 minutes
        blacklist: { domain: { threshold: 2, newTokensPerMinute: 0.01 } },
      },
      { clock },
    );
    const requests = (t: string) => apns.deliveries(t, { includeRejected: true }).length;
    const from = "r.example";
    try {
      // a healthy token (delivered) with a push queued by the rate limiter (due in 20 s)
      const healthy = tok("e7");
      node.xmpp.send(
        pushIq({ id: "h0", token: healthy, from }) + pushIq({ id: "h1", token: healthy, from }),
      );
      expect((await node.xmpp.waitFor("h1")).type).toBe("result");
      await apns.waitForDeliveries(healthy, 1);
      // an unknown token whose first push failed transiently: kept for a retry in 30 s
      const unknown = tok("e8");
      apns.sim.script(unknown, ["500"]);
      node.xmpp.send(pushIq({ id: "u0", token: unknown, from }));
      expect((await node.xmpp.waitFor("u0")).raw).toContain("<error type='wait'>");
      expect(node.server.service.limiter.queuedCount).toBe(2);
      // meanwhile the domain becomes restricted and spends its new-token budget
      for (const [i, t] of [tok("e9"), tok("ea")].entries()) {
        apns.script(t, "unregistered");
        node.xmpp.send(pushIq({ id: `d${i}`, token: t, from }));
        expect((await node.xmpp.waitFor(`d${i}`)).raw).toContain("reports this token invalid");
      }
      expect(node.server.domains.state(from)).toBe("restricted");
      node.xmpp.send(pushIq({ id: "n0", token: tok("eb"), from }));
      expect((await node.xmpp.waitFor("n0")).type).toBe("result");
      node.xmpp.send(pushIq({ id: "n1", token: tok("ec"), from }));
      expect((await node.xmpp.waitFor("n1")).raw).toContain("new tokens are rate-limited");
      // the healthy token's queued push is served
      clock.advance(20_000);
      await apns.waitForDeliveries(healthy, 2);
      // the unknown token's kept push meets the restriction: no budget left, dropped unsent
      clock.advance(10_000);
      await untilAsync(
        async () =>
          (await outcome(node.server, "queued_domain_restricted")) > 0 || requests(unknown) > 1,
        "the kept push fell due",
      );
      expect(await outcome(node.server, "queued_domain_restricted")).toBe(1);
      expect(requests(unknown)).toBe(1);
      expect(node.server.service.limiter.queuedCount).toBe(0);
    } finally {
      await node.stop();
    }
  });

  it("an APNs token in upper and lower case is one entry for the rate limiter and the token blacklist", async () => {
    const clock = new ManualClock(Date.now());
    const node = await startNode(apns.createSender, { apps: { default: apns.app(1) } }, { clock });
    try {
      const lower = tok("d4");
      const upper = lower.toUpperCase();
      node.xmpp.send(pushIq({ id: "c1", token: lower }));
      expect((await node.xmpp.waitFor("c1")).type).toBe("result");
      node.xmpp.send(pushIq({ id: "c2", token: upper }));
      expect((await node.xmpp.waitFor("c2")).type).toBe("result");
      const counts = await node.server.metrics.requests.get();
      const by = Object.fromEntries(counts.values.map((v) => [v.labels.outcome, v.value]));
      expect(by).toEqual({ sent: 1, queued: 1 });
      expect(node.server.service.limiter.size).toBe(1);

      // blacklisted under one spelling → refused under the other, without provider traffic
      const dead = tok("e5").toUpperCase();
      apns.script(dead, "unregistered");
      node.xmpp.send(pushIq({ id: "d1", token: dead }));
      expect((await node.xmpp.waitFor("d1")).raw).toContain("reports this token invalid");
      node.xmpp.send(pushIq({ id: "d2", token: dead.toLowerCase() }));
      expect((await node.xmpp.waitFor("d2")).raw).toContain("token is blacklisted");
      expect(apns.deliveries(dead.toLowerCase(), { includeRejected: true })).toHaveLength(0);
      expect(apns.deliveries(dead, { includeRejected: true })).toHaveLength(1);
    } finally {
      await node.stop();
    }
  });

  it("invalid token → cancel, blacklisted, never sent again; a domain with too many: healthy tokens served, unknown ones rate-limited, full block → wait; operator unblock; persisted", async () => {
    const clock = new ManualClock(Date.now());
    const node = await startNode(
      apns.createSender,
      {
        apps: { default: apns.app(2) },
        blacklist: { domain: { threshold: 3, blockFactor: 2, newTokensPerMinute: 2 } },
      },
      { clock },
    );
    let restarted: TestNode | undefined;
    const reply = async (id: string, token: string, from = "spammy.example") => {
      node.xmpp.send(pushIq({ id, token, from }));
      return (await node.xmpp.waitFor(id)).raw;
    };
    try {
      // a healthy user of the domain: delivered before the trouble starts
      const healthy = tok("c1");
      expect(await reply("h0", healthy)).toContain("type='result'");
      const bad = ["b1", "b2", "b3"].map(tok);
      apns.script(bad[0]!, "unregistered");
      apns.script(bad[1]!, "bad-device-token");
      apns.script(bad[2]!, "device-token-not-for-topic");
      for (const [i, t] of bad.entries()) {
        const r = await reply(`x${i}`, t);
        expect(r, r).toContain("<error type='cancel'><item-not-found");
        expect(r).toContain("reports this token invalid");
      }
      expect(await reply("again", bad[0]!, "other.example")).toContain("token is blacklisted");
      expect(apns.deliveries(bad[0]!, { includeRejected: true })).toHaveLength(1);
      expect(node.server.domains.state("spammy.example")).toBe("restricted");
      // restricted: the healthy token still gets its push (after its rate-limit window) ...
      clock.advance(20_000);
      expect(await reply("h1", healthy)).toContain("type='result'");
      expect(apns.deliveries(healthy)).toHaveLength(2);
      // ... unknown tokens get the domain's new-token budget (2 per minute), then wait
      expect(await reply("n1", tok("71"))).toContain("type='result'");
      expect(await reply("n2", tok("72"))).toContain("type='result'");
      const limited = await reply("n3", tok("73"));
      expect(limited).toContain("<error type='wait'><resource-constraint");
      expect(limited).toContain("new tokens are rate-limited");
      expect(apns.deliveries(tok("73"), { includeRejected: true })).toHaveLength(0);
      clock.advance(30_000); // one token's worth of budget back
      expect(await reply("n4", tok("73"))).toContain("type='result'");
      // other domains are not affected
      expect(await reply("ok", tok("74"), "fine.example")).toContain("type='result'");
      // 6 bad tokens (blockFactor 2 × 3): full block — wait for everyone, no provider traffic
      const more = ["75", "76", "77"].map(tok);
      for (const t of more) apns.script(t, "unregistered");
      for (const [i, t] of more.entries()) {
        clock.advance(30_000); // within the new-token budget: these do reach the provider
        expect(await reply(`y${i}`, t)).toContain("<error type='cancel'>");
      }
      expect(node.server.domains.state("spammy.example")).toBe("blocked");
      clock.advance(20_000);
      const blocked = await reply("h2", healthy);
      expect(blocked).toContain("<error type='wait'><policy-violation");
      expect(blocked).toContain("server domain is blocked");
      expect(apns.deliveries(healthy)).toHaveLength(2);
      // a token known dead still gets cancel (its registration should go)
      expect(await reply("dead", bad[0]!)).toContain("<error type='cancel'>");
      // the operator sees it and lifts it
      const base = `http://127.0.0.1:${node.server.httpPort}/admin`;
      const token = readFileSync(join(node.dataDir, "admin-token"), "utf8").trim();
      const auth = { authorization: `Bearer ${token}` };
      expect((await fetch(`${base}/domains`)).status).toBe(401);
      const listed = (await (await fetch(`${base}/domains`, { headers: auth })).json()) as {
        domains: { domain: string; state: string; badTokens: number }[];
      };
      expect(listed.domains).toEqual([
        expect.objectContaining({ domain: "spammy.example", state: "blocked", badTokens: 6 }),
      ]);
      // persisted: a restart on the same data dir keeps the block and the healthy token
      const dataDir = node.dataDir;
      await node.stop();
      restarted = await startNode(
        apns.createSender,
        { apps: { default: apns.app(3) } },
        { dataDir, clock },
      );
      const hHash = restarted.server.hasher.hash(healthy, true);
      expect(restarted.server.deliveries.isHealthy(hHash, "spammy.example")).toBe(true);
      restarted.xmpp.send(pushIq({ id: "r1", token: tok("c2"), from: "spammy.example" }));
      expect((await restarted.xmpp.waitFor("r1")).raw).toContain("server domain is blocked");
      restarted.xmpp.send(pushIq({ id: "r2", token: bad[1]!, from: "fine.example" }));
      expect((await restarted.xmpp.waitFor("r2")).raw).toContain("token is blacklisted");
      const rBase = `http://127.0.0.1:${restarted.server.httpPort}/admin`;
      const unblocked = await fetch(`${rBase}/domains/spammy.example/unblock`, {
        method: "POST",
        headers: auth,
      });
      expect(await unblocked.json()).toMatchObject({ domain: "spammy.example", state: "ok" });
      restarted.xmpp.send(pushIq({ id: "r3", token: healthy, from: "spammy.example" }));
      expect((await restarted.xmpp.waitFor("r3")).type).toBe("result");
      await apns.waitForDeliveries(healthy, 3);
    } finally {
      await restarted?.stop();
      await node.stop().catch(() => undefined);
    }
  });

  it("per-app settings: additionalData beside aps, the app's own rate-limit window and token block; another app keeps the global values", async () => {
    const clock = new ManualClock(Date.now());
    const base = apns.app(3);
    if (base.type !== "apns") throw new Error("expected an APNs app");
    const node = await startNode(
      apns.createSender,
      {
        apps: {
          ios: {
            ...base,
            additionalData: { "lichen-marker": "v1", flags: [1, 2] },
            rateLimit: { window: "5s", hardLimit: "30s" },
            blacklist: { firstBlock: "1h" },
          },
          plain: apns.app(4),
        },
      },
      { clock },
    );
    try {
      const send = async (id: string, token: string, app: string) => {
        node.xmpp.send(pushIq({ id, token, app }));
        return node.xmpp.waitFor(id);
      };
      const a = tok("5a");
      expect((await send("a1", a, "ios")).type).toBe("result");
      const [d] = await apns.waitForDeliveries(a, 1);
      expect(JSON.parse(d!.payload)).toMatchObject({
        "lichen-marker": "v1",
        flags: [1, 2],
        aps: { "mutable-content": 1 },
      });
      const hash = (t: string) => node.server.hasher.hash(t, true);
      expect((await send("a2", a, "ios")).type).toBe("result");
      expect(node.server.service.limiter.state(hash(a)).queuedDue).toBe(clock.now() + 5_000);
      clock.advance(5_000);
      await apns.waitForDeliveries(a, 2);

      const b = tok("5b");
      expect((await send("b1", b, "plain")).type).toBe("result");
      expect((await send("b2", b, "plain")).type).toBe("result");
      expect(node.server.service.limiter.state(hash(b)).queuedDue).toBe(clock.now() + 20_000);
      expect(JSON.parse((await apns.waitForDeliveries(b, 1))[0]!.payload)).toEqual({
        aps: expect.any(Object),
      });

      const deadIos = tok("5c");
      const deadPlain = tok("5d");
      apns.script(deadIos, "unregistered");
      apns.script(deadPlain, "unregistered");
      expect((await send("x1", deadIos, "ios")).raw).toContain("reports this token invalid");
      expect((await send("x2", deadPlain, "plain")).raw).toContain("reports this token invalid");
      expect(node.server.tokens.get(hash(deadIos))?.until).toBe(clock.now() + 3_600_000);
      expect(node.server.tokens.get(hash(deadPlain))?.until).toBe(clock.now() + 86_400_000);

      const limited = tok("5e");
      apns.script(limited, "too-many-requests");
      expect((await send("l1", limited, "ios")).raw).toContain("rate-limits this token");
      expect(node.server.service.limiter.state(hash(limited)).nextAllowed).toBe(
        clock.now() + 30_000,
      );
    } finally {
      await node.stop();
    }
  });

  it("an APNs app with a push certificate: its expiry is exported for the expiring-certificate alert", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lichen-push-cert-"));
    const certificateFile = join(dir, "app.p12");
    writeFileSync(certificateFile, new ApnsCertificateAuthority().issue({ topic: "im.c" }).p12);
    const node = await startNode(apns.createSender, {
      apps: {
        ios: { type: "apns", topic: "im.c", certificateFile, endpoint: "https://127.0.0.1:9" },
      },
    });
    try {
      const m = await node.server.metrics.certificateExpiry.get();
      expect(m.values).toHaveLength(1);
      expect(m.values[0]!.labels).toEqual({ app: "ios" });
      // issued for 30 days (openssl rounds to the second)
      expect(Math.abs(m.values[0]!.value - (Date.now() / 1000 + 30 * 86_400))).toBeLessThan(3600);
    } finally {
      await node.stop();
    }
  });

  it("provider 429 → wait error and the token is held back by the hard limit (600 s)", async () => {
    const clock = new ManualClock(Date.now());
    const node = await startNode(apns.createSender, { apps: { default: apns.app(4) } }, { clock });
    try {
      const limited = tok("d1");
      apns.script(limited, "too-many-requests");
      node.xmpp.send(pushIq({ id: "l1", token: limited }));
      const r = await node.xmpp.waitFor("l1");
      expect(r.raw).toContain("<error type='wait'><resource-constraint");
      node.xmpp.send(pushIq({ id: "l2", token: limited }));
      expect((await node.xmpp.waitFor("l2")).type).toBe("result"); // queued behind the hard limit
      clock.advance(599_000);
      expect(apns.deliveries(limited, { includeRejected: true })).toHaveLength(1);
      clock.advance(1_000);
      await apns.waitForDeliveries(limited, 2, { includeRejected: true });
    } finally {
      await node.stop();
    }
  });

  it("provider 5xx → bounded retries with back-off, then a wait error", async () => {
    const clock = new ManualClock(Date.now());
    const node = await startNode(
      apns.createSender,
      { apps: { default: apns.app(5) }, retry: { attempts: 3, initialDelay: "1s" } },
      { clock },
    );
    try {
      const failing = tok("e1");
      apns.script(failing, "internal-server-error");
      const timers = clock.pendingTimers;
      node.xmpp.send(pushIq({ id: "f1", token: failing }));
      await apns.waitForDeliveries(failing, 1, { includeRejected: true });
      await until(() => clock.pendingTimers === timers + 1, "first back-off timer");
      clock.advance(1000);
      await apns.waitForDeliveries(failing, 2, { includeRejected: true });
      await until(() => clock.pendingTimers === timers + 1, "second back-off timer");
      clock.advance(2000);
      const f = await node.xmpp.waitFor("f1");
      expect(f.raw).toContain("<error type='wait'><internal-server-error");
      expect(apns.deliveries(failing, { includeRejected: true })).toHaveLength(3);
    } finally {
      await node.stop();
    }
  });

  it("a push lost to transient failures is kept and retried with back-off until delivered, and given up at its expiry", async () => {
    const clock = new ManualClock(Date.now());
    const node = await startNode(
      apns.createSender,
      {
        apps: { default: apns.app(6) },
        retry: { attempts: 1, laterInitialDelay: "30s", laterMaxDelay: "2m", keepFor: "5m" },
      },
      { clock },
    );
    const queued = () => node.server.service.limiter.queuedCount;
    const requests = (t: string) => apns.deliveries(t, { includeRejected: true }).length;
    try {
      const flaky = tok("91");
      apns.sim.script(flaky, ["500", "503"]);
      node.xmpp.send(pushIq({ id: "t1", token: flaky }));
      // the server hears wait at once (it does not retry itself); the appserver keeps the push
      expect((await node.xmpp.waitFor("t1")).raw).toContain("<error type='wait'>");
      expect(requests(flaky)).toBe(1);
      expect(queued()).toBe(1);
      clock.advance(29_999);
      expect(requests(flaky)).toBe(1);
      clock.advance(1);
      await until(() => requests(flaky) === 2 && queued() === 1, "first later retry (503), kept");
      clock.advance(60_000); // back-off doubled
      await apns.waitForDeliveries(flaky, 1);
      await until(() => queued() === 0, "nothing kept after the delivery");
      // another token keeps failing: retried at 30 s, 90 s, 210 s; the next (330 s) is past 5 min
      const dead = tok("92");
      apns.script(dead, "internal-server-error");
      node.xmpp.send(pushIq({ id: "t2", token: dead }));
      await node.xmpp.waitFor("t2");
      for (const [step, n] of [
        [30_000, 2],
        [60_000, 3],
        [120_000, 4],
      ] as const) {
        clock.advance(step);
        await until(() => requests(dead) === n && (n === 4 || queued() === 1), `retry ${n - 1}`);
      }
      await untilAsync(
        async () => (await outcome(node.server, "retry_expired")) === 1,
        "given up at its expiry",
      );
      expect(queued()).toBe(0);
      clock.advance(600_000);
      expect(requests(dead)).toBe(4);
    } finally {
      await node.stop();
    }
  });

  it("a failing provider is not hammered: after N transient failures sends pause (a queued push falling due meanwhile waits too), then resume", async () => {
    const clock = new ManualClock(Date.now());
    const node = await startNode(
      apns.createSender,
      {
        apps: { default: apns.app(0) },
        retry: { attempts: 1, circuitThreshold: 3, circuitPause: "10s" },
        rateLimit: { window: "5s" },
      },
      { clock },
    );
    try {
      // a push queued by the rate limiter, due in 5 s: the circuit will be open then
      const queued = tok("cb");
      node.xmpp.send(pushIq({ id: "q0", token: queued }) + pushIq({ id: "q1", token: queued }));
      expect((await node.xmpp.waitFor("q1")).type).toBe("result");
      await apns.waitForDeliveries(queued, 1);
      const failing = ["c7", "c8", "c9"].map(tok);
      for (const [i, t] of failing.entries()) {
        apns.script(t, "internal-server-error");
        node.xmpp.send(pushIq({ id: `c${i}`, token: t }));
        expect((await node.xmpp.waitFor(`c${i}`)).raw).toContain("push provider unavailable");
      }
      const healthy = tok("ca");
      node.xmpp.send(pushIq({ id: "h1", token: healthy }));
      expect((await node.xmpp.waitFor("h1")).raw).toContain("sends paused");
      expect(apns.deliveries(healthy, { includeRejected: true })).toHaveLength(0);
      clock.advance(5_000);
      await untilAsync(
        async () => (await outcome(node.server, "queued_provider_paused")) === 1,
        "the queued push re-checked the open circuit",
      );
      expect(apns.deliveries(queued, { includeRejected: true })).toHaveLength(1);
      // h1 and the queued push were kept, not lost: they go out when the pause ends
      clock.advance(5_000);
      await apns.waitForDeliveries(healthy, 1);
      await apns.waitForDeliveries(queued, 2);
      clock.advance(20_000);
      node.xmpp.send(pushIq({ id: "h2", token: healthy }));
      expect((await node.xmpp.waitFor("h2")).type).toBe("result");
      await apns.waitForDeliveries(healthy, 2);
    } finally {
      await node.stop();
    }
  });

  it("/healthz reports each app's provider state; an app the provider refuses (403) fails the check", async () => {
    // the same key under a key id the simulator does not know: 403 InvalidProviderToken
    const broken = { ...apns.app(7) };
    if (broken.type === "apns") broken.keyId = "NOSUCHKEY0";
    const node = await startNode(apns.createSender, { apps: { good: apns.app(7), broken } });
    try {
      const health = async () => {
        const r = await fetch(`http://127.0.0.1:${node.server.httpPort}/healthz`);
        return {
          status: r.status,
          body: (await r.json()) as {
            apps: Record<string, { state: string; lastError?: { reason: string } }>;
          },
        };
      };
      const first = await health();
      expect(first.status).toBe(200);
      expect(first.body.apps).toEqual({ good: { state: "unknown" }, broken: { state: "unknown" } });
      node.xmpp.send(pushIq({ id: "g1", token: tok("b7"), app: "good" }));
      expect((await node.xmpp.waitFor("g1")).type).toBe("result");
      node.xmpp.send(pushIq({ id: "k1", token: tok("b8"), app: "broken" }));
      expect((await node.xmpp.waitFor("k1")).raw).toContain("<error type='wait'>");
      const after = await health();
      expect(after.status).toBe(503);
      expect(after.body.apps.good!.state).toBe("ok");
      expect(after.body.apps.broken!.state).toBe("misconfigured");
      expect(after.body.apps.broken!.lastError!.reason).toMatch(/403/);
    } finally {
      await node.stop();
    }
  });

  it("graceful shutdown persists the queued push (sealed), restart sends it", async () => {
    const node = await startNode(apns.createSender, { apps: { default: apns.app(6) } });
    const token = tok("f1");
    node.xmpp.send(pushIq({ id: "q1", token }));
    node.xmpp.send(pushIq({ id: "q2", token }));
    await node.xmpp.waitFor("q2");
    expect(node.server.service.limiter.queuedCount).toBe(1);
    const dataDir = node.dataDir;
    await node.stop();
    // persisted, but never as the raw token
    const files = readdirSync(dataDir).map((f) =>
      readFileSync(join(dataDir, f)).toString("latin1"),
    );
    expect(files.some((f) => f.includes(node.server.hasher.hash(token)))).toBe(true);
    expect(files.some((f) => f.includes(token))).toBe(false);
    const clock = new ManualClock(Date.now());
    const restarted = await startNode(
      apns.createSender,
      { apps: { default: apns.app(7) } },
      { dataDir, clock },
    );
    try {
      expect(restarted.server.service.limiter.queuedCount).toBe(1);
      clock.advance(20_000); // restored with its original due time (≤ 20 s after the first push)
      await apns.waitForDeliveries(token, 2);
    } finally {
      await restarted.stop();
    }
  });

  it("a kept push survives a graceful restart: persisted sealed (no raw token, JID or body on disk) with its retries and expiry, then delivered — or given up at its original expiry", async () => {
    const clock = new ManualClock(Date.now());
    const t0 = clock.now();
    const retry = { attempts: 1, laterInitialDelay: "30s", laterMaxDelay: "2m", keepFor: "5m" };
    const node = await startNode(
      apns.createSender,
      { apps: { default: apns.app(4) }, retry },
      { clock },
    );
    const requests = (t: string) => apns.deliveries(t, { includeRejected: true }).length;
    const flaky = tok("c3"); // fails 3 times, then delivered
    const failing = tok("c4"); // fails every time
    apns.sim.script(flaky, ["500", "503", "502"]);
    apns.script(failing, "internal-server-error");
    const sender = "juliet@capulet.example/balcony";
    const body = "wherefore art thou";
    const from = "romeo@kept.example/phone";
    for (const [id, token] of [
      ["k1", flaky],
      ["k2", failing],
    ] as const) {
      node.xmpp.send(
        pushIq({ id, token, from, body }).replace(
          "</x></notification>",
          `<field var='last-message-sender'><value>${sender}</value></field></x></notification>`,
        ),
      );
      expect((await node.xmpp.waitFor(id)).raw).toContain("<error type='wait'>");
    }
    // first later retry at 30 s fails too: kept again, next due at 90 s (back-off doubled)
    clock.advance(30_000);
    await until(
      () => requests(flaky) === 2 && requests(failing) === 2,
      "first later retries answered",
    );
    const hash = (t: string) => node.server.hasher.hash(t, true);
    await until(
      () => node.server.service.limiter.state(hash(flaky)).queuedDue === t0 + 90_000,
      "flaky kept again",
    );
    await until(
      () => node.server.service.limiter.state(hash(failing)).queuedDue === t0 + 90_000,
      "failing kept again",
    );
    const dataDir = node.dataDir;
    await node.stop();

    // on disk: both pushes with their retries and expiry, the token sealed; nothing readable
    const db = new Database(join(dataDir, "lichen-push.sqlite"), { readonly: true });
    const rows = db
      .prepare(
        "SELECT token_hash, sealed_token, domain, due, retries, expires_at FROM queued_pushes",
      )
      .all() as {
      token_hash: string;
      sealed_token: string;
      domain: string;
      due: number;
      retries: number;
      expires_at: number;
    }[];
    db.close();
    expect(
      rows.map((r) => ({ ...r, sealed_token: node.server.hasher.unseal(r.sealed_token) })),
    ).toEqual(
      expect.arrayContaining(
        [flaky, failing].map((t) => ({
          token_hash: hash(t),
          sealed_token: t,
          domain: "kept.example",
          due: t0 + 90_000,
          retries: 2,
          expires_at: t0 + 300_000,
        })),
      ),
    );
    expect(rows).toHaveLength(2);
    const written = readdirSync(dataDir)
      .map((f) => readFileSync(join(dataDir, f)).toString("latin1"))
      .join("\n");
    expect(written).toContain(hash(flaky));
    for (const secret of [flaky, flaky.toUpperCase(), failing, "juliet", "romeo", "capulet", body])
      expect(written).not.toContain(secret);

    const restarted = await startNode(
      apns.createSender,
      { apps: { default: apns.app(5) }, retry },
      { dataDir, clock },
    );
    try {
      const entries = [...restarted.server.service.limiter.queuedEntries()].map((e) => ({
        key: e.key,
        due: e.due,
        retries: e.item.retries,
        expiresAt: e.item.expiresAt,
      }));
      expect(entries).toEqual(
        expect.arrayContaining(
          [flaky, failing].map((t) => ({
            key: hash(t),
            due: t0 + 90_000,
            retries: 2,
            expiresAt: t0 + 300_000,
          })),
        ),
      );
      // at 90 s: both fail again; the back-off continues from the restored count (2 min, not 30 s)
      clock.advance(60_000);
      await until(() => requests(flaky) === 3 && requests(failing) === 3, "retries after restart");
      for (const t of [flaky, failing])
        await until(
          () => restarted.server.service.limiter.state(hash(t)).queuedDue === t0 + 210_000,
          "kept with the restored retry count",
        );
      // at 210 s: flaky is delivered; failing fails, and its next retry (330 s) is past its expiry
      clock.advance(120_000);
      await apns.waitForDeliveries(flaky, 1);
      await untilAsync(
        async () => (await outcome(restarted.server, "retry_expired")) === 1,
        "failing given up at its original expiry",
      );
      expect(requests(failing)).toBe(4);
      await until(() => restarted.server.service.limiter.queuedCount === 0, "nothing kept");
      clock.advance(600_000);
      expect(requests(failing)).toBe(4);
      expect(requests(flaky)).toBe(4);
    } finally {
      await restarted.stop();
    }
  });
});

describe(
  "app selection by the pushModule publish-option (fpush compatible)",
  { timeout: 120_000 },
  () => {
    it("pushModule picks the FCM app, no option → default APNs app, unknown module → wait", async () => {
      const apns = await startApns();
      const sa = generateFcmServiceAccount();
      const fcm = await startFcmSimulator({
        projectId: sa.projectId,
        clientEmail: sa.clientEmail,
        serviceAccountPublicKey: sa.publicKeyPem,
      });
      const node = await startNode(apns.createSender, {
        apps: {
          ios: apns.app(0),
          android: {
            type: "fcm",
            projectId: sa.projectId,
            clientEmail: sa.clientEmail,
            privateKeyPem: sa.privateKeyPem,
            tokenUri: fcm.tokenUri,
            endpoint: fcm.url,
          },
        },
      });
      try {
        const androidToken = `fcm:${"A1b2_c3-".repeat(20)}`;
        node.xmpp.send(pushIq({ id: "f1", token: androidToken, app: "android" }));
        expect((await node.xmpp.waitFor("f1")).type).toBe("result");
        await fcm.waitForDeliveries(1, 30_000, androidToken);
        // FCM tokens are case-sensitive: another spelling is another device, not rate-limited
        const swapped = androidToken.replace(/[a-z]/gi, (c) =>
          c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase(),
        );
        node.xmpp.send(pushIq({ id: "f2", token: swapped, app: "android" }));
        expect((await node.xmpp.waitFor("f2")).type).toBe("result");
        await fcm.waitForDeliveries(1, 30_000, swapped);
        expect(fcm.deliveriesFor(androidToken)).toHaveLength(1);
        const iosToken = tok("ee");
        node.xmpp.send(pushIq({ id: "i1", token: iosToken }));
        expect((await node.xmpp.waitFor("i1")).type).toBe("result");
        await apns.waitForDeliveries(iosToken, 1);
        expect(fcm.deliveriesFor(iosToken)).toHaveLength(0);
        node.xmpp.send(pushIq({ id: "u1", token: tok("ef"), app: "windows-phone" }));
        const r = await node.xmpp.waitFor("u1");
        expect(r.raw).toContain("<error type='wait'><item-not-found");
        expect(r.raw).toContain("unknown push module windows-phone");
      } finally {
        await node.stop();
        await fcm.stop();
        await apns.stop();
      }
    });
  },
);
