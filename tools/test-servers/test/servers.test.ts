import { client, xml } from "@xmpp/client";
import { component } from "@xmpp/component";
import { Redis } from "ioredis";
import { existsSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import {
  isPortOpen,
  startEjabberd,
  startProsody,
  startRedis,
  streamManagementEnabled,
  type XmppTestServer,
} from "../src/index.js";

// Real servers take a while on a loaded 2-core machine.
const T = 120_000;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function login(server: XmppTestServer, username: string, password: string) {
  const xmpp = client({
    service: `xmpp://127.0.0.1:${server.c2sPort}`,
    domain: server.domain,
    username,
    password,
    resource: "test",
  });
  xmpp.on("error", () => {});
  const address = await xmpp.start();
  await streamManagementEnabled(xmpp);
  // Round trips prove the session really works: disco#info to the server and to the own bare
  // JID (Prosody and ejabberd advertise MAM and push on the account).
  const features: string[] = [];
  for (const to of [server.domain, address.bare().toString()]) {
    const reply = await xmpp.iqCaller.request(
      xml(
        "iq",
        { type: "get", to },
        xml("query", { xmlns: "http://jabber.org/protocol/disco#info" }),
      ),
    );
    features.push(
      ...reply
        .getChild("query")!
        .getChildren("feature")
        .map((f: { attrs: Record<string, string> }) => f.attrs.var as string),
    );
  }
  await xmpp.stop();
  return { jid: address.toString(), features };
}

async function connectComponent(server: XmppTestServer) {
  const xmpp = component({
    service: `xmpp://127.0.0.1:${server.componentPort}`,
    domain: server.componentDomain,
    password: server.componentSecret,
  });
  xmpp.on("error", () => {});
  xmpp.reconnect.stop();
  const address = await xmpp.start();
  await xmpp.stop();
  return address.toString();
}

const started: { stop(): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.allSettled(started.map((s) => s.stop()));
});

describe.each([
  ["prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const)("%s", (kind, start) => {
  it(
    "starts on free loopback ports; login, disco, component handshake, restart and stop work",
    async () => {
      const server = await start();
      started.push(server);
      expect(server.kind).toBe(kind);
      expect(existsSync(server.caCertPath)).toBe(true);
      await server.registerUser("alice", "alicepw");

      const session = await login(server, "alice", "alicepw");
      expect(session.jid).toMatch(/^alice@localhost\/test/);
      expect(session.features).toContain("urn:xmpp:mam:2");
      expect(session.features).toContain("urn:xmpp:push:0");
      expect(session.features).toContain("urn:xmpp:carbons:2");

      expect(await connectComponent(server)).toBe("push.localhost");

      // Wrong password is refused: the server really authenticates.
      await expect(login(server, "alice", "wrong")).rejects.toThrow();

      await server.restart();
      expect((await login(server, "alice", "alicepw")).jid).toMatch(/^alice@localhost/);

      const pid = server.pid;
      expect(pid).toBeGreaterThan(0);
      await server.stop();
      expect(isAlive(pid)).toBe(false);
      expect(await isPortOpen(server.c2sPort)).toBe(false);
      expect(existsSync(server.dataDir)).toBe(false);
    },
    T,
  );
});

describe("parallel instances", () => {
  it(
    "two Prosodies and two ejabberds at once do not clash",
    async () => {
      const servers = await Promise.all([
        startProsody(),
        startProsody(),
        startEjabberd(),
        startEjabberd(),
      ]);
      started.push(...servers);
      const ports = new Set(servers.flatMap((s) => [s.c2sPort, s.componentPort, s.httpPort]));
      expect(ports.size).toBe(12);
      for (const [i, s] of servers.entries()) await s.registerUser(`u${i}`, "pw");
      const sessions = await Promise.all(servers.map((s, i) => login(s, `u${i}`, "pw")));
      expect(sessions.map((s) => s.jid.split("/")[0])).toEqual([
        "u0@localhost",
        "u1@localhost",
        "u2@localhost",
        "u3@localhost",
      ]);
      await Promise.all(servers.map((s) => s.stop()));
      for (const s of servers) expect(isAlive(s.pid)).toBe(false);
    },
    T,
  );
});

describe("redis", () => {
  it(
    "answers PING, loses data on restart (no persistence) and stops by PID",
    async () => {
      const redis = await startRedis();
      started.push(redis);
      const c = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      c.on("error", () => {});
      await c.connect();
      expect(await c.ping()).toBe("PONG");
      await c.set("k", "v");
      expect(await c.get("k")).toBe("v");
      c.disconnect();
      await redis.restart();
      const c2 = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      c2.on("error", () => {});
      await c2.connect();
      expect(await c2.get("k")).toBeNull();
      c2.disconnect();
      const pid = redis.pid;
      await redis.stop();
      expect(isAlive(pid)).toBe(false);
    },
    T,
  );
});
