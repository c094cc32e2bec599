import { describe, expect, it } from "vitest";

import { ScramMechanism } from "../src/scram.js";
import { SERVERS, useEngineEnv } from "./helpers.js";

const T = 120_000;

/** Runs the client side against the RFC's recorded server messages. */
function exchange(hash: "sha1" | "sha256", cnonce: string, serverFirst: string) {
  const m = new ScramMechanism(hash, () => cnonce);
  const cred = { username: "user", password: "pencil" };
  const first = m.response(cred);
  m.challenge(serverFirst);
  const final = m.response(cred);
  return { m, first, final };
}

describe("SCRAM test vectors", () => {
  it("RFC 5802 §5 (SCRAM-SHA-1)", () => {
    const { m, first, final } = exchange(
      "sha1",
      "fyko+d2lbbFgONRv9qkxdawL",
      "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
    );
    expect(first).toBe("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    expect(final).toBe(
      "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
    );
    m.verifyServerFinal("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    expect(m.verified).toBe(true);
  });

  it("RFC 7677 §3 (SCRAM-SHA-256)", () => {
    const { m, final } = exchange(
      "sha256",
      "rOprNGfwEbeRWgbNEkqO",
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    );
    expect(final).toBe(
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    );
    m.verifyServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    expect(m.verified).toBe(true);
  });

  it("rejects an impostor server: wrong signature, nonce not extended, no salt", () => {
    const { m } = exchange(
      "sha256",
      "rOprNGfwEbeRWgbNEkqO",
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    );
    expect(() => m.verifyServerFinal("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")).toThrow(
      /server signature mismatch/,
    );
    expect(() => m.verifyServerFinal("")).toThrow(/server signature mismatch/);
    expect(m.verified).toBe(false);
    expect(() => exchange("sha1", "abc", "r=xyz,s=QSXCR+Q6sek8bf92,i=4096")).toThrow(/nonce/);
    expect(() => exchange("sha1", "abc", "r=abcdef,i=4096")).toThrow(/salt/);
    expect(() => exchange("sha1", "abc", "r=abcdef,s=QSXCR+Q6sek8bf92,i=0")).toThrow(/iteration/);
  });
});

describe.each(SERVERS)("SASL against %s", (_kind, start) => {
  const env = useEngineEnv(start, { users: ["alice"], prefix: "lichen-sasl-" });

  const session = (password: string) => env.session({ password });

  it(
    "authenticates with the strongest SCRAM offered and verifies the server; a wrong password fails clearly",
    async () => {
      const bad = session("wrong");
      await expect(bad.connect(20_000)).rejects.toThrow(/not-authorized/);
      const s = session("alicepw");
      expect(await s.connect()).toBe("new");
      expect(s.saslMechanism).toBe("SCRAM-SHA-256");
      await s.close();
    },
    T,
  );
});
