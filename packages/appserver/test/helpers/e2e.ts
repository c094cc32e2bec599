import { mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { destination, pino } from "pino";
import { AppServer } from "../../src/appserver.js";
import { validateConfig, type AppServerConfigInput } from "../../src/config.js";
import type { XmlElement } from "../../src/xml.js";
import type { ApnsHarness } from "./apns.js";
import type { XmppTestServer } from "@lichen/test-servers";
import { until } from "./nodes.js";

export interface E2E {
  server: AppServer;
  dataDir: string;
  logFile: string;
  stop(): Promise<void>;
}

/** An appserver attached to a real XMPP server's component port, logging at debug into a file. */
export async function attachAppServer(
  xmpp: XmppTestServer,
  apns: ApnsHarness,
  overrides: Partial<AppServerConfigInput> = {},
): Promise<E2E> {
  const dataDir = mkdtempSync(join(tmpdir(), "lichen-push-e2e-"));
  const logFile = join(dataDir, "appserver.log");
  const config = validateConfig({
    component: {
      service: `xmpp://127.0.0.1:${xmpp.componentPort}`,
      domain: xmpp.componentDomain,
      secret: xmpp.componentSecret,
      reconnectInitialDelay: "200ms",
      reconnectMaxDelay: "2s",
    },
    apps: { default: apns.appConfig },
    dataDir,
    http: { port: 0 },
    ...overrides,
  });
  const logger = pino({ level: "debug" }, destination({ dest: logFile, sync: true }));
  const server = await AppServer.start({ config, logger, createSender: apns.createSender });
  await until(() => server.link.online, `component online at ${xmpp.kind}`, 30_000);
  return { server, dataDir, logFile, stop: () => server.stop() };
}

/**
 * Every stanza the appserver receives from now on, as XML: what the XMPP server sent it (e.g. to
 * check that the operator snippet's privacy settings keep the message body and sender out).
 */
export function recordStanzas(server: AppServer): string[] {
  const seen: string[] = [];
  const s = server as unknown as { onStanza(el: XmlElement): void };
  const handle = s.onStanza.bind(server);
  s.onStanza = (el) => {
    seen.push(el.toString());
    handle(el);
  };
  return seen;
}

/** Text of every file the appserver wrote (log, SQLite db + WAL), for the privacy check. */
export function everythingWritten(dataDir: string): string {
  return readdirSync(dataDir)
    .map((f) => readFileSync(join(dataDir, f)).toString("latin1"))
    .join("\n");
}

/**
 * Number of push requests the appserver has answered so far (every outcome of a request; not the
 * `queued_*` and `retry_expired` outcomes of pushes sent or dropped later, which answer nothing).
 */
export async function requestsHandled(server: AppServer): Promise<number> {
  const m = await server.metrics.requests.get();
  return m.values
    .filter((v) => {
      const o = String(v.labels.outcome);
      return !o.startsWith("queued_") && o !== "retry_expired";
    })
    .reduce((a, v) => a + v.value, 0);
}

/** How many requests ended with `name` (a lichen_push_requests_total outcome). */
export async function outcome(server: AppServer, name: string): Promise<number> {
  const m = await server.metrics.requests.get();
  return m.values.find((v) => v.labels.outcome === name)?.value ?? 0;
}

/** Calls the appserver's operator API (what `lichen-push domains / block-domain` use). */
export async function adminCall(e: E2E, method: "GET" | "POST", path: string): Promise<unknown> {
  const token = readFileSync(join(e.dataDir, "admin-token"), "utf8").trim();
  const r = await fetch(`http://127.0.0.1:${e.server.httpPort}/admin/${path}`, {
    method,
    headers: { authorization: `Bearer ${token}` },
  });
  if (!r.ok) throw new Error(`admin ${path}: ${r.status}`);
  return r.json();
}

const EXAMPLES = new URL("../../../../apps/push-server/examples/", import.meta.url);

/**
 * The operator snippets shipped with lichen-push (apps/push-server/examples), with the example
 * domain, secret and port replaced: the tests' servers run exactly what operators copy.
 */
export function operatorSnippets(domain = "push.localhost", secret = "pushsecret") {
  const read = (f: string) =>
    readFileSync(new URL(f, EXAMPLES), "utf8")
      .replaceAll("push.example.org", domain)
      .replaceAll("change-me", secret);
  return {
    prosodyConfig: (port: number) =>
      prosodyParts(read("prosody.cfg.lua").replace("{ 5347 }", `{ ${port} }`)),
    ejabberdInclude: (port: number) => read("ejabberd.yml").replace("port: 5347", `port: ${port}`),
  };
}

/**
 * The three parts of the Prosody snippet, split at its "-- ==== Part N of 3: …" marker lines:
 * global section, under each VirtualHost, the component section.
 */
export function prosodyParts(lua: string): {
  global: string;
  virtualHost: string;
  component: string;
} {
  const parts = lua.split(/^-- ==== Part \d of 3: .*$/m);
  if (parts.length !== 4)
    throw new Error(
      `prosody.cfg.lua: expected 3 "-- ==== Part N of 3" markers, found ${parts.length - 1}`,
    );
  const [, global, virtualHost, component] = parts as [string, string, string, string];
  return { global, virtualHost, component };
}
