import { AppServer, checkConfigFile, ConfigError, type AppServerConfig } from "@lichen/appserver";
import { pino, type Logger } from "pino";
import pretty from "pino-pretty";
import { demoBanner, startDemo, type Demo } from "./demo.js";

export interface DaemonOptions {
  configFile?: string;
  env?: NodeJS.ProcessEnv;
}

/**
 * Runs lichen-push until SIGINT/SIGTERM. With a config file: exactly that. Without: the demo setup
 * (APNs/FCM simulators in-process, SQLite in ./lichen-push-data, and a local Prosody when the test
 * servers are installed, else waiting for an XMPP server on 127.0.0.1:5347).
 */
export async function runDaemon(o: DaemonOptions): Promise<void> {
  const env = o.env ?? process.env;
  let config: AppServerConfig;
  let demo: Demo | undefined;
  if (o.configFile) {
    // The same checks as check-config (credentials included): refuse to start rather than run
    // with an app that cannot deliver.
    const r = await checkConfigFile(o.configFile, env);
    if (!r.config) throw new ConfigError(r.issues, o.configFile);
    config = r.config;
  } else {
    demo = await startDemo(env);
    config = demo.config;
  }
  const server = await AppServer.start({ config, logger: makeLogger(config, env) });
  const logger = server.logger;
  if (demo) {
    const info = demo.info(server.httpPort);
    // A person at a terminal gets the banner; a log collector one line with the same data.
    if (logFormat(env) === "pretty") process.stdout.write(`${demoBanner(info)}\n`);
    else logger.info({ demo: info }, "demo mode: Ctrl-C (SIGINT) or SIGTERM stops everything");
  }
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "shutting down");
    server
      .stop()
      .then(() => demo?.stop())
      .then(
        () => process.exit(0),
        (e: unknown) => {
          logger.error({ err: e }, "shutdown failed");
          process.exit(1);
        },
      );
  };
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("SIGTERM", () => shutdown("SIGTERM"));
}

/** "pretty" on a terminal, "json" otherwise; LICHEN_LOG_FORMAT overrides. */
export function logFormat(env: NodeJS.ProcessEnv): "pretty" | "json" {
  const f = env.LICHEN_LOG_FORMAT ?? (process.stdout.isTTY ? "pretty" : "json");
  return f === "pretty" ? "pretty" : "json";
}

/**
 * Readable lines when stdout is a terminal, JSON lines (for log collectors) otherwise;
 * LICHEN_LOG_FORMAT=pretty|json overrides. pino-pretty runs in-process (sync), not as a worker.
 */
export function makeLogger(config: AppServerConfig, env: NodeJS.ProcessEnv): Logger {
  const opts = { level: config.log.level, base: { svc: "lichen-push", pid: process.pid } };
  return logFormat(env) === "pretty"
    ? pino(
        opts,
        // One line per event, local time: what a person reads; pid and svc are in the banner.
        pretty({
          sync: true,
          colorize: process.stdout.isTTY === true,
          singleLine: true,
          translateTime: "SYS:HH:MM:ss.l",
          ignore: "pid,hostname,svc",
        }),
      )
    : pino(opts);
}
