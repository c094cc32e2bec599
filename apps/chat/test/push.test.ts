// `lichen-chat push enable|disable|status` end to end with real parts: the BUILT lichen-chat against
// real Prosody and ejabberd, the BUILT `lichen-push` daemon (its own process, a config file)
// attached to the server's component port, and the APNs simulator it delivers to.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateApnsKey, startApnsSimulator, type ApnsSimulator } from "@lichen/push-simulators";
import { startEjabberd, startProsody, type XmppTestServer } from "@lichen/test-servers";
import { lichenPushComponent, startLichenPush, type LichenPushDaemon } from "@lichen/test-kit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loginArgs, requireBuiltCli, runCli, startPeer, until } from "./helpers.js";
import { createRoom, sayInRoom } from "./rooms-peer.js";

const T = 180_000;
const ALICE = "alice@localhost";
const TOPIC = "im.lichen.chatpush";
const TOKEN_A = "a7".repeat(32);
const TOKEN_B = "b8".repeat(32);
const TOKEN_ROOM = "c9".repeat(32);
const PUSH_CLI = join(import.meta.dirname, "..", "..", "push-server", "dist", "cli.js");

/** The lichen-push daemon as a process (on the server's component port), online. */
async function startPushDaemon(
  server: XmppTestServer,
  sim: ApnsSimulator,
  key: ReturnType<typeof generateApnsKey>,
  dir: string,
) {
  const keyFile = join(dir, "apns.p8");
  writeFileSync(keyFile, key.privateKeyPem);
  return startLichenPush({
    cli: PUSH_CLI,
    configFile: join(dir, "push.yaml"),
    config: {
      component: lichenPushComponent(server),
      apps: {
        ios: {
          topic: TOPIC,
          teamId: "LICHENTEAM",
          keyId: key.keyId,
          privateKeyFile: keyFile,
          endpoint: sim.url,
        },
      },
      dataDir: join(dir, "data"),
      http: { port: 0 },
    },
  });
}

/** Push requests the daemon received from the XMPP server (every outcome), from /metrics. */
async function pushRequests(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^lichen_push_requests_total\{[^}]*\} (\d+)/gm)) n += Number(m[1]);
  return n;
}

