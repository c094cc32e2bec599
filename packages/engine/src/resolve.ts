// Where to connect for a domain, as other XMPP clients find it: DNS SRV for direct TLS
// (XEP-0368, `_xmpps-client._tcp`) and STARTTLS (RFC 6120 §3.2.1, `_xmpp-client._tcp`), else the
// domain itself on 5222 (RFC 6120 §3.2.2).
import { Resolver } from "node:dns/promises";

/** One place to try, in order. `service` is what the session connects to. */
export interface ServiceCandidate {
  /** e.g. "xmpp://192.0.2.1:5222" or "xmpps://[2001:db8::1]:5223" */
  service: string;
  /** The SRV target (or the domain, for the fallback) the address came from. */
  host: string;
  port: number;
  /** XEP-0368 direct TLS (TLS from the first byte) rather than STARTTLS. */
  directTls: boolean;
}

/** The DNS lookups used; node:dns/promises' Resolver fits (tests point one at a loopback server). */
export interface DnsResolver {
  resolveSrv(
    name: string,
  ): Promise<{ name: string; port: number; priority: number; weight: number }[]>;
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
}

/**
 * The domain's XMPP service cannot be reached: `domain-not-found` (no SRV records and no address
 * for the domain), `service-not-offered` (SRV target "."), `no-address` (SRV targets without an
 * address), `unreachable` (every candidate refused the connection).
 */
export class ServiceResolutionError extends Error {
  override readonly name = "ServiceResolutionError";
  constructor(
    readonly domain: string,
    readonly reason: "domain-not-found" | "service-not-offered" | "no-address" | "unreachable",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface ResolveOptions {
  /** Default: a node:dns/promises Resolver with the system's servers. */
  resolver?: DnsResolver;
  /** [0, 1) source for the SRV weight choice (default Math.random); inject a seeded one in tests. */
  random?: () => number;
}

/** An SRV record of either service, as orderSrv() sorts it. */
export interface Srv {
  target: string;
  port: number;
  priority: number;
  weight: number;
  directTls: boolean;
}

/** SRV records of `name`; none when the name or the records do not exist. */
async function lookupSrv(resolver: DnsResolver, name: string, directTls: boolean): Promise<Srv[]> {
  try {
    const records = await resolver.resolveSrv(name);
    return records.map((r) => ({
      target: r.name.replace(/\.$/, ""),
      port: r.port,
      priority: r.priority,
      weight: r.weight,
      directTls,
    }));
  } catch {
    // NXDOMAIN, NODATA, or no DNS at all: the fallback's address lookup then decides.
    return [];
  }
}

/** A target's addresses (IPv4 first), via the same resolver, so a test's DNS decides all of it. */
async function addresses(resolver: DnsResolver, host: string): Promise<string[]> {
  const [v4, v6] = await Promise.allSettled([resolver.resolve4(host), resolver.resolve6(host)]);
  return [
    ...(v4.status === "fulfilled" ? v4.value : []),
    ...(v6.status === "fulfilled" ? v6.value.map((a) => `[${a}]`) : []),
  ];
}

/**
 * RFC 2782 order: priority ascending; within a priority, a weighted random pick repeated (zero
 * weights first, so they are chosen only rarely). Direct TLS records go before STARTTLS ones of the
 * same priority (XEP-0368: prefer direct TLS on ties).
 */
export function orderSrv(records: readonly Srv[], random: () => number = Math.random): Srv[] {
  const out: Srv[] = [];
  const groups = new Map<string, Srv[]>();
  for (const r of records) {
    const key = `${r.priority}:${r.directTls ? 0 : 1}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const keys = [...groups.keys()].sort((a, b) => {
    const [pa, ta] = a.split(":").map(Number) as [number, number];
    const [pb, tb] = b.split(":").map(Number) as [number, number];
    return pa - pb || ta - tb;
  });
  for (const key of keys) {
    const left = [...groups.get(key)!].sort(
      (a, b) => (a.weight === 0 ? 0 : 1) - (b.weight === 0 ? 0 : 1),
    );
    while (left.length > 0) {
      const total = left.reduce((s, r) => s + r.weight, 0);
      const pick = Math.floor(random() * (total + 1));
      let sum = 0;
      let i = left.findIndex((r) => (sum += r.weight) >= pick);
      if (i === -1) i = left.length - 1;
      out.push(left.splice(i, 1)[0]!);
    }
  }
  return out;
}

/**
 * Candidates for `domain`, in the order to try them. Throws ServiceResolutionError when there is
 * nowhere to connect.
 */
export async function resolveXmppServices(
  domain: string,
  opts: ResolveOptions = {},
): Promise<ServiceCandidate[]> {
  const resolver = opts.resolver ?? new Resolver({ timeout: 3000, tries: 2 });
  const [tls, plain] = await Promise.all([
    lookupSrv(resolver, `_xmpps-client._tcp.${domain}`, true),
    lookupSrv(resolver, `_xmpp-client._tcp.${domain}`, false),
  ]);
  // A single "." target: that service is decidedly not available (RFC 2782, RFC 6120 §3.2.1).
  const offered = (list: Srv[]) => !(list.length === 1 && list[0]!.target === "");
  const srv = [...(offered(tls) ? tls : []), ...(offered(plain) ? plain : [])].filter(
    (r) => r.target !== "",
  );
  if (srv.length === 0) {
    if (tls.length > 0 || plain.length > 0)
      throw new ServiceResolutionError(
        domain,
        "service-not-offered",
        `${domain} does not offer XMPP client service (SRV target ".")`,
      );
    const addrs = await addresses(resolver, domain);
    if (addrs.length === 0)
      throw new ServiceResolutionError(
        domain,
        "domain-not-found",
        `${domain} has no XMPP SRV records and no address`,
      );
    return addrs.map((a) => ({
      service: `xmpp://${a}:5222`,
      host: domain,
      port: 5222,
      directTls: false,
    }));
  }
  const out: ServiceCandidate[] = [];
  const ordered = orderSrv(srv, opts.random);
  const resolved = await Promise.all(ordered.map((r) => addresses(resolver, r.target)));
  ordered.forEach((r, i) => {
    for (const a of resolved[i]!)
      out.push({
        service: `${r.directTls ? "xmpps" : "xmpp"}://${a}:${r.port}`,
        host: r.target,
        port: r.port,
        directTls: r.directTls,
      });
  });
  if (out.length === 0)
    throw new ServiceResolutionError(
      domain,
      "no-address",
      `the SRV targets of ${domain} (${ordered.map((r) => `${r.target}:${r.port}`).join(", ")}) have no address`,
    );
  return out;
}
