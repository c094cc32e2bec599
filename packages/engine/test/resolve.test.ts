// Server resolution (RFC 6120 §3.2, RFC 2782, XEP-0368) with an in-memory resolver: the order,
// the weighted choice under a seeded random, "." targets and the fallback. The same code against a
// real DNS server on loopback and real XMPP servers: client.test.ts.
import { prng } from "@lichen/test-kit";
import { testSeed } from "@lichen/test-kit/vitest";
import { describe, expect, it } from "vitest";
import {
  orderSrv,
  resolveXmppServices,
  ServiceResolutionError,
  type DnsResolver,
  type Srv,
} from "../src/index.js";

type SrvAnswer = { name: string; port: number; priority: number; weight: number };

/** Answers from tables; a name not in them is NXDOMAIN, as node:dns reports it. */
function tableResolver(t: {
  srv?: Record<string, SrvAnswer[]>;
  a?: Record<string, string[]>;
  aaaa?: Record<string, string[]>;
}): DnsResolver {
  const get = async <T>(m: Record<string, T[]> | undefined, name: string): Promise<T[]> => {
    const v = m?.[name];
    if (!v) throw Object.assign(new Error(`queryX ENOTFOUND ${name}`), { code: "ENOTFOUND" });
    return v;
  };
  return {
    resolveSrv: (n) => get(t.srv, n),
    resolve4: (n) => get(t.a, n),
    resolve6: (n) => get(t.aaaa, n),
  };
}

const srv = (name: string, port: number, priority = 0, weight = 0): SrvAnswer => ({
  name,
  port,
  priority,
  weight,
});

describe("resolveXmppServices", () => {
  it("falls back to the domain on 5222 (IPv4 and IPv6 addresses) without SRV records", async () => {
    const r = tableResolver({
      a: { "ex.test": ["192.0.2.1"] },
      aaaa: { "ex.test": ["2001:db8::1"] },
    });
    expect((await resolveXmppServices("ex.test", { resolver: r })).map((c) => c.service)).toEqual([
      "xmpp://192.0.2.1:5222",
      "xmpp://[2001:db8::1]:5222",
    ]);
  });

  it("throws ServiceResolutionError (domain-not-found) when the domain has no records at all", async () => {
    const err = await resolveXmppServices("nowhere.test", { resolver: tableResolver({}) }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ServiceResolutionError);
    expect(err).toMatchObject({ reason: "domain-not-found", domain: "nowhere.test" });
  });

  it("orders by priority, and prefers direct TLS at equal priority (XEP-0368)", async () => {
    const r = tableResolver({
      srv: {
        "_xmpps-client._tcp.ex.test": [srv("tls.ex.test", 5223, 10), srv("tls2.ex.test", 443, 20)],
        "_xmpp-client._tcp.ex.test": [srv("tcp.ex.test", 5222, 10), srv("first.ex.test", 5222, 5)],
      },
      a: {
        "tls.ex.test": ["192.0.2.10"],
        "tls2.ex.test": ["192.0.2.20"],
        "tcp.ex.test": ["192.0.2.30"],
        "first.ex.test": ["192.0.2.5"],
      },
    });
    const c = await resolveXmppServices("ex.test", { resolver: r });
    expect(c.map((x) => x.service)).toEqual([
      "xmpp://192.0.2.5:5222",
      "xmpps://192.0.2.10:5223",
      "xmpp://192.0.2.30:5222",
      "xmpps://192.0.2.20:443",
    ]);
    expect(c[1]).toEqual({
      service: "xmpps://192.0.2.10:5223",
      host: "tls.ex.test",
      port: 5223,
      directTls: true,
    });
  });

  it('a single "." target means not offered: the other service is used, or none', async () => {
    const a = { "tls.ex.test": ["192.0.2.10"], "ex.test": ["192.0.2.1"] };
    const onlyTls = tableResolver({
      srv: {
        "_xmpps-client._tcp.ex.test": [srv("tls.ex.test", 5223)],
        "_xmpp-client._tcp.ex.test": [srv("", 0)], // node:dns gives "." as ""
      },
      a,
    });
    expect(
      (await resolveXmppServices("ex.test", { resolver: onlyTls })).map((c) => c.service),
    ).toEqual(["xmpps://192.0.2.10:5223"]);
    // Not offered: no fallback to the domain's own address even though it has one.
    const none = tableResolver({ srv: { "_xmpp-client._tcp.ex.test": [srv(".", 0)] }, a });
    await expect(resolveXmppServices("ex.test", { resolver: none })).rejects.toMatchObject({
      name: "ServiceResolutionError",
      reason: "service-not-offered",
    });
  });

  it("skips SRV targets without an address; none with one → no-address", async () => {
    const some = tableResolver({
      srv: {
        "_xmpp-client._tcp.ex.test": [srv("gone.ex.test", 5222, 1), srv("ok.ex.test", 5269, 2)],
      },
      a: { "ok.ex.test": ["192.0.2.7"] },
    });
    expect(
      (await resolveXmppServices("ex.test", { resolver: some })).map((c) => c.service),
    ).toEqual(["xmpp://192.0.2.7:5269"]);
    const none = tableResolver({
      srv: { "_xmpp-client._tcp.ex.test": [srv("gone.ex.test", 5222)] },
      a: { "ex.test": ["192.0.2.1"] },
    });
    await expect(resolveXmppServices("ex.test", { resolver: none })).rejects.toMatchObject({
      reason: "no-address",
    });
  });
});

