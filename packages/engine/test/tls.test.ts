import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore, type Store } from "@lichen/store";
import { startEjabberd, startProsody, type XmppTestServer } from "@lichen/test-servers";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DurableSession, ensureAccount, type SessionOptions } from "../src/index.js";

const T = 120_000;

describe.each([
  ["prosody", startProsody],
  ["ejabberd", startEjabberd],
] as const)("STARTTLS on %s", (_kind, start) => {
  let tlsServer: XmppTestServer;
  let store: Store;
  beforeAll(async () => {
    tlsServer = await start({ tls: true });
    await tlsServer.registerUser("alice", "alicepw");
    store = openStore({
      path: join(mkdtempSync(join(tmpdir(), "lichen-tls-")), "lichen.db"),
      role: "main",
    });
    ensureAccount(store, { id: "alice", jid: "alice@localhost" });
  }, T);
  afterAll(async () => {
    store?.close();
    await tlsServer?.stop();
  }, T);

  const session = (o: Partial<SessionOptions>) =>
    new DurableSession({
      store,
      accountId: "alice",
      service: `xmpp://127.0.0.1:${tlsServer.c2sPort}`,
      domain: "localhost",
      username: "alice",
      password: "alicepw",
      ...o,
    });

  it(
    "upgrades with the server certificate verified against the given CA, and resumes over TLS",
    async () => {
      const ca = readFileSync(tlsServer.caCertPath);
      const s = session({ tls: { ca }, allowPlaintext: false });
      expect(await s.connect()).toBe("new");
      expect(s.secure).toBe(true);
      await s.suspend();
      const again = session({ tls: { ca }, allowPlaintext: false });
      expect(await again.connect()).toBe("resumed");
      expect(again.secure).toBe(true);
      await again.close();
    },
    T,
  );

  it(
    "refuses a certificate it cannot verify, before sending any credentials",
    async () => {
      const s = session({});
      await expect(s.connect(20_000)).rejects.toThrow(/certificate/i);
      expect(s.online).toBe(false);
    },
    T,
  );
});

describe("plaintext", () => {
  let plain: XmppTestServer;
  let store: Store;
  beforeAll(async () => {
    plain = await startProsody(); // no TLS offered at all
    await plain.registerUser("alice", "alicepw");
    store = openStore({
      path: join(mkdtempSync(join(tmpdir(), "lichen-plain-")), "lichen.db"),
      role: "main",
    });
    ensureAccount(store, { id: "alice", jid: "alice@localhost" });
  }, T);
  afterAll(async () => {
    store?.close();
    await plain?.stop();
  }, T);

  it(
    "is refused unless allowed (allowed by default only on loopback)",
    async () => {
      const opts = {
        store,
        accountId: "alice",
        service: `xmpp://127.0.0.1:${plain.c2sPort}`,
        domain: "localhost",
        username: "alice",
        password: "alicepw",
      };
      await expect(
        new DurableSession({ ...opts, allowPlaintext: false }).connect(20_000),
      ).rejects.toThrow(/refusing to authenticate without TLS/);
      const ok = new DurableSession(opts); // loopback: allowed by default
      expect(await ok.connect()).toBe("new");
      expect(ok.secure).toBe(false);
      await ok.close();
    },
    T,
  );
});
