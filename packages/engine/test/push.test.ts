// XEP-0357 end to end with real parts: the engine enables push straight on the user's own server,
// the server's push module publishes to the Lichen appserver (XEP-0114 component), which pushes to
// the APNs simulator; the NSE then syncs and produces the notification.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AppServer, validateConfig } from "@lichen/appserver";
import { generateApnsKey, startApnsSimulator, type ApnsSimulator } from "@lichen/push-simulators";
import { loadAccountState, openStore, tables } from "@lichen/store";

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AppController,
  DurableSession,
  disablePush,
  ensureAccount,
  ensurePush,
  handlePush,
  InvalidPushTargetError,
  readPushRegistration,
} from "../src/index.js";
import { SERVERS, startPeer, until, useEngineEnv } from "./helpers.js";

const T = 180_000;
const TOPIC = "im.lichen.enginetest";
const TOKEN_A = "a1".repeat(32);
const TOKEN_B = "b2".repeat(32);
const TOKEN_C = "c3".repeat(32);

describe.each(SERVERS)("push (XEP-0357) on %s", (_kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-push-db-", users: ["alice", "bob", "carol"] });
  let sim: ApnsSimulator;
  let appserver: AppServer;

  beforeAll(async () => {
    const server = env.server;
    const key = generateApnsKey({ teamId: "LICHENTEAM" });
    sim = await startApnsSimulator({
      keys: [{ keyId: key.keyId, teamId: "LICHENTEAM", publicKey: key.publicKeyPem }],
      topics: [TOPIC],
    });
    const dataDir = mkdtempSync(join(tmpdir(), "lichen-engine-push-"));
    appserver = await AppServer.start({
      config: validateConfig({
        component: {
          service: `xmpp://127.0.0.1:${server.componentPort}`,
          domain: server.componentDomain,
          secret: server.componentSecret,
        },
        apps: {
          lichen: {
            type: "apns",
            topic: TOPIC,
            teamId: "LICHENTEAM",
            keyId: key.keyId,
            privateKeyPem: key.privateKeyPem,
            endpoint: sim.url,
          },
        },
        dataDir,
        http: { port: 0 },
        log: { level: "silent" },
      }),
    });
    await until(() => appserver.link.online, "appserver component online");
  }, T);
  afterAll(async () => {
    await appserver?.stop();
    await sim?.stop();
  }, T);

  /** Push requests the appserver received from the XMPP env.server (every outcome). */
  const pushRequests = async () => {
    const byOutcome: Record<string, number> = {};
    for (const v of (await appserver.metrics.requests.get()).values)
      byOutcome[String(v.labels.outcome)] = v.value;
    return byOutcome;
  };
  const total = (m: Record<string, number>) => Object.values(m).reduce((a, b) => a + b, 0);
  const pushState = () => env.store.read((tx) => loadAccountState(tx, "alice").push);

  it(
    "enable on the own env.server → a frozen app gets an alert push → the NSE syncs the message; a token change moves pushes to the new token; disable stops them",
    async () => {
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      const app = new AppController(env.store, env.config());
      try {
        await app.foreground();
        const session = app.session!;
        const enabled = new Promise((r) => session.once("push-enabled", r));
        session.write((ctx) =>
          ensurePush(ctx, {
            appServerJid: env.server.componentDomain,
            node: TOKEN_A,
            pushModule: "lichen",
          }),
        );
        await enabled;
        expect(pushState()).toMatchObject({ node: TOKEN_A, enabled: true, pushModule: "lichen" });
        // The same registration again sends nothing.
        expect(
          session.write((ctx) =>
            ensurePush(ctx, {
              appServerJid: env.server.componentDomain,
              node: TOKEN_A,
              pushModule: "lichen",
            }),
          ),
        ).toBe(false);
        await app.background(); // TCP dropped, the stream hibernates on the env.server

        await bob.send("alice@localhost", "wake-up-1");
        await sim.waitForDeliveries(1, 30_000, TOKEN_A);
        const [d] = sim.deliveriesFor(TOKEN_A);
        expect(d!.headers["apns-topic"]).toBe(TOPIC);
        // The body never travels through the appserver (privacy design).
        expect(JSON.stringify(d!.payload)).not.toContain("wake-up-1");

        const nse = openStore({ path: env.store.path, role: "nse" });
        try {
          const r = await handlePush({ store: nse, session: env.config(), lingerMs: 100 });
          expect(r.outcome).toBe("synced");
          expect(r.notifications).toEqual([
            expect.objectContaining({ kind: "alert", body: "wake-up-1" }),
          ]);
        } finally {
          nse.close();
        }

        // New device token: the old registration is disabled, the new one enabled.
        await app.foreground();
        const reEnabled = new Promise((r) => app.session!.once("push-enabled", r));
        app.session!.write((ctx) =>
          ensurePush(ctx, {
            appServerJid: env.server.componentDomain,
            node: TOKEN_B,
            pushModule: "lichen",
          }),
        );
        await reEnabled;
        expect(pushState()).toMatchObject({ node: TOKEN_B, enabled: true });
        await app.background();
        await bob.send("alice@localhost", "wake-up-2");
        await sim.waitForDeliveries(1, 30_000, TOKEN_B);
        expect(sim.deliveriesFor(TOKEN_A)).toHaveLength(1);

        // Disabled: a further message while frozen produces no push at all.
        await app.foreground();
        const disabled = new Promise((r) => app.session!.once("push-disabled", r));
        expect(app.session!.write((ctx) => disablePush(ctx))).toBe(true);
        // Recorded before the answer: any process reading the database sees it pending.
        expect(pushState()).toMatchObject({ node: TOKEN_B, status: "disabling" });
        await disabled; // the server's answer, through the stored handler
        expect(pushState()).toMatchObject({
          node: TOKEN_B,
          status: "disabled",
          enabled: false,
          lastError: null,
        });
        expect(app.session!.write((ctx) => disablePush(ctx))).toBe(false); // nothing to disable
        await until(
          () => env.store.read((tx) => tx.select().from(tables.outboundQueue).all().length === 0),
          "disable acknowledged",
        );
        await app.background();
        const before = await pushRequests();
        expect(total(before)).toBeGreaterThanOrEqual(2); // the counter sees the pushes above
        await bob.send("alice@localhost", "no-push-please");
        // Proof the message arrived (and would have been pushed): the NSE finds it.
        const nse2 = openStore({ path: env.store.path, role: "nse" });
        try {
          const r2 = await handlePush({ store: nse2, session: env.config(), lingerMs: 100 });
          expect(r2.notifications).toEqual(
            expect.arrayContaining([
              expect.objectContaining({ kind: "alert", body: "no-push-please" }),
            ]),
          );
        } finally {
          nse2.close();
        }
        // A barrier: push enabled again with a fresh token and one more message. The env.server sends
        // push requests in order, so once the barrier's push arrived, a request for the message
        // above (had disable not worked) would have been counted before it.
        await app.foreground();
        const barrierEnabled = new Promise((r) => app.session!.once("push-enabled", r));
        app.session!.write((ctx) =>
          ensurePush(ctx, {
            appServerJid: env.server.componentDomain,
            node: TOKEN_C,
            pushModule: "lichen",
          }),
        );
        await barrierEnabled;
        await app.background();
        await bob.send("alice@localhost", "barrier");
        await sim.waitForDeliveries(1, 30_000, TOKEN_C);
        let after = await pushRequests();
        for (let i = 0; total(after) <= total(before) && i < 600; i++) {
          await new Promise((r) => setTimeout(r, 50)); // counted just after the delivery
          after = await pushRequests();
        }
        const diff = Object.fromEntries(
          Object.keys(after)
            .map((k) => [k, after[k]! - (before[k] ?? 0)] as const)
            .filter(([, n]) => n !== 0),
        );
        expect(Object.values(diff)).toEqual([1]); // the barrier only
      } finally {
        await app.close();
        await bob.stop();
      }
    },
    T,
  );

  it(
    "an enable queued offline, before any stream, is recorded as enabling and sent again on the first stream (its first IQ died with no stream)",
    async () => {
      const store = openStore({ path: join(env.dir, "carol.db"), role: "main" });
      ensureAccount(store, { id: "carol", jid: "carol@localhost", resource: "phone" });
      const session = new DurableSession({ store, ...env.config("carol") });
      try {
        const target = { appServerJid: env.server.componentDomain, node: TOKEN_C };
        // Bad input: a typed error naming the field, nothing stored or queued.
        expect(() =>
          session.write((ctx) => ensurePush(ctx, { appServerJid: "", node: "short" })),
        ).toThrow(InvalidPushTargetError);
        expect(readPushRegistration(store, "carol")).toBeNull();
        expect(session.write((ctx) => ensurePush(ctx, target))).toBe(true);
        expect(readPushRegistration(store, "carol")).toMatchObject({
          ...target,
          status: "enabling",
          enabled: false,
        });
        // Already pending: not queued twice.
        expect(session.write((ctx) => ensurePush(ctx, target))).toBe(false);
        const enabled = new Promise((r) => session.once("push-enabled", r));
        await session.connect();
        await enabled;
        expect(readPushRegistration(store, "carol")).toMatchObject({
          ...target,
          status: "enabled",
          enabled: true,
          lastError: null,
        });
      } finally {
        await session.close();
        store.close();
      }
    },
    T,
  );
});