describe("orderSrv (RFC 2782 weighted choice)", () => {
  const rec = (target: string, priority: number, weight: number, directTls = false): Srv => ({
    target,
    port: 5222,
    priority,
    weight,
    directTls,
  });

  it("picks within a priority in proportion to weight, under a seeded random", () => {
    const random = prng(testSeed());
    const records = [
      rec("a", 1, 60),
      rec("b", 1, 30),
      rec("c", 1, 10),
      rec("z", 0, 0),
      rec("last", 2, 100),
    ];
    const first: Record<string, number> = { a: 0, b: 0, c: 0 };
    const N = 4000;
    for (let i = 0; i < N; i++) {
      const order = orderSrv(records, random).map((r) => r.target);
      expect(order[0]).toBe("z"); // priority 0 first, whatever its weight
      expect(order[4]).toBe("last");
      expect(new Set(order.slice(1, 4))).toEqual(new Set(["a", "b", "c"]));
      first[order[1]!]!++;
    }
    // Expected 60/30/10 % (of 101 slots: the pick is in [0, total]); 4000 draws: ±3 points is
    // more than 5 standard deviations.
    expect(first.a! / N).toBeGreaterThan(0.56);
    expect(first.a! / N).toBeLessThan(0.63);
    expect(first.b! / N).toBeGreaterThan(0.26);
    expect(first.b! / N).toBeLessThan(0.33);
    expect(first.c! / N).toBeGreaterThan(0.07);
    expect(first.c! / N).toBeLessThan(0.13);
  });

  it("zero-weight records come first in the running sum: chosen only at pick 0", () => {
    const records = [rec("heavy", 1, 10), rec("zero", 1, 0)];
    expect(orderSrv(records, () => 0).map((r) => r.target)).toEqual(["zero", "heavy"]);
    expect(orderSrv(records, () => 0.5).map((r) => r.target)).toEqual(["heavy", "zero"]);
  });

  it("direct TLS before STARTTLS of the same priority, never before a better priority", () => {
    const records = [rec("tcp", 1, 50), rec("tls", 1, 50, true), rec("tcp0", 0, 1)];
    expect(orderSrv(records, () => 0.99).map((r) => r.target)).toEqual(["tcp0", "tls", "tcp"]);
  });
});
