import { Resolver } from "node:dns/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDnsServer, type DnsTestServer } from "../src/index.js";

describe("startDnsServer", () => {
  let dns: DnsTestServer;
  const resolver = new Resolver({ timeout: 2000, tries: 2 });
  beforeAll(async () => {
    dns = await startDnsServer({
      srv: {
        "_xmpp-client._tcp.example.test": [
          { priority: 1, weight: 5, port: 5223, target: "xmpp.example.test" },
        ],
      },
      a: { "xmpp.example.test": ["127.0.0.1"] },
    });
    resolver.setServers([dns.address]);
  });
  afterAll(() => dns?.close());

  it("answers configured SRV and A records", async () => {
    expect(await resolver.resolveSrv("_xmpp-client._tcp.example.test")).toEqual([
      { priority: 1, weight: 5, port: 5223, name: "xmpp.example.test" },
    ]);
    expect(await resolver.resolve4("XMPP.example.test")).toEqual(["127.0.0.1"]);
    expect(dns.queries).toContain("SRV _xmpp-client._tcp.example.test");
  });

  it("NXDOMAIN for other names, NODATA for another type of a known name", async () => {
    await expect(resolver.resolveSrv("_xmpps-client._tcp.example.test")).rejects.toMatchObject({
      code: "ENOTFOUND",
    });
    await expect(resolver.resolve4("nowhere.test")).rejects.toMatchObject({ code: "ENOTFOUND" });
    await expect(resolver.resolveSrv("xmpp.example.test")).rejects.toMatchObject({
      code: "ENODATA",
    });
  });

  it("serves replaced records", async () => {
    dns.setRecords({ a: { "other.test": ["127.0.0.2"] } });
    expect(await resolver.resolve4("other.test")).toEqual(["127.0.0.2"]);
    await expect(resolver.resolve4("xmpp.example.test")).rejects.toMatchObject({
      code: "ENOTFOUND",
    });
  });
});