describe.each([
  ["Prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const)("lichen-chat push against %s and lichen-push", (_name, startServer) => {
  let server: XmppTestServer;
  let sim: ApnsSimulator;
  let daemon: LichenPushDaemon;
  let db: string;
  const cli = (...args: string[]) => runCli(db, args);
  const status = async () => {
    const r = await cli("push", "status", "--json");
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };

  beforeAll(async () => {
    requireBuiltCli();
    server = await startServer();
    await server.registerUser("alice", "alicepw");
    await server.registerUser("bob", "bobpw");
    const dir = mkdtempSync(join(tmpdir(), "lichen-chat-push-"));
    db = join(dir, "alice.db");
    const key = generateApnsKey({ teamId: "LICHENTEAM" });
    sim = await startApnsSimulator({
      keys: [{ keyId: key.keyId, teamId: "LICHENTEAM", publicKey: key.publicKeyPem }],
      topics: [TOPIC],
    });
    daemon = await startPushDaemon(server, sim, key, dir);
  }, T);
  afterAll(async () => {
    await daemon?.stop();
    await sim?.stop();
    await server?.stop();
  }, T);

  it(
    "room push: a room message while hibernated reaches the APNs simulator; the NSE syncs the room and shows room: nick: body, the mention marked",
    async () => {
      // carol (her own database): bob's room, push enabled, joined, hibernated.
      await server.registerUser("carol", "carolpw");
      const carolDb = join(db, "..", "carol.db");
      const carol = (...args: string[]) => runCli(carolDb, args);
      const owner = await startPeer(server.c2sPort, "bob", "bobpw", { resource: "rooms" });
      const room = `push-${Math.random().toString(36).slice(2, 8)}@${server.mucDomain}`;
      try {
        await createRoom(owner, room);
        const login = await carol(...loginArgs("carol", server.c2sPort));
        expect(login.code, login.stderr).toBe(0);
        const enable = await carol(
          "push",
          "enable",
          "--appserver",
          server.componentDomain,
          "--node",
          TOKEN_ROOM,
          "--module",
          "ios",
        );
        expect(enable.code, enable.stderr).toBe(0);
        const joined = await carol("join", room, "--nick", "caro");
        expect(joined.code, joined.stderr).toBe(0);
        expect(joined.stdout).toContain(`joined ${room} as caro`);

        // The join left the stream hibernated: a room message now is pushed.
        await sayInRoom(owner, room, "caro: lunch?");
        const [d] = await sim.waitForDeliveries(1, 60_000, TOKEN_ROOM);
        expect(JSON.stringify(d!.payload)).not.toContain("lunch"); // no body via the appserver

        const nse = await carol("nse", "--deadline-ms", "20000", "--linger-ms", "0");
        expect(nse.code, nse.stderr).toBe(0);
        const r = JSON.parse(nse.stdout) as {
          outcome: string;
          notifications: Record<string, unknown>[];
        };
        expect(r.outcome).toBe("synced");
        expect(r.notifications).toEqual([
          expect.objectContaining({
            kind: "alert",
            title: room,
            body: "bob: caro: lunch?",
            threadId: room,
            mention: true,
          }),
        ]);
        const tail = await carol("tail", room, "-n", "1");
        expect(tail.stdout.trim()).toMatch(new RegExp(`${room}: bob: caro: lunch\\?$`));
      } finally {
        await owner.stop();
      }
    },
    T,
  );

  it(
    "push enable → a message while hibernated reaches the APNs simulator; disable → no push; status from the database, offline too",
    async () => {
      const bob = await startPeer(server.c2sPort, "bob", "bobpw");
      try {
        const login = await cli(...loginArgs("alice", server.c2sPort));
        expect(login.code, login.stderr).toBe(0);
        expect(await status()).toMatchObject({ status: "disabled", node: null });

        const enable = await cli(
          "push",
          "enable",
          "--appserver",
          server.componentDomain,
          "--node",
          TOKEN_A,
          "--module",
          "ios",
        );
        expect(enable.code, enable.stderr).toBe(0);
        expect(enable.stdout).toContain("push: enabled");
        expect(await status()).toMatchObject({
          status: "enabled",
          node: TOKEN_A,
          appServerJid: server.componentDomain,
          pushModule: "ios",
          lastError: null,
        });
        // The command left the stream hibernated (suspended): a message now is pushed.
        await bob.send(ALICE, "wake-up");
        const [d] = await sim.waitForDeliveries(1, 60_000, TOKEN_A);
        expect(d!.headers["apns-topic"]).toBe(TOPIC);
        expect(JSON.stringify(d!.payload)).not.toContain("wake-up"); // no body via the appserver

        const disable = await cli("push", "disable");
        expect(disable.code, disable.stderr).toBe(0);
        expect(disable.stdout).toContain("push: disabled");
        expect(await status()).toMatchObject({ status: "disabled", node: TOKEN_A });
        const again = await cli("push", "disable");
        expect(again.code).toBe(0);
        expect(again.stderr).toContain("push is not enabled");

        const before = await pushRequests(daemon.httpPort);
        expect(before).toBeGreaterThanOrEqual(1);
        await bob.send(ALICE, "no-push-please");
        // Barrier: enable a fresh token, one more message. The server sends push requests in
        // order, so once the barrier's push is delivered, a request for the message above (had
        // disable not worked) would have reached the daemon before it.
        const barrier = await cli(
          "push",
          "enable",
          "--appserver",
          server.componentDomain,
          "--node",
          TOKEN_B,
          "--module",
          "ios",
        );
        expect(barrier.code, barrier.stderr).toBe(0);
        // The resume for that command stored the unpushed message.
        const tail = await cli("tail", "bob@localhost", "--json");
        expect(tail.stdout).toContain("no-push-please");
        await bob.send(ALICE, "barrier");
        await sim.waitForDeliveries(1, 60_000, TOKEN_B);
        await until(async () => (await pushRequests(daemon.httpPort)) > before, "barrier counted");
        expect((await pushRequests(daemon.httpPort)) - before).toBe(1); // the barrier only
        expect(sim.deliveriesFor(TOKEN_A)).toHaveLength(1);

        // status reads the database: it works with the server gone.
        await server.stop();
        expect(await status()).toMatchObject({ status: "enabled", node: TOKEN_B });
        // Offline, a disable is queued (not an error) and shows as pending until a connection.
        const offline = await cli("push", "disable");
        expect(offline.code, offline.stderr).toBe(0);
        expect(offline.stderr).toMatch(/offline .*queued/);
        expect(await status()).toMatchObject({ status: "disabling", node: TOKEN_B });
      } finally {
        await bob.stop();
      }
    },
    T,
  );
});
