import { Socket } from "node:net";
import { pino } from "pino";
import { describe, expect, it, vi } from "vitest";
import { ComponentLink } from "../src/component-link.js";
import { FakeComponentServer } from "../src/testing/component-server.js";
import { escapeXml } from "../src/xml.js";

const NS = "urn:ietf:params:xml:ns:xmpp-stanzas";

/** The replies as the link wrote them before their addresses were cached (the reference). */
function expected(
  kind: "result" | "error",
  req: { id: string; from: string; to: string },
  domain: string,
): string {
  const addr = `to='${escapeXml(req.from)}' from='${escapeXml(req.to || domain)}'`;
  if (kind === "result") return `<iq type='result' id='${escapeXml(req.id)}' ${addr}/>`;
  return (
    `<iq type='error' id='${escapeXml(req.id)}' ${addr}>` +
    `<error type='wait'><resource-constraint xmlns='${NS}'/>` +
    `<text xmlns='${NS}'>${escapeXml("a <b> & 'c'")}</text></error></iq>`
  );
}

describe("the component link's replies", () => {
  it("are the same text whatever the previous reply's addresses were", () => {
    const domain = "push.example";
    const link = new ComponentLink({
      service: "xmpp://127.0.0.1:1",
      domain,
      secret: "s",
      initialDelayMs: 1000,
      maxDelayMs: 1000,
      logger: pino({ level: "silent" }),
      onStanza: () => undefined,
    });
    const written: string[] = [];
    // the link's entity, as far as write() and flush() use it
    (link as unknown as { entity: unknown }).entity = {
      socket: {},
      write: (d: string) => {
        written.push(d);
        return Promise.resolve();
      },
    };
    const froms = ["", "a.example", "b.example", "x'&<>\"y.example", "a.example"];
    const tos = ["", domain, "other.example", "<o>", domain];
    const want: string[] = [];
    let n = 0;
    for (const from of froms)
      for (const to of tos)
        for (const kind of ["result", "error", "result"] as const) {
          const req = { id: n % 3 === 0 ? `i&'${n}` : String(n), from, to };
          n++;
          if (kind === "result") link.replyResult(req);
          else
            link.replyError(req, {
              type: "wait",
              condition: "resource-constraint",
              text: "a <b> & 'c'",
            });
          want.push(expected(kind, req, domain));
        }
    (link as unknown as { flush(): void }).flush();
    expect(written).toEqual([want.join("")]);
  });
});

describe("the component link's socket", () => {
  // Nagle's algorithm held a reply written while an earlier one was unacknowledged until the
  // server's delayed ACK (40 ms on Linux): the last replies of every burst were 40 ms late.
  it("has Nagle's algorithm off, after a reconnect too", async () => {
    const xmpp = new FakeComponentServer("push.example", "s");
    await xmpp.listen();
    const noDelay = new Map<Socket, unknown>();
    const spy = vi.spyOn(Socket.prototype, "setNoDelay").mockImplementation(function (
      this: Socket,
      on?: boolean,
    ) {
      noDelay.set(this, on ?? true);
      return this;
    });
    const link = new ComponentLink({
      service: xmpp.service,
      domain: "push.example",
      secret: "s",
      initialDelayMs: 10,
      maxDelayMs: 10,
      logger: pino({ level: "silent" }),
      onStanza: () => undefined,
    });
    const socketOf = () => (link as unknown as { entity: { socket: Socket } }).entity.socket;
    try {
      link.start();
      await xmpp.waitConnected();
      const first = socketOf();
      expect(noDelay.get(first)).toBe(true);
      const back = new Promise((r) => xmpp.once("online", r));
      xmpp.dropConnection();
      await back;
      const second = socketOf();
      expect(second).not.toBe(first);
      expect(noDelay.get(second)).toBe(true);
    } finally {
      spy.mockRestore();
      await link.stop();
      await xmpp.close();
    }
  });
});
