import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { until } from "./until.js";

/** One APNs app of a `lichen-push` configuration (see apps/push-server's README). */
export interface LichenPushApnsApp {
  topic: string;
  teamId: string;
  keyId: string;
  privateKeyFile: string;
  /** The APNs simulator's URL. */
  endpoint: string;
  /** "background": content-available pushes (no alert). */
  pushType?: "background";
}

/** What {@link lichenPushConfig} writes. */
export interface LichenPushConfigOptions {
  component: { port: number; domain: string; secret: string; reconnectInitialDelay?: string };
  apps: Record<string, LichenPushApnsApp>;
  dataDir: string;
  http: { host?: string; port: number };
  rateLimitWindow?: string;
}

/** The `component` of a lichenPushConfig for a test server's XEP-0114 port. */
export function lichenPushComponent(server: {
  componentPort: number;
  componentDomain: string;
  componentSecret: string;
}): LichenPushConfigOptions["component"] {
  return {
    port: server.componentPort,
    domain: server.componentDomain,
    secret: server.componentSecret,
  };
}

/**
 * The `push.yaml` of a `lichen-push` daemon attached to a test server's component port, with
 * APNs apps pointing at the simulator — the one configuration the chat tests and the device
 * simulator's push chain both start the real daemon with.
 */
export function lichenPushConfig(o: LichenPushConfigOptions): string {
  const lines = [
    "component:",
    `  service: xmpp://127.0.0.1:${o.component.port}`,
    `  domain: ${o.component.domain}`,
    `  secret: ${o.component.secret}`,
    ...(o.component.reconnectInitialDelay
      ? [`  reconnectInitialDelay: ${o.component.reconnectInitialDelay}`]
      : []),
    "apps:",
  ];
  for (const [name, app] of Object.entries(o.apps)) {
    lines.push(
      `  ${name}:`,
      "    type: apns",
      `    topic: ${app.topic}`,
      `    teamId: ${app.teamId}`,
      `    keyId: ${app.keyId}`,
      `    privateKeyFile: ${app.privateKeyFile}`,
      `    endpoint: ${app.endpoint}`,
      ...(app.pushType ? [`    pushType: ${app.pushType}`] : []),
    );
  }
  lines.push(`dataDir: ${o.dataDir}`);
  if (o.rateLimitWindow) lines.push("rateLimit:", `  window: ${o.rateLimitWindow}`);
  lines.push(
    "http:",
    ...(o.http.host ? [`  host: ${o.http.host}`] : []),
    `  port: ${o.http.port}`,
    "",
  );
  return lines.join("\n");
}

/** A running `lichen-push` daemon started by {@link startLichenPush}. */
export interface LichenPushDaemon {
  /** The port of its /healthz and /metrics (as it logged it: a configured port 0 picks one). */
  readonly httpPort: number;
  /** Its stdout and stderr lines so far (JSON lines: LICHEN_LOG_FORMAT=json). */
  logLines(): readonly string[];
  /** SIGTERM, SIGKILL if it has not exited after `graceMs` (default 5 s); resolves once it exited. */
  stop(graceMs?: number): Promise<void>;
}

/** The daemon did not come up: it exited, or /healthz never said ok. `log` is all it wrote. */
export class LichenPushStartError extends Error {
  override readonly name = "LichenPushStartError";
  constructor(
    message: string,
    readonly log: readonly string[],
  ) {
    super(`${message}; log:\n${log.join("\n").slice(-4000)}`);
  }
}

/**
 * Starts the built `lichen-push` daemon (`cli`: @lichen/push-server's dist/cli.js) with a config
 * file — written from `config` (lichenPushConfig) first when given — and resolves once its
 * /healthz answers 200: the component is online.
 * Rejects with a LichenPushStartError (the daemon stopped) when it exits first, `timeoutMs`
 * passes (default 60 s) or `signal` aborts the wait.
 */
export async function startLichenPush(o: {
  cli: string;
  configFile: string;
  config?: LichenPushConfigOptions;
  timeoutMs?: number;
  signal?: AbortSignal;
}): Promise<LichenPushDaemon> {
  if (!existsSync(o.cli)) throw new Error(`${o.cli} is missing: run "npm run build" first`);
  if (o.config) writeFileSync(o.configFile, lichenPushConfig(o.config));
  const child = spawn(process.execPath, [o.cli, "start", "--config", o.configFile], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, LICHEN_LOG_FORMAT: "json" },
  });
  const lines: string[] = [];
  const outputs = [child.stdout, child.stderr].map((stream) => {
    const rl = createInterface({ input: stream });
    rl.on("line", (l) => lines.push(l));
    return new Promise<void>((r) => rl.once("close", () => r()));
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const running = () => child.exitCode === null && child.signalCode === null;
  const stop = async (graceMs = 5000) => {
    if (running()) child.kill("SIGTERM");
    const kill = setTimeout(() => running() && child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(kill);
    await Promise.all(outputs); // its last lines read
  };
  let httpPort = 0;
  let health = "no answer";
  try {
    await until(
      async () => {
        if (!running()) {
          await Promise.all(outputs);
          throw new LichenPushStartError(`lichen-push exited (${child.exitCode})`, lines);
        }
        o.signal?.throwIfAborted();
        httpPort ||= startedPort(lines);
        if (!httpPort) return false;
        const r = await fetch(`http://127.0.0.1:${httpPort}/healthz`).catch(() => null);
        if (r) health = `${r.status} ${await r.text()}`;
        return r?.status === 200;
      },
      "lichen-push online",
      o.timeoutMs ?? 60_000,
      100,
    );
  } catch (err) {
    await stop();
    if (err instanceof LichenPushStartError) throw err;
    throw new LichenPushStartError(`lichen-push not online (/healthz: ${health})`, lines);
  }
  return { httpPort, logLines: () => lines, stop };
}

/** The HTTP port of the daemon's "lichen-push started" line, 0 before it. */
function startedPort(lines: readonly string[]): number {
  for (const l of lines) {
    let entry: { msg?: string; http?: string };
    try {
      entry = JSON.parse(l) as typeof entry;
    } catch {
      continue; // not a log entry (a stack trace's line)
    }
    if (entry.msg !== "lichen-push started" || !entry.http) continue;
    return Number(entry.http.slice(entry.http.lastIndexOf(":") + 1)) || 0;
  }
  return 0;
}
