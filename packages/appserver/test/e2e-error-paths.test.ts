import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Client } from "@xmpp/client";
import { startEjabberd, startProsody, type XmppTestServer } from "@lichen/test-servers";
import { startApns, type ApnsHarness } from "./helpers/apns.js";
import {
  adminCall,
  attachAppServer,
  outcome,
  requestsHandled,
  type E2E,
  operatorSnippets,
} from "./helpers/e2e.js";
import { until, untilAsync } from "./helpers/nodes.js";
import { enablePush, hibernate, login, sendChat } from "./helpers/xmpp-client.js";

// Every error path through both real servers, asserting what the server did with the registration
// afterwards: a registration is alive when the server keeps sending push requests for it. ejabberd
// ends it on the first error that is not `wait`. Prosody (mod_cloud_notify) counts the errors that
// are not `wait` per registration, resets the count on any `result`, and ends the registration at
// push_max_errors (2 here): so on Prosody an error path is only proven `wait` when two of its error
// replies reach the server with no `result` between them, and a push after them still comes.
const SERVERS: [string, () => Promise<XmppTestServer>][] = [
  [
    "Prosody 0.12",
    () => startProsody({ pushMaxErrors: 2, pushConfig: operatorSnippets().prosodyConfig }),
  ],
  ["ejabberd 23.01", () => startEjabberd({ includeConfig: operatorSnippets().ejabberdInclude })],
];

const tok = (c: string) => c.repeat(64).slice(0, 64);

