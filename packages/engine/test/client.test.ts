// createClient against real servers, found through DNS SRV served by a DNS server on loopback
// (no real DNS): the domain is "localhost" (the test servers' users are user@localhost) and the
// SRV records point at the server's non-standard loopback port.
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { Resolver } from "node:dns/promises";
import { join } from "node:path";
import {
  freePort,
  startDnsServer,
  startProsody,
  type DnsTestServer,
  type XmppTestServer,
} from "@lichen/test-servers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createClient,
  InvalidJidError,
  ServiceResolutionError,
  type DurableSession,
  type LichenClient,
  type MessageStoredEvent,
} from "../src/index.js";
import { SERVERS, startPeer, until, useEngineEnv } from "./helpers.js";

const T = 120_000;

describe.each(SERVERS)("createClient on %s", (_kind, start) => {
  const env = useEngineEnv(start, { prefix: "lichen-client-" });
  let dns: DnsTestServer;
  const resolver = new Resolver({ timeout: 2000, tries: 2 });
  let db = 0;
  const path = () => join(env.dir, `client-${++db}.db`);
  const srvTo = (...ports: number[]) => ({
    srv: {
      "_xmpp-client._tcp.localhost": ports.map((port, i) => ({
        priority: i, // tried in this order
        weight: 0,
        port,
        target: "xmpp.localhost",
      })),
    },
    a: { "xmpp.localhost": ["127.0.0.1"] },
  });
  beforeAll(async () => {
    dns = await startDnsServer();
    resolver.setServers([dns.address]);
  });
  afterAll(() => dns?.close());

  it(
    "resolves the server by SRV from the JID alone, gets online, and keeps one session across background/foreground",
    async () => {
      dns.setRecords(srvTo(env.server.c2sPort));
      const bob = await startPeer(env.server.c2sPort, "bob", "bobpw");
      let client: LichenClient | undefined;
      try {
        client = await createClient({
          path: path(),
          jid: "alice@localhost/phone",
          password: "alicepw",
          resolver,
        });
        expect(client.accountId).toBe("alice@localhost");
        expect(client.candidates.map((c) => c.service)).toEqual([
          `xmpp://127.0.0.1:${env.server.c2sPort}`,
        ]);
        expect(dns.queries).toContain("SRV _xmpp-client._tcp.localhost");
        expect(dns.queries).toContain("SRV _xmpps-client._tcp.localhost");

        // Listeners attach once: on the `session` event, before the first connect.
        const sessions: DurableSession[] = [];
        const stored: MessageStoredEvent[] = [];
        client.app.on("session", (s) => {
          sessions.push(s);
          s.on("message-stored", (m) => stored.push(m));
        });
        expect(await client.foreground()).toBe("new");
        const first = client.session;
        expect(first?.online).toBe(true);

        await client.background();
        await bob.send("alice@localhost", "while-in-background");
        expect(await client.foreground()).toBe("resumed");
        expect(client.session).toBe(first);
        expect(sessions).toEqual([first]);
        await until(
          () => stored.some((m) => m.body === "while-in-background"),
          "the message sent while in the background, on the listener attached once",
        );

        await bob.send("alice@localhost", "while-in-foreground");
        await until(
          () => stored.some((m) => m.body === "while-in-foreground"),
          "a message while in the foreground",
        );
        expect(stored.filter((m) => m.body.startsWith("while-")).length).toBe(2);
      } finally {
        await client?.close();
        await bob.stop();
      }
    },
    T,
  );

  it(
    "an SRV target on a closed port is skipped for the next one",
    async () => {
      const closed = await freePort();
      dns.setRecords(srvTo(closed, env.server.c2sPort));
      const log: Record<string, unknown>[] = [];
      const client = await createClient({
        path: path(),
        jid: "alice@localhost",
        password: "alicepw",
        resource: "tablet",
        resolver,
        logger: (e) => log.push(e),
        app: { reconnect: false },
      });
      try {
        expect(client.candidates.map((c) => c.port)).toEqual([closed, env.server.c2sPort]);
        expect(await client.foreground()).toBe("new");
        expect(log).toContainEqual(
          expect.objectContaining({
            event: "service-unreachable",
            service: `xmpp://127.0.0.1:${closed}`,
            code: "ECONNREFUSED",
          }),
        );
        // The one that worked is tried first next time.
        await client.background();
        log.length = 0;
        expect(await client.foreground()).toBe("resumed");
        expect(log.filter((e) => e.event === "service-unreachable")).toEqual([]);
      } finally {
        await client.close();
      }
    },
    T,
  );

  it(
    "every SRV target refused → ServiceResolutionError (unreachable), still transient for reconnects",
    async () => {
      const [a, b] = [await freePort(), await freePort()];
      dns.setRecords(srvTo(a, b));
      const client = await createClient({
        path: path(),
        jid: "alice@localhost",
        password: "alicepw",
        resolver,
        app: { reconnect: false },
      });
      try {
        const err = await client.foreground().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ServiceResolutionError);
        expect(err).toMatchObject({ reason: "unreachable", code: "ECONNREFUSED" });
      } finally {
        await client.close();
      }
    },
    T,
  );
});

