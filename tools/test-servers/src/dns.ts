// A DNS server on loopback that answers what a test configured, so SRV resolution (RFC 2782,
// RFC 6120 §3.2, XEP-0368) is tested without the real DNS: point a node:dns Resolver at it with
// setServers([`127.0.0.1:${port}`]).
import dgram from "node:dgram";
import * as dnsPacket from "dns-packet";

export interface SrvRecord {
  priority: number;
  weight: number;
  port: number;
  /** "." means "this service is not offered here" (RFC 2782). */
  target: string;
}

export interface DnsRecords {
  /** e.g. { "_xmpp-client._tcp.example.test": [{ priority: 0, weight: 5, port, target }] } */
  srv?: Record<string, SrvRecord[]>;
  /** e.g. { "xmpp.example.test": ["127.0.0.1"] } */
  a?: Record<string, string[]>;
}

export interface DnsTestServer {
  readonly host: "127.0.0.1";
  readonly port: number;
  /** For Resolver.setServers(). */
  readonly address: string;
  /** Questions received so far ("SRV _xmpp-client._tcp.example.test"), oldest first. */
  readonly queries: readonly string[];
  /** Replace the records answered from now on. */
  setRecords(records: DnsRecords): void;
  close(): Promise<void>;
}

/**
 * UDP on 127.0.0.1, a free port. Answers SRV and A questions for configured names; a configured
 * name asked for another type gets an empty answer (NODATA), any other name NXDOMAIN.
 */
export async function startDnsServer(initial: DnsRecords = {}): Promise<DnsTestServer> {
  let records = initial;
  const queries: string[] = [];
  const socket = dgram.createSocket("udp4");
  const lower = <T>(m: Record<string, T> | undefined) =>
    new Map(Object.entries(m ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  socket.on("message", (msg, rinfo) => {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return; // not DNS: ignore, as a real server would
    }
    const srv = lower(records.srv);
    const a = lower(records.a);
    const answers: dnsPacket.Answer[] = [];
    let known = false;
    for (const q of query.questions ?? []) {
      const name = q.name.toLowerCase();
      queries.push(`${q.type} ${name}`);
      if (srv.has(name) || a.has(name)) known = true;
      if (q.type === "SRV")
        for (const r of srv.get(name) ?? [])
          answers.push({ type: "SRV", name: q.name, ttl: 60, class: "IN", data: r });
      if (q.type === "A")
        for (const ip of a.get(name) ?? [])
          answers.push({ type: "A", name: q.name, ttl: 60, class: "IN", data: ip });
    }
    const reply = dnsPacket.encode({
      type: "response",
      id: query.id ?? 0,
      // QR set by type; AA (authoritative) + RD echoed; rcode 3 = NXDOMAIN.
      flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_DESIRED | (known ? 0 : 3),
      questions: query.questions ?? [],
      answers,
    });
    socket.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, "127.0.0.1", () => {
      socket.off("error", reject);
      resolve();
    });
  });
  const port = socket.address().port;
  return {
    host: "127.0.0.1",
    port,
    address: `127.0.0.1:${port}`,
    queries,
    setRecords(r) {
      records = r;
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
