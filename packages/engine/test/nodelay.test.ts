import { readFileSync } from "node:fs";
import { Socket } from "node:net";
import { freePort, startProsody, type ProsodyOptions } from "@lichen/test-servers";
import {
  afterAll,
  beforeAll,
  beforeEach,
  describe,
  expect,
  it,
  vi,
  type MockInstance,
} from "vitest";
import { SERVERS, useEngineEnv } from "./helpers.js";

const T = 120_000;

// Nagle's algorithm held the <r/> written after a flush's stanzas until the server acknowledged
// them at the TCP level (its delayed ACK, or a round trip on a slow link): every send → <a/>
// cycle took that much longer. The session's socket must have TCP_NODELAY, whichever transport.
// Recorded: the remote port of every socket of this process that had Nagle turned off.
const noDelayPorts: number[] = [];
let spy: MockInstance | undefined;
beforeAll(() => {
  const original = Socket.prototype.setNoDelay;
  spy = vi.spyOn(Socket.prototype, "setNoDelay").mockImplementation(function (
    this: Socket,
    noDelay?: boolean,
  ) {
    if (noDelay !== false && this.remotePort !== undefined) noDelayPorts.push(this.remotePort);
    return original.call(this, noDelay);
  });
});
afterAll(() => spy?.mockRestore());
beforeEach(() => {
  noDelayPorts.length = 0;
});

describe.each(SERVERS)("the session's socket on %s has Nagle's algorithm off", (_kind, start) => {
  const plain = useEngineEnv(start, { users: ["alice"], prefix: "lichen-nodelay-" });
  const tls = useEngineEnv(start, { users: ["alice"], tls: true, prefix: "lichen-nodelay-tls-" });

  it(
    "over plain TCP, and again after a reconnect",
    async () => {
      const s = plain.session({});
      try {
        expect(await s.connect()).toBe("new");
        expect(noDelayPorts).toContain(plain.server.c2sPort);
        await s.suspend();
        noDelayPorts.length = 0;
        expect(await s.connect()).toBe("resumed");
        expect(noDelayPorts).toContain(plain.server.c2sPort);
      } finally {
        await s.close();
      }
    },
    T,
  );

  it(
    "with STARTTLS (set on the TCP socket before the upgrade)",
    async () => {
      const s = tls.session({ tls: { ca: readFileSync(tls.server.caCertPath) } });
      try {
        expect(await s.connect()).toBe("new");
        expect(s.secure).toBe(true);
        expect(noDelayPorts).toContain(tls.server.c2sPort);
      } finally {
        await s.close();
      }
    },
    T,
  );
});

describe("the session's socket with direct TLS (XEP-0368) has Nagle's algorithm off", () => {
  let tlsPort = 0;
  const env = useEngineEnv(
    async (o: ProsodyOptions = {}) => {
      tlsPort = await freePort();
      return startProsody({ ...o, extraConfig: `c2s_direct_tls_ports = { ${tlsPort} }\n` });
    },
    { users: ["alice"], tls: true, prefix: "lichen-nodelay-xmpps-" },
  );

  it(
    "on the TLS socket node:tls connected",
    async () => {
      const s = env.session({
        service: `xmpps://127.0.0.1:${tlsPort}`,
        tls: { ca: readFileSync(env.server.caCertPath) },
      });
      try {
        expect(await s.connect()).toBe("new");
        expect(s.secure).toBe(true);
        expect(noDelayPorts).toContain(tlsPort);
      } finally {
        await s.close();
      }
    },
    T,
  );
});
