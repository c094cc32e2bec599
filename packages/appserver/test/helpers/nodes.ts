import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { AppServer, type AppServerOptions } from "../../src/appserver.js";
import { validateConfig, type AppServerConfigInput } from "../../src/config.js";
import { FakeComponentServer } from "../../src/testing/component-server.js";
import { until as pollUntil } from "@lichen/test-kit";

export const HASH_SECRET = "cluster-secret-0123456789abcdef";

/** A syntactically valid APNs app for tests that pass their own `createSender`. */
export const UNUSED_APP = {
  type: "apns",
  topic: "im.lichen.unused",
  teamId: "TEAM000000",
  keyId: "KEY0000000",
  privateKeyPem: "-----BEGIN PRIVATE KEY-----\nunused\n-----END PRIVATE KEY-----\n",
  endpoint: "http://127.0.0.1:9",
} as const;

export interface TestNode {
  server: AppServer;
  xmpp: FakeComponentServer;
  dataDir: string;
  stop(): Promise<void>;
}

/** One appserver attached to a fake XMPP server (the XEP-0114 server side), own data dir. */
export async function startNode(
  createSender: AppServerOptions["createSender"],
  overrides: Partial<AppServerConfigInput> = {},
  opts: {
    dataDir?: string;
    logger?: AppServerOptions["logger"];
    clock?: AppServerOptions["clock"];
  } = {},
): Promise<TestNode> {
  const xmpp = new FakeComponentServer("push.localhost", "pushsecret");
  await xmpp.listen();
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), "lichen-push-node-"));
  const config = validateConfig({
    component: {
      service: xmpp.service,
      domain: "push.localhost",
      secret: "pushsecret",
      reconnectInitialDelay: "100ms",
    },
    apps: { default: UNUSED_APP },
    tokens: { hashSecret: HASH_SECRET },
    dataDir,
    http: { port: 0 },
    ...overrides,
  });
  const server = await AppServer.start({
    config,
    createSender,
    logger: opts.logger ?? pino({ level: "silent" }),
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  await xmpp.waitConnected();
  // The fake server has answered the handshake; wait until the appserver has read that answer too:
  // a test that then blocks its event loop (generating 10k IQs on a loaded machine) would otherwise
  // let xmpp.js' 2 s handshake timeout fire before the answer is read (the link then stays
  // "offline" although stanzas flow).
  await until(() => server.link.online, "the appserver's component link online");
  return {
    server,
    xmpp,
    dataDir,
    stop: async () => {
      await server.stop();
      await xmpp.close();
    },
  };
}

/** Resolves when `cond()` holds (the test kit's poll, every 10 ms), else rejects naming `what`. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  await pollUntil(cond, what, timeoutMs, 10);
}

/** Like `until` for an asynchronous condition. */
export const untilAsync = until;
