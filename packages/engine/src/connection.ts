// Builds an xmpp.js 0.14 client WITHOUT its stream-management plugin: SASL, TLS, binding and XML
// come from xmpp.js; XEP-0198 is ours (sm-negotiation.ts, stream-management.ts), because the stock plugin counts stanzas
// before they are committed and never counts IQ results consumed by its iq-caller.
import { Client, jid as parseJid } from "@xmpp/client-core";
import iqCallerFactory from "@xmpp/iq/caller.js";
import middlewareFactory from "@xmpp/middleware";
import resourceBindingFactory from "@xmpp/resource-binding";
import saslFactoryFn from "@xmpp/sasl";
import plain from "@xmpp/sasl-plain";
import { canUpgrade } from "@xmpp/starttls/starttls.js";
import { promise } from "@xmpp/events";
import TlsSocket from "@xmpp/tls/lib/Socket.js";
import xml from "@xmpp/xml";
import streamFeaturesFactory from "@xmpp/stream-features";
import tcpFactory from "@xmpp/tcp";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import ConnectionTLS from "@xmpp/tls/lib/Connection.js";
import SASLFactory from "saslmechanisms";
import { ScramMechanism, scramMechanisms } from "./scram.js";

const NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls";

/** Plaintext authentication is only acceptable to a server on this machine (tests, a local proxy). */
function isLoopbackService(service: string): boolean {
  try {
    const host = new URL(service).hostname.replace(/^\[|\]$/g, "");
    return host === "localhost" || host === "::1" || /^127\./.test(host);
  } catch {
    return false;
  }
}
/** Strongest first; PLAIN only where a server offers nothing else. */
const MECHANISM_PREFERENCE = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"];

/**
 * Where TLS sessions are kept between connections (and processes), by endpoint
 * (`address:port|servername`). A session is a secret for that TLS session: never log it.
 */
export interface TlsSessionCache {
  load(endpoint: string): Buffer | null;
  save(endpoint: string, session: Buffer): void;
  drop(endpoint: string): void;
}

export interface ConnectionOptions {
  /** e.g. "xmpp://127.0.0.1:5222" */
  service: string;
  domain: string;
  username: string;
  password: string;
  resource?: string;
  /** TLS: extra trusted CA certificates (PEM), e.g. a private server's own CA. */
  tls?: { ca?: string | Buffer | (string | Buffer)[] };
  /**
   * Authenticate without TLS? Default: only to a loopback address. Elsewhere a server without
   * STARTTLS (or a stripped STARTTLS offer) is refused before any credentials are sent.
   */
  allowPlaintext?: boolean;
  /** Resume TLS sessions across connections: the handshake then skips the certificate. */
  tlsSessions?: TlsSessionCache;
}

export interface XmppConnection {
  entity: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  middleware: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  streamFeatures: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** The SASL mechanism chosen for this connection. */
  mechanism?: string;
  /** Set when the server failed SCRAM's mutual authentication. */
  authFailure?: Error;
  /** After STARTTLS: whether the TLS session was resumed (abbreviated handshake). */
  tlsSessionReused?: boolean;
}

interface TlsSocketWrapper {
  socket: TLSSocket;
  connect(o: object): void;
}

/** The part of a socket (node:net's, or xmpp.js' TLS wrapper's inner one) that turns Nagle off. */
interface NoDelaySocket {
  setNoDelay?(noDelay?: boolean): unknown;
}

/**
 * Starts STARTTLS's TLS handshake on the connected socket (xmpp.js's Socket wrapper, as
 * @xmpp/starttls's upgrade), offering `session` when given; every session the server issues (TLS
 * 1.3 tickets come after the handshake) is passed to `onSession`. Throws synchronously when
 * OpenSSL cannot use the options (e.g. an unparsable session): nothing is sent then.
 */
function beginTls(
  socket: Socket,
  options: Record<string, unknown>,
  onSession: (session: Buffer) => void,
): TlsSocketWrapper {
  const wrapper = new TlsSocket() as TlsSocketWrapper;
  wrapper.connect({ socket, ...options });
  wrapper.socket.on("session", onSession);
  return wrapper;
}

/**
 * `registerSm` is called between SASL and resource binding so our XEP-0198 feature handler can
 * resume (skipping bind) or let bind run and then enable.
 */
