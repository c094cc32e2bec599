import { client, xml, type Client } from "@xmpp/client";
import { until } from "./nodes.js";

const inboundCount = new WeakMap<Client, () => number>();

export interface Account {
  c2sPort: number;
  domain: string;
  username: string;
  password: string;
}

/** Logs in (plain TCP on loopback), sends presence, waits for stream management. */
export async function login(a: Account, resource = "phone"): Promise<Client> {
  const x = client({
    service: `xmpp://127.0.0.1:${a.c2sPort}`,
    domain: a.domain,
    username: a.username,
    password: a.password,
    resource,
  });
  x.on("error", () => undefined);
  // xmpp.js 0.14 does not count every inbound stanza (IQ results consumed by its iq caller are
  // missed), so acks would be short: count stanzas received under stream management ourselves.
  let handled = 0;
  x.on("stanza", () => {
    if (x.streamManagement.enabled) handled++;
  });
  inboundCount.set(x, () => handled);
  // ... and make every <a/> (including the ones xmpp.js sends on its own for <r/>) carry it.
  const send = x.send.bind(x);
  x.send = (el) => {
    if (el.name === "a" && el.attrs.xmlns === "urn:xmpp:sm:3") {
      el.attrs.h = String(Math.max(Number(el.attrs.h ?? 0), handled));
    }
    return send(el);
  };
  await x.start();
  await until(() => x.streamManagement.enabled, "stream management enabled", 20_000);
  await x.send(xml("presence"));
  return x;
}

/** XEP-0357 enable on the user's own server: the device token is the node. */
export async function enablePush(
  x: Client,
  appserverJid: string,
  token: string,
  pushModule?: string,
): Promise<void> {
  const form = pushModule
    ? xml(
        "x",
        { xmlns: "jabber:x:data", type: "submit" },
        xml(
          "field",
          { var: "FORM_TYPE" },
          xml("value", {}, "http://jabber.org/protocol/pubsub#publish-options"),
        ),
        xml("field", { var: "pushModule" }, xml("value", {}, pushModule)),
      )
    : undefined;
  await x.iqCaller.request(
    xml(
      "iq",
      { type: "set" },
      xml("enable", { xmlns: "urn:xmpp:push:0", jid: appserverJid, node: token }, form),
    ),
    20_000,
  );
}

/**
 * Goes "offline" the way a suspended phone does: everything received is acked first (so the server
 * has no unacked stanza that would itself trigger a push), then the socket dies without a close, and
 * the server hibernates the stream-management session.
 */
export async function hibernate(x: Client): Promise<void> {
  x.reconnect.stop();
  // A round trip makes sure every stanza the server sent before it (presence echo...) arrived.
  await x.iqCaller.request(
    xml("iq", { type: "get" }, xml("ping", { xmlns: "urn:xmpp:ping" })),
    20_000,
  );
  const h = inboundCount.get(x)!;
  await x.send(xml("a", { xmlns: "urn:xmpp:sm:3", h: String(h()) }));
  await x.iqCaller.request(
    xml("iq", { type: "get" }, xml("ping", { xmlns: "urn:xmpp:ping" })),
    20_000,
  );
  await x.send(xml("a", { xmlns: "urn:xmpp:sm:3", h: String(h()) }));
  const s = x.socket;
  (s?.socket ?? s)?.destroy();
}

export async function sendChat(x: Client, to: string, body: string): Promise<void> {
  await x.send(xml("message", { to, type: "chat" }, xml("body", {}, body)));
  // Round trip: the server processed the message once the ping comes back.
  await x.iqCaller.request(
    xml("iq", { type: "get" }, xml("ping", { xmlns: "urn:xmpp:ping" })),
    20_000,
  );
}

export { xml };
