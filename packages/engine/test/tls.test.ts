import { readFileSync } from "node:fs";

import { startProsody } from "@lichen/test-servers";
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