export function createConnection(
  opts: ConnectionOptions,
  registerSm: (c: XmppConnection) => void,
): XmppConnection {
  const entity = new Client({ service: opts.service, domain: opts.domain });
  entity.jid = parseJid(opts.username, opts.domain);
  tcpFactory({ entity });
  // Nagle's algorithm off (TCP_NODELAY), as node:http2 does for its sockets. The stanzas a flush
  // writes and the <r/> after them are separate small writes: with Nagle the <r/> waited for the
  // server's ACK of the stanzas (its delayed ACK, 40 ms on Linux, or a round trip on a slow link)
  // before it left, so every send → <a/> cycle took that much longer. Set on the TCP socket
  // (STARTTLS keeps it under TLS) or on direct TLS's (node:tls forwards it to the TCP handle).
  entity.on("connect", () => {
    const s = entity.socket as (NoDelaySocket & { socket?: NoDelaySocket | null }) | null;
    (s?.socket ?? s)?.setNoDelay?.(true);
  });
  // Direct TLS (XEP-0368, xmpps://): @xmpp/tls would verify the certificate against the URI's
  // host (an address, once an SRV target is resolved) and take no private CA; verify it for the
  // account's domain, as STARTTLS does below, and say which protocol we speak (ALPN).
  class DirectTls extends ConnectionTLS {
    socketParameters(service: string) {
      const p = super.socketParameters(service) as object | undefined;
      return (
        p && {
          ...p,
          servername: opts.domain,
          ALPNProtocols: ["xmpp-client"],
          ...(opts.tls?.ca ? { ca: opts.tls.ca } : {}),
        }
      );
    }
  }
  entity.transports.push(DirectTls);
  const middleware = middlewareFactory({ entity });
  const streamFeatures = streamFeaturesFactory({ middleware });
  const iqCaller = iqCallerFactory({ middleware, entity });
  const conn: XmppConnection = { entity, middleware, streamFeatures };
  const saslFactory = new SASLFactory();
  let scram: ScramMechanism | null = null;
  for (const m of scramMechanisms((created) => (scram = created))) saslFactory.use(m.name, m.ctor);
  plain(saslFactory);
  // xmpp.js ignores the data in <success/>: check the SCRAM server signature here (this listener
  // runs before xmpp.js's); the failure is thrown once authenticate() returns, below.
  entity.on("nonza", (el: { name: string; attrs: { xmlns?: string }; text(): string }) => {
    const mech: ScramMechanism | null = scram;
    if (el.name !== "success" || el.attrs.xmlns !== NS_SASL || !mech || mech.verified) return;
    try {
      mech.verifyServerFinal(Buffer.from(el.text(), "base64").toString());
    } catch (err) {
      conn.authFailure = err as Error;
    }
  });
  // STARTTLS (RFC 6120 §5) with the certificate verified for the account's domain; our own
  // feature handler instead of @xmpp/starttls so a private CA can be passed.
  streamFeatures.use(
    "starttls",
    NS_TLS,
    async ({ entity: e }: { entity: typeof entity }, next: () => Promise<void>) => {
      if (!canUpgrade(e.socket)) return next();
      const answer = await e.sendReceive(xml("starttls", { xmlns: NS_TLS }));
      if (!answer.is("proceed", NS_TLS)) throw new Error("the server refused STARTTLS");
      const raw = e.socket as Socket;
      // A ticket is bound to what issued it: this address and port, and the name verified.
      const endpoint = `${raw.remoteAddress}:${raw.remotePort}|${opts.domain}`;
      const cache = opts.tlsSessions;
      const options = {
        host: opts.domain,
        servername: opts.domain,
        ...(opts.tls?.ca ? { ca: opts.tls.ca } : {}),
      };
      const save = (s: Buffer) => cache?.save(endpoint, s);
      const saved = cache?.load(endpoint) ?? null;
      let tlsSocket: TlsSocketWrapper;
      let offered = saved !== null;
      try {
        tlsSocket = beginTls(raw, saved ? { ...options, session: saved } : options, save);
      } catch (err) {
        // A stored session OpenSSL cannot parse fails before a byte is sent: drop it and do a
        // full handshake on the same socket.
        if (!saved) throw err;
        cache?.drop(endpoint);
        offered = false;
        tlsSocket = beginTls(raw, options, save);
      }
      try {
        await promise(tlsSocket, "connect");
      } catch (err) {
        if (offered) cache?.drop(endpoint); // a failed handshake: never offer that ticket again
        throw err;
      }
      conn.tlsSessionReused = tlsSocket.socket.isSessionReused();
      e._attachSocket(tlsSocket);
      await e.restart();
    },
  );
  const allowPlaintext = opts.allowPlaintext ?? isLoopbackService(opts.service);
  saslFactoryFn(
    { streamFeatures, saslFactory },
    async (authenticate: (c: object, m: string) => Promise<void>, mechanisms: string[]) => {
      if (!entity.isSecure() && !allowPlaintext)
        throw new Error(
          `refusing to authenticate without TLS to ${opts.service} (the server offered no STARTTLS); ` +
            "set allowPlaintext only for a trusted local link",
        );
      const mechanism = MECHANISM_PREFERENCE.find((m) => mechanisms.includes(m));
      if (!mechanism)
        throw new Error(`no supported SASL mechanism offered (${mechanisms.join(", ")})`);
      conn.mechanism = mechanism;
      await authenticate({ username: opts.username, password: opts.password }, mechanism);
      if (conn.authFailure) throw conn.authFailure; // never bind to an impostor
    },
  );
  registerSm(conn);
  resourceBindingFactory({ iqCaller, streamFeatures }, opts.resource);
  return conn;
}