describe.each(SERVERS)("%s → lichen-push: error paths", { timeout: 300_000 }, (name, start) => {
  let xmpp: XmppTestServer;
  let apns: ApnsHarness;
  let apns2: ApnsHarness;
  let app: E2E;
  let bob: Client;
  let nextUser = 0;
  const USERS = 14;
  /** The user whose token (a6) the pushModule test delivers to: the domain test's healthy user. */
  let healthyJid = "";

  beforeAll(async () => {
    xmpp = await start();
    for (const u of ["bob", ...Array.from({ length: USERS }, (_, i) => `u${i}`)])
      await xmpp.registerUser(u, `${u}pw`);
    apns = await startApns();
    apns2 = await startApns();
    app = await attachAppServer(xmpp, apns, {
      apps: {
        default: apns.appConfig,
        second: apns2.appConfig,
        // no spacing and no hard limit: every push for a token reaches the provider, so each of a
        // token's provider errors is answered as an error (none is held back and answered result)
        unspaced: { ...apns.app(1), rateLimit: { window: 0, hardLimit: 0 } },
      },
      // short spacing, so that consecutive messages each reach the provider
      rateLimit: { window: "100ms", hardLimit: "600s" },
      // a kept push (transient failure) is retried 100 ms later
      retry: { attempts: 2, initialDelay: "50ms", maxDelay: "100ms", laterInitialDelay: "100ms" },
      // one new token per 100 minutes: the second unknown token stays refused however slow the run
      blacklist: { domain: { threshold: 2, blockFactor: 10, newTokensPerMinute: 0.01 } },
    });
    bob = await login(account("bob"), "desk");
  });

  afterAll(async () => {
    await bob?.stop().catch(() => undefined);
    await app?.stop();
    await apns?.stop();
    await apns2?.stop();
    await xmpp?.stop();
  });

  function account(username: string) {
    return { c2sPort: xmpp.c2sPort, domain: "localhost", username, password: `${username}pw` };
  }

  /** A fresh user enables push with `token` (and `pushModule`), then hibernates; returns the JID. */
  async function registered(token: string, pushModule?: string): Promise<string> {
    const user = `u${nextUser++}`;
    const c = await login(account(user));
    await enablePush(c, xmpp.componentDomain, token, pushModule);
    await hibernate(c);
    return `${user}@localhost`;
  }

  /** bob writes to `jid`; resolves once the appserver has answered the push request it causes. */
  async function pushVia(jid: string): Promise<void> {
    const before = await requestsHandled(app.server);
    await sendChat(bob, jid, "hi");
    await untilAsync(
      async () => (await requestsHandled(app.server)) > before,
      `${name} sent a push request for ${jid} (registration alive)`,
    );
  }

  async function pushesAllArrive(jid: string, n = 3): Promise<void> {
    for (let i = 0; i < n; i++) await pushVia(jid);
  }

  /** HTTP statuses the provider answered for `token`, in order. */
  const statuses = (token: string) =>
    apns.deliveries(token, { includeRejected: true }).map((d) => d.status);

  it("unknown pushModule (app renamed on the appserver) → wait; the server keeps the registration", async () => {
    const jid = await registered(tok("a1"), "renamed-app");
    await pushesAllArrive(jid);
    expect(await outcome(app.server, "unknown_app")).toBe(3);
    if (xmpp.kind === "ejabberd") {
      const log = await xmpp.logText();
      expect(log).not.toMatch(/disabling push/);
    }
  });

  it("malformed publish (pushModule the appserver cannot accept) → wait; registration kept", async () => {
    const jid = await registered(tok("a2"), "not a module!");
    await pushesAllArrive(jid);
    expect(await outcome(app.server, "bad_request")).toBe(3);
  });

  it("provider 429 → wait, then held back by the hard limit (no provider traffic); registration kept", async () => {
    const token = tok("a3");
    apns.script(token, "too-many-requests");
    const jid = await registered(token);
    await pushesAllArrive(jid);
    expect(await outcome(app.server, "provider_rate_limited")).toBe(1);
    expect(apns.deliveries(token, { includeRejected: true })).toHaveLength(1);
  });

  it("provider 5xx → retried, then wait; every later push still comes; registration kept", async () => {
    const token = tok("a4");
    // both attempts of the first push fail; then 200
    apns.sim.script(token, ["500-InternalServerError", "500-InternalServerError"]);
    const jid = await registered(token);
    await pushesAllArrive(jid);
    // (later pushes may fall into the token's spacing window and be queued: how many reach the
    // provider depends on timing; the first one does, with both attempts)
    expect(await outcome(app.server, "transient_error")).toBeGreaterThanOrEqual(1);
    expect(statuses(token).slice(0, 2)).toEqual([500, 500]);
    // the kept push goes out with a later retry; nothing of this token stays queued (a kept push
    // of a token never delivered would spend the domain's new-token budget in the domain test)
    await apns.waitForDeliveries(token, 1);
    const key = app.server.hasher.hash(token, true);
    await until(
      () => app.server.service.limiter.state(key).queuedDue === undefined,
      "nothing queued for the token",
    );
  });

  it("provider 429 on consecutive pushes past the limiter → wait each time; the server keeps the registration and a later push is delivered", async () => {
    const token = tok("d1");
    apns.sim.script(token, ["429-TooManyRequests", "429-TooManyRequests"]); // then 200
    const jid = await registered(token, "unspaced");
    const limited = await outcome(app.server, "provider_rate_limited");
    // two error replies in a row for one registration: a counted (non-wait) type would end it here
    await pushVia(jid);
    await pushVia(jid);
    expect(await outcome(app.server, "provider_rate_limited")).toBe(limited + 2);
    // the registration survived: the server still pushes, and this one is delivered
    await pushVia(jid);
    await apns.waitForDeliveries(token, 1);
    expect(statuses(token)).toEqual([429, 429, 200]);
  });

  it("provider 5xx on consecutive pushes → wait each time, the kept push delivered later; the server keeps the registration", async () => {
    const token = tok("d2");
    const failed = ["500-InternalServerError", "500-InternalServerError"]; // both attempts
    apns.sim.script(token, [...failed, "ok", ...failed, "ok"]);
    const jid = await registered(token, "unspaced");
    const transient = await outcome(app.server, "transient_error");
    await pushVia(jid);
    // the push was kept: its later retry delivers it (no reply reaches the server for that)
    await apns.waitForDeliveries(token, 1);
    await pushVia(jid);
    await apns.waitForDeliveries(token, 2);
    expect(await outcome(app.server, "transient_error")).toBe(transient + 2);
    // two wait errors in a row did not end the registration
    await pushVia(jid);
    await apns.waitForDeliveries(token, 3);
    expect(statuses(token)).toEqual([500, 500, 200, 500, 500, 200, 200]);
  });

  it("pushModule selects the app: the enable form's option reaches the second app's provider", async () => {
    const second = tok("a5");
    const first = tok("a6");
    await pushVia(await registered(second, "second"));
    healthyJid = await registered(first);
    await pushVia(healthyJid);
    await apns2.waitForDeliveries(second, 1);
    await apns.waitForDeliveries(first, 1);
    expect(apns.deliveries(second, { includeRejected: true })).toHaveLength(0);
    expect(apns2.deliveries(first, { includeRejected: true })).toHaveLength(0);
  });

  it("a domain crossing the bad-token threshold keeps its healthy users' registrations and pushes; unknown tokens are rate-limited with wait; an operator block is wait and reversible", async () => {
    // state so far: one healthy token (a6) delivered; the domain has no bad tokens
    const healthy = tok("a6");
    expect(app.server.domains.state("localhost")).toBe("ok");
    const bad = [tok("b1"), tok("b2")];
    for (const t of bad) apns.script(t, "unregistered");
    for (const t of bad) await pushVia(await registered(t));
    expect(app.server.domains.state("localhost")).toBe("restricted");
    // the healthy user keeps getting pushes
    await pushVia(healthyJid);
    await apns.waitForDeliveries(healthy, 2);
    // unknown tokens: the domain's new-token budget lets one through ...
    const u1 = tok("c1");
    await pushVia(await registered(u1));
    await apns.waitForDeliveries(u1, 1);
    // ... the next one gets wait, and the server keeps its registration
    const u2 = tok("c2");
    const u2Jid = await registered(u2);
    const restricted = await outcome(app.server, "domain_restricted");
    await pushesAllArrive(u2Jid);
    expect(await outcome(app.server, "domain_restricted")).toBe(restricted + 3);
    expect(apns.deliveries(u2, { includeRejected: true })).toHaveLength(0);
    // the operator sees the domain and blocks it fully: wait for everyone, no provider traffic
    const listed = (await adminCall(app, "GET", "domains")) as {
      domains: { domain: string; state: string }[];
    };
    expect(listed.domains).toEqual([
      expect.objectContaining({ domain: "localhost", state: "restricted" }),
    ]);
    await adminCall(app, "POST", "domains/localhost/block?for=1h");
    const blockedBefore = await outcome(app.server, "domain_blacklisted");
    await pushesAllArrive(healthyJid, 2);
    expect(await outcome(app.server, "domain_blacklisted")).toBe(blockedBefore + 2);
    expect(apns.deliveries(healthy)).toHaveLength(2);
    // unblocked: the same registrations deliver again (they survived the block)
    await adminCall(app, "POST", "domains/localhost/unblock");
    await pushVia(healthyJid);
    await apns.waitForDeliveries(healthy, 3);
    await pushVia(u2Jid); // now an ordinary unknown token again
    await apns.waitForDeliveries(u2, 1);
    if (xmpp.kind === "ejabberd") {
      // only the two dead tokens' registrations were disabled
      const disabled = (await xmpp.logText()).match(/disabling push/g) ?? [];
      expect(disabled).toHaveLength(2);
    }
  });
});
