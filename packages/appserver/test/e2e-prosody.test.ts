import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApns, type ApnsHarness } from "./helpers/apns.js";
import {
  attachAppServer,
  everythingWritten,
  outcome,
  requestsHandled,
  type E2E,
  operatorSnippets,
  recordStanzas,
} from "./helpers/e2e.js";
import { until, untilAsync } from "./helpers/nodes.js";
import { enablePush, hibernate, login, sendChat } from "./helpers/xmpp-client.js";
import { startProsody, type XmppTestServer } from "@lichen/test-servers";

const TOKEN = "5f".repeat(32);
const BAD_TOKEN = "6e".repeat(32);
const OTHER = "4d".repeat(32);

describe(
  "Prosody 0.12 (mod_cloud_notify) → lichen-push → APNs simulator",
  { timeout: 180_000 },
  () => {
    let prosody: XmppTestServer;
    let apns: ApnsHarness;
    let app: E2E;

    beforeAll(async () => {
      prosody = await startProsody({
        pushMaxErrors: 2,
        pushConfig: operatorSnippets().prosodyConfig,
      });
      for (const u of ["alice", "bob", "carol", "dave"]) await prosody.registerUser(u, `${u}pw`);
      apns = await startApns();
      app = await attachAppServer(prosody, apns);
    });

    afterAll(async () => {
      await app?.stop();
      await apns?.stop();
      await prosody?.stop();
    });

    const account = (username: string) => ({
      c2sPort: prosody.c2sPort,
      domain: "localhost",
      username,
      password: `${username}pw`,
    });

    it("hibernated client + incoming message → exactly one alert push with the app's topic", async () => {
      const alice = await login(account("alice"));
      await enablePush(alice, prosody.componentDomain, TOKEN);
      await hibernate(alice);
      const stanzas = recordStanzas(app.server);
      const bob = await login(account("bob"));
      await sendChat(bob, "alice@localhost", "hello alice");
      const [d] = await apns.waitForDeliveries(TOKEN, 1);
      // the snippet's privacy settings: the publish carries neither the message text nor the sender
      const publish = stanzas.filter((x) => x.includes("urn:xmpp:push:0"));
      expect(publish).toHaveLength(1);
      expect(publish[0]).not.toContain("hello alice");
      expect(publish[0]).not.toContain("bob@localhost");
      expect(d!.topic).toBe(apns.topic);
      expect(d!.pushType).toBe("alert");
      expect(d!.payload).not.toContain("hello alice");
      // nothing else arrives for this token (Prosody batches queued stanzas into one push)
      // the request is counted once its provider answer is processed, just after the delivery
      await untilAsync(
        async () => (await requestsHandled(app.server)) === 1,
        "push request answered",
      );
      await sendChat(bob, "bob@localhost", "to myself: a round trip through the server");
      expect(await requestsHandled(app.server)).toBe(1);
      expect(apns.deliveries(TOKEN)).toHaveLength(1);
      await bob.stop().catch(() => undefined);
    });

    it("token reported invalid → blacklisted → cancel replies → Prosody disables it after push_max_errors", async () => {
      apns.script(BAD_TOKEN, "unregistered");
      const carol = await login(account("carol"));
      await enablePush(carol, prosody.componentDomain, BAD_TOKEN);
      await hibernate(carol);
      const bob = await login(account("bob"), "desk");
      await sendChat(bob, "carol@localhost", "one");
      await until(
        () => app.server.tokens.isBlocked(app.server.hasher.hash(BAD_TOKEN)),
        "token blacklisted",
      );
      const before = await outcome(app.server, "token_blacklisted");
      await sendChat(bob, "carol@localhost", "two");
      // Prosody counts cancel errors and keeps pushing until push_max_errors: the next request is
      // refused from the blacklist, without reaching the provider.
      await untilAsync(
        async () => (await outcome(app.server, "token_blacklisted")) > before,
        "refused from the blacklist",
      );
      expect(apns.deliveries(BAD_TOKEN, { includeRejected: true })).toHaveLength(1);
      expect(await prosody.logText()).toMatch(/item-not-found/);
      // push_max_errors is 2 here: Prosody drops the registration after the second cancel error
      await untilAsync(
        async () => /Disabling push notifications for identifier/.test(await prosody.logText()),
        "Prosody disables the registration",
      );
      const refused = await outcome(app.server, "token_blacklisted");
      const dave = await login(account("dave"));
      await enablePush(dave, prosody.componentDomain, OTHER);
      await hibernate(dave);
      await sendChat(bob, "carol@localhost", "three");
      await sendChat(bob, "dave@localhost", "fence"); // carol's push (if any) would come first
      await apns.waitForDeliveries(OTHER, 1);
      await untilAsync(
        async () => (await outcome(app.server, "sent")) >= 2,
        "dave's push answered",
      );
      expect(await outcome(app.server, "token_blacklisted")).toBe(refused);
      await bob.stop().catch(() => undefined);
    });

    it("survives a Prosody restart: reconnects with back-off and serves pushes again", async () => {
      await prosody.restart();
      await until(() => app.server.link.online, "component back online after restart", 60_000);
      expect(app.server.link.reconnects).toBeGreaterThan(0);
      const health = await fetch(`http://127.0.0.1:${app.server.httpPort}/healthz`);
      expect(health.status).toBe(200);
    });

    it("privacy: no JID and no raw token in logs or the database files", async () => {
      app.server.store.flush();
      const written = everythingWritten(app.dataDir);
      expect(written.length).toBeGreaterThan(1000); // the log and DB really are there
      expect(written).toContain(app.server.hasher.hash(BAD_TOKEN)); // tokens appear only hashed
      for (const secret of [
        TOKEN,
        BAD_TOKEN,
        OTHER,
        "alice@",
        "bob@",
        "carol@",
        "dave@",
        "alice",
        "carol",
      ]) {
        expect(written.includes(secret), `found "${secret}" in appserver files`).toBe(false);
      }
    });
  },
);
