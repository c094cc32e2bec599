import { readFileSync } from "node:fs";

import { startEjabberd, startProsody, type ProsodyOptions } from "@lichen/test-servers";
import { tables } from "@lichen/store";
import { describe, expect, it } from "vitest";
import { DurableSession, type SessionOptions } from "../src/index.js";
import { SERVERS, useEngineEnv } from "./helpers.js";

const T = 120_000;

describe.each(SERVERS)("STARTTLS on %s", (_kind, start) => {
  const env = useEngineEnv(start, { users: ["alice"], tls: true, prefix: "lichen-tls-" });

  const session = (o: Partial<SessionOptions>) => env.session(o);

  it(
    "upgrades with the server certificate verified against the given CA, and resumes over TLS",
    async () => {
      const ca = readFileSync(env.server.caCertPath);
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

// Prosody's default TLS options include no_ticket (it issues TLS 1.3 tickets but accepts none);
// a server that resumes TLS sessions is configured so. ejabberd 23.01 (fast_tls) accepts none.
const prosodyWithTickets = (o: ProsodyOptions = {}) =>
  startProsody({ ...o, extraConfig: "c2s_ssl = { options = { no_ticket = false } }\n" });

describe("TLS session resumption across connections (Prosody accepting tickets)", () => {
  const env = useEngineEnv(prosodyWithTickets, {
    users: ["alice"],
    tls: true,
    prefix: "lichen-tls-resume-",
  });
  const rows = () => env.store.read((tx) => tx.select().from(tables.tlsSessions).all());

  it(
    "stores the server's session per account and endpoint, and the next connection resumes it (no certificate)",
    async () => {
      const ca = readFileSync(env.server.caCertPath);
      const first = env.session({ tls: { ca }, allowPlaintext: false });
      expect(await first.connect()).toBe("new");
      expect(first.tlsSessionReused).toBe(false); // nothing stored yet: a full handshake
      await first.suspend();
      const [row] = rows();
      expect(row?.accountId).toBe("alice");
      expect(row?.endpoint).toBe(`127.0.0.1:${env.server.c2sPort}|localhost`);
      // A new session object, as another process (the NSE) would open: resumed from the database.
      const again = env.session({ tls: { ca }, allowPlaintext: false });
      expect(await again.connect()).toBe("resumed");
      expect(again.tlsSessionReused).toBe(true);
      await again.suspend();
      // Opting out offers nothing.
      const off = env.session({ tls: { ca }, allowPlaintext: false, tlsSessionResumption: false });
      expect(await off.connect()).toBe("resumed");
      expect(off.tlsSessionReused).toBe(false);
      await off.suspend();
    },
    T,
  );

  it(
    "a corrupt stored session is dropped: a full handshake, then a fresh session is stored",
    async () => {
      const ca = readFileSync(env.server.caCertPath);
      const endpoint = `127.0.0.1:${env.server.c2sPort}|localhost`;
      const garbage = Buffer.from("not a TLS session");
      env.store.write((tx) =>
        tx
          .insert(tables.tlsSessions)
          .values({ accountId: "alice", endpoint, session: garbage, updatedAt: tx.now })
          .onConflictDoUpdate({
            target: [tables.tlsSessions.accountId, tables.tlsSessions.endpoint],
            set: { session: garbage },
          })
          .run(),
      );
      const s = env.session({ tls: { ca }, allowPlaintext: false });
      await s.connect();
      expect(s.secure).toBe(true);
      expect(s.tlsSessionReused).toBe(false);
      await s.suspend();
      const [row] = rows();
      expect(row?.session.equals(garbage)).toBe(false);
    },
    T,
  );

  it(
    "a session is offered only to the endpoint that issued it",
    async () => {
      const ca = readFileSync(env.server.caCertPath);
      // Another server (its own certificate and ticket keys) for the same account: its endpoint
      // differs, so Prosody's stored session is not offered to it and each keeps its own.
      const other = await startEjabberd({ tls: true });
      try {
        await other.registerUser("alice", "alicepw");
        const s = new DurableSession({
          store: env.store,
          ...env.config(),
          service: `xmpp://127.0.0.1:${other.c2sPort}`,
          tls: { ca: [ca, readFileSync(other.caCertPath)] },
          allowPlaintext: false,
        });
        await s.connect();
        expect(s.tlsSessionReused).toBe(false);
        await s.close();
        expect(
          rows()
            .map((r) => r.endpoint)
            .sort(),
        ).toEqual(
          [
            `127.0.0.1:${env.server.c2sPort}|localhost`,
            `127.0.0.1:${other.c2sPort}|localhost`,
          ].sort(),
        );
      } finally {
        await other.stop();
      }
    },
    T,
  );
});

describe("plaintext", () => {
  const env = useEngineEnv(startProsody, { users: ["alice"], prefix: "lichen-plain-" }); // no TLS offered

  it(
    "is refused unless allowed (allowed by default only on loopback)",
    async () => {
      const opts = { store: env.store, ...env.config() };
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