describe("createClient bad input", () => {
  let dns: DnsTestServer;
  const resolver = new Resolver({ timeout: 2000, tries: 2 });
  beforeAll(async () => {
    dns = await startDnsServer({
      srv: {
        "_xmpp-client._tcp.dot.test": [{ priority: 0, weight: 0, port: 0, target: "." }],
        "_xmpp-client._tcp.dangling.test": [
          { priority: 0, weight: 0, port: 5222, target: "gone.dangling.test" },
        ],
      },
    });
    resolver.setServers([dns.address]);
  });
  afterAll(() => dns?.close());

  it.each([
    ["no localpart", "localhost"],
    ["empty localpart", "@localhost"],
    ["empty domain", "alice@"],
    ["space in the localpart", "al ice@localhost"],
    ["empty domain label", "alice@local..host"],
    ["empty resource", "alice@localhost/"],
  ])("%s → InvalidJidError before any I/O", async (_what, jid) => {
    const before = dns.queries.length;
    const file = join("/tmp", `lichen-client-never-${process.pid}.db`);
    const err = await createClient({ path: file, jid, password: "x", resolver }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InvalidJidError);
    expect((err as InvalidJidError).jid).toBe(jid);
    expect(dns.queries.length).toBe(before);
    expect(existsSync(file)).toBe(false);
  });

  it("an unresolvable domain → ServiceResolutionError (domain-not-found)", async () => {
    const err = await createClient({
      path: join("/tmp", `lichen-client-never-${process.pid}.db`),
      jid: "alice@nowhere.test",
      password: "x",
      resolver,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceResolutionError);
    expect(err).toMatchObject({ reason: "domain-not-found", domain: "nowhere.test" });
  });

  it('SRV "." → service-not-offered; SRV to a name without address → no-address', async () => {
    await expect(
      createClient({ path: "/tmp/never.db", jid: "a@dot.test", password: "x", resolver }),
    ).rejects.toMatchObject({ name: "ServiceResolutionError", reason: "service-not-offered" });
    await expect(
      createClient({ path: "/tmp/never.db", jid: "a@dangling.test", password: "x", resolver }),
    ).rejects.toMatchObject({ name: "ServiceResolutionError", reason: "no-address" });
  });
});

describe("createClient with direct TLS (XEP-0368) on prosody", () => {
  let server: XmppTestServer;
  let dns: DnsTestServer;
  let dir = "";
  let tlsPort = 0;
  const resolver = new Resolver({ timeout: 2000, tries: 2 });
  beforeAll(async () => {
    tlsPort = await freePort();
    server = await startProsody({
      tls: true,
      extraConfig: `c2s_direct_tls_ports = { ${tlsPort} }\n`,
    });
    await server.registerUser("alice", "alicepw");
    dns = await startDnsServer({
      srv: {
        "_xmpps-client._tcp.localhost": [
          { priority: 0, weight: 0, port: tlsPort, target: "xmpp.localhost" },
        ],
        // Same priority: direct TLS is preferred, so this one is not needed.
        "_xmpp-client._tcp.localhost": [
          { priority: 0, weight: 0, port: server.c2sPort, target: "xmpp.localhost" },
        ],
      },
      a: { "xmpp.localhost": ["127.0.0.1"] },
    });
    resolver.setServers([dns.address]);
    dir = mkdtempSync(join(tmpdir(), "lichen-client-tls-"));
  }, T);
  afterAll(async () => {
    await dns?.close();
    await server?.stop();
  }, T);

  it(
    "without the CA the certificate is refused, and not worked around by the STARTTLS candidate",
    async () => {
      const log: Record<string, unknown>[] = [];
      const client = await createClient({
        path: join(dir, "untrusted.db"),
        jid: "alice@localhost",
        password: "alicepw",
        resolver,
        logger: (e) => log.push(e),
        app: { reconnect: false },
      });
      try {
        const err = await client.foreground().catch((e: unknown) => e);
        expect(err).toBeInstanceOf(Error);
        expect((err as Error).message).toMatch(/certificate/i);
        expect(log.filter((e) => e.event === "service-unreachable")).toEqual([]);
        expect(client.session?.online).toBe(false);
      } finally {
        await client.close();
      }
    },
    T,
  );

  it(
    "connects to the xmpps SRV target, verifying the certificate for the domain with tls.ca",
    async () => {
      const log: Record<string, unknown>[] = [];
      const client = await createClient({
        path: join(dir, "tls.db"),
        jid: "alice@localhost",
        password: "alicepw",
        resolver,
        tls: { ca: readFileSync(server.caCertPath) },
        allowPlaintext: false,
        logger: (e) => log.push(e),
        app: { reconnect: false },
      });
      try {
        expect(client.candidates.map((c) => c.service)).toEqual([
          `xmpps://127.0.0.1:${tlsPort}`,
          `xmpp://127.0.0.1:${server.c2sPort}`,
        ]);
        expect(await client.foreground()).toBe("new");
        expect(log.filter((e) => e.event === "service-unreachable")).toEqual([]);
      } finally {
        await client.close();
      }
    },
    T,
  );
});
