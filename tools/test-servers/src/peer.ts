// A plain xmpp.js client as the other side of a conversation in tests ("bob"): it records the
// messages it gets, answers test IQs only when the test says so, and can wait until the server
// has routed everything it sent.
import { client, xml } from "@xmpp/client";

/** The xmpp.js client underneath, for tests that send raw stanzas or watch its events. */
export interface TestPeerClient {
  status: string;
  send(element: unknown): Promise<void>;
  /** Raw XML straight to the socket (for input no element can represent). */
  write(xml: string): Promise<void>;
  on(event: string, listener: (...args: any[]) => void): unknown; // eslint-disable-line @typescript-eslint/no-explicit-any
  iqCaller: { request(element: unknown, timeout?: number): Promise<unknown> };
  stop(): Promise<unknown>;
}

export interface ReceivedMessage {
  from: string;
  body: string | null;
  id: string;
  /** The whole <message/> element (an @xmpp/xml Element). */
  stanza: unknown;
}

export interface PendingTestIq {
  from: string;
  id: string;
  /** Send the (empty) result now. */
  answer(): void;
}

export interface TestPeer {
  xmpp: TestPeerClient;
  /** Every <message/> received, in order. */
  received: ReceivedMessage[];
  /** IQs in the `urn:lichen:test` namespace, unanswered until answer() is called. */
  iqs: PendingTestIq[];
  /** A chat message with a unique id (`<body>-<random>`). */
  send(to: string, body: string): Promise<void>;
  /** A ping round trip to the server: everything sent before it has been routed. */
  barrier(): Promise<unknown>;
  stop(): Promise<void>;
}

/**
 * Resolves once xmpp.js's stock stream management is enabled. Call it after `start()` and before
 * sending anything: xmpp.js 0.14 counts stanzas that arrive before `<enabled/>` (e.g. the echo of
 * its own initial presence, a room's join flood), acknowledges more than the server sent, and
 * Prosody ends the stream ("Client acknowledged more stanzas than sent by server").
 */
export async function streamManagementEnabled(xmpp: unknown, timeoutMs = 10_000): Promise<void> {
  const sm = (xmpp as { streamManagement?: { enabled: boolean } }).streamManagement;
  if (!sm) return;
  const deadline = Date.now() + timeoutMs;
  while (!sm.enabled) {
    if (Date.now() > deadline)
      throw new Error(`xmpp.js stream management not enabled within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Logs in `username` on a test server's c2s port (domain "localhost", resource "desk") and sends presence. */
export async function startTestPeer(
  c2sPort: number,
  username: string,
  password: string,
  o: { domain?: string; resource?: string } = {},
): Promise<TestPeer> {
  const domain = o.domain ?? "localhost";
  const xmpp = client({
    service: `xmpp://127.0.0.1:${c2sPort}`,
    domain,
    username,
    password,
    resource: o.resource ?? "desk",
  });
  xmpp.on("error", () => {});
  xmpp.reconnect.stop();
  const received: ReceivedMessage[] = [];
  const iqs: PendingTestIq[] = [];
  // Answer test IQs only when the test says so (xmpp.js would otherwise reply at once).
  xmpp.iqCallee.get(
    "urn:lichen:test",
    "query",
    (ctx: { from: { toString(): string }; id: string }) =>
      new Promise((resolve) => {
        iqs.push({
          from: ctx.from.toString(),
          id: ctx.id,
          answer: () => resolve(xml("query", { xmlns: "urn:lichen:test" })),
        });
      }),
  );
  xmpp.on(
    "stanza",
    (s: {
      is(n: string): boolean;
      attrs: Record<string, string>;
      getChildText(n: string): string | null;
    }) => {
      if (s.is("message"))
        received.push({
          from: s.attrs.from!,
          body: s.getChildText("body"),
          id: s.attrs.id!,
          stanza: s,
        });
    },
  );
  await xmpp.start();
  await streamManagementEnabled(xmpp);
  await xmpp.send(xml("presence"));
  return {
    xmpp: xmpp as TestPeerClient,
    received,
    iqs,
    send: (to, body) =>
      xmpp.send(
        xml(
          "message",
          { to, type: "chat", id: `${body}-${Math.random().toString(36).slice(2)}` },
          xml("body", {}, body),
        ),
      ),
    barrier: () =>
      xmpp.iqCaller.request(
        xml("iq", { type: "get", to: domain }, xml("ping", { xmlns: "urn:xmpp:ping" })),
      ),
    stop: () =>
      xmpp.stop().then(
        () => undefined,
        () => undefined,
      ),
  };
}
