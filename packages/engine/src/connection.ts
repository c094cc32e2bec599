// Builds an xmpp.js 0.14 client WITHOUT its stream-management plugin: SASL, TLS, binding and XML
// come from xmpp.js; XEP-0198 is ours (see session.ts), because the stock plugin counts stanzas
// before they are committed and never counts IQ results consumed by its iq-caller.
import { Client, jid as parseJid } from "@xmpp/client-core";
import iqCallerFactory from "@xmpp/iq/caller.js";
import middlewareFactory from "@xmpp/middleware";
import resourceBindingFactory from "@xmpp/resource-binding";
import saslFactoryFn from "@xmpp/sasl";
import plain from "@xmpp/sasl-plain";
import scramsha1 from "@xmpp/sasl-scram-sha-1";
import starttlsFactory from "@xmpp/starttls";
import streamFeaturesFactory from "@xmpp/stream-features";
import tcpFactory from "@xmpp/tcp";
import tlsFactory from "@xmpp/tls";
import SASLFactory from "saslmechanisms";

export interface ConnectionOptions {
  /** e.g. "xmpp://127.0.0.1:5222" */
  service: string;
  domain: string;
  username: string;
  password: string;
  resource?: string;
}

export interface XmppConnection {
  entity: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  middleware: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  streamFeatures: any; // eslint-disable-line @typescript-eslint/no-explicit-any
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
  tlsFactory({ entity });
  const middleware = middlewareFactory({ entity });
  const streamFeatures = streamFeaturesFactory({ middleware });
  const iqCaller = iqCallerFactory({ middleware, entity });
  const saslFactory = new SASLFactory();
  scramsha1(saslFactory);
  plain(saslFactory);
  starttlsFactory({ streamFeatures });
  saslFactoryFn(
    { streamFeatures, saslFactory },
    async (authenticate: (c: object, m: string) => Promise<void>, mechanisms: string[]) => {
      const mechanism = mechanisms.includes("SCRAM-SHA-1")
        ? "SCRAM-SHA-1"
        : mechanisms.find((m) => m === "PLAIN");
      if (!mechanism)
        throw new Error(`no supported SASL mechanism offered (${mechanisms.join(", ")})`);
      await authenticate({ username: opts.username, password: opts.password }, mechanism);
    },
  );
  const conn: XmppConnection = { entity, middleware, streamFeatures };
  registerSm(conn);
  resourceBindingFactory({ iqCaller, streamFeatures }, opts.resource);
  return conn;
}
