import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApns, type ApnsHarness } from "./helpers/apns.js";
import {
  attachAppServer,
  everythingWritten,
  requestsHandled,
  type E2E,
  operatorSnippets,
  recordStanzas,
} from "./helpers/e2e.js";
import { until, untilAsync } from "./helpers/nodes.js";
import { enablePush, hibernate, login, sendChat } from "./helpers/xmpp-client.js";
import { startEjabberd, type XmppTestServer } from "@lichen/test-servers";

const TOKEN = "7a".repeat(32);
const BAD_TOKEN = "8b".repeat(32);
const OTHER = "9c".repeat(32);

describe("ejabberd 23.01 (mod_push) → lichen-push → APNs simulator", { timeout: 240_000 }, () => {
  let ejabberd: XmppTestServer;
  let apns: ApnsHarness;
  let app: E2E;

  beforeAll(async () => {
    ejabberd = await startEjabberd({ includeConfig: operatorSnippets().ejabberdInclude });
    for (const u of ["alice", "bob", "carol", "dave"]) await ejabberd.registerUser(u, `${u}pw`);
    apns = await startApns();
    app = await attachAppServer(ejabberd, apns);
  });

  afterAll(async () => {
    await app?.stop();
    await apns?.stop();
    await ejabberd?.stop();
  });

  const account = (username: string) => ({
    c2sPort: ejabberd.c2sPort,
    domain: "localhost",
    username,
    password: `${username}pw`,
  });

  it("hibernated client + incoming message → exactly one alert push (empty <notification/>)", async () => {
    const alice = await login(account("alice"));
    await enablePush(alice, ejabberd.componentDomain, TOKEN);
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
    // the request is counted once its provider answer is processed, just after the delivery
    await untilAsync(
      async () => (await requestsHandled(app.server)) === 1,
      "push request answered",
    );
    await sendChat(bob, "bob@localhost", "round trip");
    expect(await requestsHandled(app.server)).toBe(1);
    expect(apns.deliveries(TOKEN)).toHaveLength(1);
    await bob.stop().catch(() => undefined);
  });

  it("invalid token → blacklisted → cancel reply → ejabberd disables the registration", async () => {
    apns.script(BAD_TOKEN, "unregistered");
    const carol = await login(account("carol"));
    await enablePush(carol, ejabberd.componentDomain, BAD_TOKEN);
    await hibernate(carol);
    const dave = await login(account("dave"));
    await enablePush(dave, ejabberd.componentDomain, OTHER);
    await hibernate(dave);
    const bob = await login(account("bob"), "desk");
    await sendChat(bob, "carol@localhost", "one");
    await until(
      () => app.server.tokens.isBlocked(app.server.hasher.hash(BAD_TOKEN)),
      "token blacklisted",
    );
    await untilAsync(
      async () => /disabling push/i.test(await ejabberd.logText()),
      "ejabberd logs that it disabled the registration",
    );
    expect(await ejabberd.logText()).toMatch(
      /push\.localhost rejected notification for .*disabling push: .*\(item-not-found\) \(cancel\)/,
    );
    const handled = await requestsHandled(app.server);
    await sendChat(bob, "carol@localhost", "two");
    // dave's push after carol's second message: ejabberd has processed "two" by then
    await sendChat(bob, "dave@localhost", "three");
    await apns.waitForDeliveries(OTHER, 1);
    // only dave's push came (counted once its provider answer is processed)
    await untilAsync(
      async () => (await requestsHandled(app.server)) >= handled + 1,
      "dave's push answered",
    );
    await sendChat(bob, "bob@localhost", "round trip");
    expect(await requestsHandled(app.server)).toBe(handled + 1);
    expect(apns.deliveries(BAD_TOKEN, { includeRejected: true })).toHaveLength(1);
    await bob.stop().catch(() => undefined);
  });

  it("survives an ejabberd restart", async () => {
    await ejabberd.restart();
    await until(() => app.server.link.online, "component back online after restart", 90_000);
    expect(app.server.link.reconnects).toBeGreaterThan(0);
  });

  it("privacy: no JID and no raw token in logs or database files", () => {
    app.server.store.flush();
    const written = everythingWritten(app.dataDir);
    expect(written).toContain(app.server.hasher.hash(BAD_TOKEN));
    for (const secret of [TOKEN, BAD_TOKEN, OTHER, "alice@", "bob@", "carol@", "dave@", "carol"]) {
      expect(written.includes(secret), `found "${secret}" in appserver files`).toBe(false);
    }
  });
});
